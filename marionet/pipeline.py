"""Inference: a loaded model plus what it takes to animate images with it.

``AnimationPipeline`` owns a model family (``marionet.models.ModelFamily``), the config it was built
from and the device. It takes numpy frames (H x W x 3 float32 in [0, 1], any size: resized to the
model's frame size) and streams results, so memory stays flat however long the driving video is.
The source is encoded once (keypoints, features) and driving frames go through in batches; any
family works through its interface: ``detect``, ``encode_source``, ``transfer_keypoints``,
``background`` and ``generate``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from marionet.config import frame_shape
from marionet.data.frames import frames_to_tensor, tensor_to_frames
from marionet.models import ModelFamily
from marionet.motion import movement_scale


@dataclass
class EncodedSource:
    """What animating a source needs from it, computed once."""
    image: torch.Tensor        # (1, 3, h, w)
    kp: dict                   # keypoints, batch 1
    features: Any              # the family's encode_source(image)


class AnimationPipeline:
    def __init__(self, model: ModelFamily, config: dict, device: str | torch.device = "cpu",
                 channels_last: bool = True):
        self.model = model.eval().to(device)
        self.config = config
        self.device = torch.device(device)
        self.frame_shape = frame_shape(config)
        # channels_last roughly halves convolution time on CPU and helps on recent GPUs.
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        self.precision = "fp32"    # of the fused convolutions, after ``optimized``

    def optimized(self, precision: str = "fp32", inplace: bool = False) -> "AnimationPipeline":
        """This pipeline on a fused copy of its model (``marionet.inference``, docs/speed.md): batch norm folded
        into the convolutions, sub-pixel upsampling; the same frames up to float32 rounding. ``precision``
        "bf16" or "int8" runs the fused convolutions so where the CPU has the instructions (float32 elsewhere;
        ``.precision`` says which ran). ``inplace`` rewrites this pipeline's model instead of a copy (no second
        set of weights; its state dict changes). Also keeps freed memory in the process (glibc), which saves
        re-zeroing the pages of every large tensor."""
        from marionet.errors import MarionetError
        from marionet.inference import optimize
        from marionet.inference.settings import keep_freed_memory

        if precision != "fp32" and self.device.type != "cpu":
            raise MarionetError(f"--precision {precision}: a CPU path; on {self.device.type} use fp32")
        keep_freed_memory()
        channels_last = self.memory_format == torch.channels_last
        model, used = optimize(self.model, precision, inplace=inplace, channels_last=channels_last,
                               image_heads=self.model.image_heads)
        pipeline = AnimationPipeline(model, self.config, self.device, channels_last)
        pipeline.precision = used
        return pipeline

    def __getattr__(self, name: str):
        """``pipeline.<name>(image, fit="crop")`` for each of the family's ``image_outputs`` (e.g. KP-mask's
        ``mask``): one (H, W, 3) image -> that output as a float32 array, without the batch axis."""
        model = self.__dict__.get("model")
        if model is None or name not in model.image_outputs:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

        @torch.no_grad()
        def output(image: np.ndarray, fit: str = "crop") -> np.ndarray:
            return getattr(model, name)(self.to_tensor(image, fit))[0].float().cpu().numpy()

        return output

    @property
    def kp_detector(self):
        return self.model.kp_detector

    @property
    def generator(self):
        return self.model.generator

    def to_tensor(self, frames: np.ndarray, fit: str = "crop") -> torch.Tensor:
        """(N, H, W, 3) or (H, W, 3) float [0, 1] (or uint8) -> (N, 3, h, w) at the model's frame size;
        a frame of another aspect ratio is centre-cropped (``fit="crop"``), padded with its edges
        (``"pad"``) or stretched (``"stretch"``) to it. A ``native_resolution`` family gets frames as they are."""
        x = frames_to_tensor(frames, None if self.model.native_resolution else self.frame_shape, self.device, fit)
        return x.contiguous(memory_format=self.memory_format)

    @torch.no_grad()
    def detect(self, image: np.ndarray, fit: str = "crop") -> dict[str, np.ndarray]:
        """Keypoints of one image: {"value": (K, 2)} (x, y) in [-1, 1], plus the family's other
        ``keypoint_fields`` (each (K, ...))."""
        return {k: v[0].cpu().numpy() for k, v in self.model.detect(self.to_tensor(image, fit)).items()}

    @torch.no_grad()
    def encode(self, source: np.ndarray, fit: str = "crop") -> EncodedSource:
        image = self.to_tensor(source, fit)                               # (1, 3, h, w)
        return EncodedSource(image, self.model.detect(image), self.model.encode_source(image))

    @torch.no_grad()
    def render(self, source: EncodedSource, kp_driving: dict, background: torch.Tensor | None = None) -> np.ndarray:
        """The frames for a batch of keypoints (B, ...) -> (B, h, w, 3) float32."""
        out = self.model.generate(source.image, source.kp, kp_driving, source.features, background)
        return tensor_to_frames(out["prediction"])

    @torch.no_grad()
    def animate(self, source: np.ndarray, driving: np.ndarray, relative: bool = True, adapt_scale: bool = True,
                batch_size: int = 4, fit: str = "crop", crop: str = "none", driving_crop: str = "fixed",
                best_frame: bool = False, still_background: bool = False) -> np.ndarray:
        """Animate ``source`` (H, W, 3) with ``driving`` (T, H, W, 3) -> (T, h, w, 3) float32 in [0, 1].

        ``crop="face"|"body"``: animate the subject found in the source and paste it back, so frames are
        (T, H, W, 3), the source's size (``marionet.crop``); ``best_frame``: start from the driving frame
        whose face pose is closest to the source's; ``still_background``: see ``animate_stream``."""
        from marionet.crop import animate_in_place

        frames = list(animate_in_place(self, source, lambda: iter(driving), crop, driving_crop, best_frame,
                                       relative, adapt_scale, batch_size, fit, still_background=still_background))
        if not frames:
            raise ValueError("the driving video has no frames")
        return np.stack(frames)

    @torch.no_grad()
    def animate_stream(self, source: np.ndarray, driving: Iterable[np.ndarray], relative: bool = True,
                       adapt_scale: bool = True, batch_size: int = 4, fit: str = "crop",
                       still_background: bool = False) -> Iterator[np.ndarray]:
        """Yield one (h, w, 3) float32 frame per driving frame, reading ``driving`` lazily.

        A model that estimates camera motion (``background``) moves the source's background with the
        driving video's camera; ``still_background`` keeps it still, as it should be when the source is
        another subject filmed apart from the driving video (its background does not share that camera)."""
        encoded = self.encode(source, fit)
        kp_initial, initial, scale = None, None, 1.0
        for batch in _batches(driving, batch_size):
            driving_t = self.to_tensor(np.stack(batch), fit)              # (B, 3, h, w)
            kp_driving = self.model.detect(driving_t)
            if kp_initial is None:
                kp_initial = {k: v[:1] for k, v in kp_driving.items()}
                initial = driving_t[:1]
                if relative and adapt_scale:
                    scale = movement_scale(encoded.kp, kp_initial)
            kp = self.model.transfer_keypoints(encoded.kp, kp_driving, kp_initial, relative, scale)
            # relative: the camera's motion since the first driving frame
            background = None if still_background else \
                self.model.background(initial if relative else encoded.image, driving_t)
            yield from self.render(encoded, kp, background)

    @torch.no_grad()
    def dual_reconstruction(self, src_a: np.ndarray, src_b: np.ndarray, driving_a: np.ndarray,
                            driving_b: np.ndarray | None = None, fit: str = "crop") -> dict[str, Any]:
        """Donkey-Net's two passes on one pair (two identities A, B in the same motion), with absolute
        keypoints: pass 1 animates ``src_b`` with the keypoints of ``driving_a``, pass 2 animates ``src_a``
        with those of pass 1's output -> {"pass1", "pass2": (h, w, 3) float32}; given ``driving_b`` (pass
        1's target), also "l1_pass1" (against it) and "l1_pass2" (against ``driving_a``). Any family."""
        out = {}
        driving = self.to_tensor(driving_a, fit)
        for name, source in (("pass1", src_b), ("pass2", src_a)):
            encoded = self.encode(source, fit)
            generated = self.model.generate(encoded.image, encoded.kp, self.model.detect(driving), encoded.features,
                                            self.model.background(encoded.image, driving))["prediction"]
            out[name] = tensor_to_frames(generated)[0]
            driving = generated
        if driving_b is not None:
            targets = {"pass1": self.to_tensor(driving_b, fit), "pass2": self.to_tensor(driving_a, fit)}
            for name, target in targets.items():
                out[f"l1_{name}"] = float(np.abs(out[name] - tensor_to_frames(target)[0]).mean())
        return out


def _batches(frames: Iterable, size: int) -> Iterator[list]:
    batch = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
