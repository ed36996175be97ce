"""Frames between numpy (H x W x 3, uint8 or float in [0, 1]) and torch (N, 3, H, W) float in [0, 1]."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def resize_frames(x: torch.Tensor, size) -> torch.Tensor:
    """(N, C, h, w) -> (N, C, H, W), bilinear, anti-aliased when shrinking, clamped to [0, 1]."""
    size = tuple(int(s) for s in size)
    if tuple(x.shape[-2:]) == size:
        return x
    shrink = x.shape[-2] > size[0] or x.shape[-1] > size[1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink).clamp(0, 1)


def frames_to_tensor(frames, size=None, device=None) -> torch.Tensor:
    """(N, H, W, 3) or (H, W, 3) numpy, uint8 or float in [0, 1] -> (N, 3, H, W) float32, resized to
    ``size`` (H, W) when given."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames of shape (N, H, W, 3), got {frames.shape}")
    if not frames.flags.writeable:  # e.g. a decoded PIL image; torch.from_numpy wants writable memory
        frames = frames.copy()
    x = torch.from_numpy(np.ascontiguousarray(frames))
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    x = x.permute(0, 3, 1, 2).to(device)
    return x if size is None else resize_frames(x, size)


def tensor_to_frames(x: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) -> (N, H, W, 3) float32 numpy."""
    return x.permute(0, 2, 3, 1).float().cpu().numpy()
