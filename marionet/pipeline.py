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

    @property
    def kp_detector(self):
        return self.model.kp_detector

    @property
    def generator(self):
        return self.model.generator

    def to_tensor(self, frames: np.ndarray, fit: str = "crop") -> torch.Tensor:
        """(N, H, W, 3) or (H, W, 3) float [0, 1] (or uint8) -> (N, 3, h, w) at the model's frame size;
        a frame of another aspect ratio is centre-cropped (``fit="crop"``), padded with its edges
        (``"pad"``) or stretched (``"stretch"``) to it."""
        x = frames_to_tensor(frames, self.frame_shape, self.device, fit)
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
                batch_size: int = 4, fit: str = "crop") -> np.ndarray:
        """Animate ``source`` (H, W, 3) with ``driving`` (T, H, W, 3) -> (T, h, w, 3) float32 in [0, 1]."""
        frames = list(self.animate_stream(source, driving, relative, adapt_scale, batch_size, fit))
        if not frames:
            raise ValueError("the driving video has no frames")
        return np.stack(frames)

    @torch.no_grad()
    def animate_stream(self, source: np.ndarray, driving: Iterable[np.ndarray], relative: bool = True,
                       adapt_scale: bool = True, batch_size: int = 4, fit: str = "crop") -> Iterator[np.ndarray]:
        """Yield one (h, w, 3) float32 frame per driving frame, reading ``driving`` lazily."""
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
            background = self.model.background(initial if relative else encoded.image, driving_t)
            yield from self.render(encoded, kp, background)


def _batches(frames: Iterable, size: int) -> Iterator[list]:
    batch = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
