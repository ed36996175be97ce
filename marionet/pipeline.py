"""Inference: a loaded model plus what it takes to animate images with it.

``AnimationPipeline`` owns a model family (kp_detector + generator), the config it was built from
and the device. It takes numpy frames (H x W x 3 float32 in [0, 1], any size: resized to the
model's frame size) and streams results, so memory stays flat however long the driving video is.
The source is encoded once (keypoints, features) and driving frames go through in batches.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from marionet.config import frame_shape
from marionet.motion import movement_scale, transfer_keypoints


class AnimationPipeline:
    def __init__(self, model: torch.nn.Module, config: dict, device: str | torch.device = "cpu",
                 channels_last: bool = True):
        self.model = model.eval().to(device)
        self.config = config
        self.device = torch.device(device)
        self.frame_shape = frame_shape(config)
        # channels_last roughly halves convolution time on CPU and helps on recent GPUs.
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        # A family may refine the transfer (Monkey-Net: covariance options); FOMM uses the shared one.
        self.transfer = getattr(model, "transfer_keypoints", transfer_keypoints)

    @property
    def kp_detector(self):
        return self.model.kp_detector

    @property
    def generator(self):
        return self.model.generator

    def to_tensor(self, frames: np.ndarray) -> torch.Tensor:
        """(N, H, W, 3) or (H, W, 3) float [0, 1] (or uint8) -> (N, 3, h, w) at the model's frame size."""
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected frames of shape (N, H, W, 3), got {frames.shape}")
        if not frames.flags.writeable:  # e.g. a decoded PIL image; torch.from_numpy wants to own writable memory
            frames = frames.copy()
        x = torch.from_numpy(np.ascontiguousarray(frames))
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        x = x.permute(0, 3, 1, 2).to(self.device)
        if tuple(x.shape[2:]) != self.frame_shape:
            shrink = x.shape[2] > self.frame_shape[0] or x.shape[3] > self.frame_shape[1]
            x = F.interpolate(x, size=self.frame_shape, mode="bilinear", align_corners=False, antialias=shrink)
            x = x.clamp(0, 1)
        return x.contiguous(memory_format=self.memory_format)

    @torch.no_grad()
    def detect(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """Keypoints of one image: {"value": (K, 2)} (x, y) in [-1, 1], plus "jacobian" (K, 2, 2) for FOMM."""
        kp = self.kp_detector(self.to_tensor(image))
        return {k: v[0].cpu().numpy() for k, v in kp.items() if k != "heatmap"}

    @torch.no_grad()
    def animate(self, source: np.ndarray, driving: np.ndarray, relative: bool = True, adapt_scale: bool = True,
                batch_size: int = 4) -> np.ndarray:
        """Animate ``source`` (H, W, 3) with ``driving`` (T, H, W, 3) -> (T, h, w, 3) float32 in [0, 1]."""
        frames = list(self.animate_stream(source, driving, relative, adapt_scale, batch_size))
        if not frames:
            raise ValueError("the driving video has no frames")
        return np.stack(frames)

    @torch.no_grad()
    def animate_stream(self, source: np.ndarray, driving: Iterable[np.ndarray], relative: bool = True,
                       adapt_scale: bool = True, batch_size: int = 4) -> Iterator[np.ndarray]:
        """Yield one (h, w, 3) float32 frame per driving frame, reading ``driving`` lazily."""
        source_t = self.to_tensor(source)                                 # (1, 3, h, w)
        kp_source = self.kp_detector(source_t)
        kp_source.pop("heatmap", None)
        source_features = self.generator.encode_source(source_t)
        kp_initial, initial, scale = None, None, 1.0
        background = getattr(self.generator, "background", None)  # FOMM-family camera motion, if trained
        for batch in _batches(driving, batch_size):
            driving_t = self.to_tensor(np.stack(batch))                   # (B, 3, h, w)
            kp_driving = self.kp_detector(driving_t)
            if kp_initial is None:
                kp_initial = {k: v[:1] for k, v in kp_driving.items() if k != "heatmap"}
                initial = driving_t[:1]
                if relative and adapt_scale:
                    scale = movement_scale(kp_source, kp_initial)
            kp_norm = self.transfer(kp_source, kp_driving, kp_initial, relative, scale)
            extra = {}
            if background is not None:  # relative: the camera's motion since the first driving frame
                extra["background"] = background(initial if relative else source_t, driving_t)
            out = self.generator(source_t, kp_driving=kp_norm, kp_source=kp_source,
                                 source_features=source_features, **extra)["prediction"]
            yield from out.permute(0, 2, 3, 1).float().cpu().numpy()


def _batches(frames: Iterable, size: int) -> Iterator[list]:
    batch = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
