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


FITS = ("crop", "pad", "stretch")


def fit_aspect(x: torch.Tensor, size, fit: str = "stretch") -> torch.Tensor:
    """(N, C, h, w) -> (N, C, H, W): ``crop`` takes the centred window of the target's aspect ratio,
    ``pad`` extends the frame with its edge pixels to that ratio, ``stretch`` resizes as it is."""
    if fit not in FITS:
        raise ValueError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
    h, w = x.shape[-2:]
    target_h, target_w = size
    if fit != "stretch" and h * target_w != w * target_h:
        if (fit == "crop") == (w * target_h > h * target_w):   # crop a too-wide frame / pad a too-tall one
            new_w, new_h = (h * target_w + target_h // 2) // target_h, h
        else:
            new_w, new_h = w, (w * target_h + target_w // 2) // target_w
        if fit == "crop":
            top, left = (h - new_h) // 2, (w - new_w) // 2
            x = x[..., top:top + new_h, left:left + new_w]
        else:
            top, left = (new_h - h) // 2, (new_w - w) // 2
            x = F.pad(x, (left, new_w - w - left, top, new_h - h - top), mode="replicate")
    return resize_frames(x, size)


def frames_to_tensor(frames, size=None, device=None, fit: str = "stretch") -> torch.Tensor:
    """(N, H, W, 3) or (H, W, 3) numpy, uint8 or float in [0, 1] -> (N, 3, H, W) float32, brought to
    ``size`` (H, W) when given (see ``fit_aspect``)."""
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
    return x if size is None else fit_aspect(x, size, fit)


def tensor_to_frames(x: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) -> (N, H, W, 3) float32 numpy."""
    return x.permute(0, 2, 3, 1).float().cpu().numpy()
