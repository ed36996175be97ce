"""Coordinate grids, Gaussian keypoint heatmaps and keypoint transforms.

Convention (shared with the official FOMM / Monkey-Net code): coordinates are (x, y) in [-1, 1],
x along the width, and -1 / +1 are the centres of the border pixels (the ``align_corners=True``
convention of ``grid_sample``).
"""
from __future__ import annotations

import torch


def make_coordinate_grid(height: int, width: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """(H, W, 2) grid of (x, y) pixel-centre coordinates in [-1, 1]."""
    x = torch.arange(width, dtype=dtype, device=device)
    y = torch.arange(height, dtype=dtype, device=device)
    x = 2 * (x / (width - 1)) - 1
    y = 2 * (y / (height - 1)) - 1
    return torch.stack([x.view(1, -1).expand(height, width), y.view(-1, 1).expand(height, width)], dim=2)


def kp2gaussian(mean: torch.Tensor, spatial_size: tuple[int, int], kp_variance: float) -> torch.Tensor:
    """Unnormalised isotropic Gaussians at keypoints.

    mean: (..., K, 2) -> (..., K, H, W) with peak 1 and variance ``kp_variance``.
    """
    grid = make_coordinate_grid(*spatial_size, dtype=mean.dtype, device=mean.device)  # (H, W, 2)
    diff = grid - mean[..., None, None, :]                                           # (..., K, H, W, 2)
    return torch.exp(-0.5 * (diff ** 2).sum(-1) / kp_variance)


def heatmap_to_mean(heatmap: torch.Tensor) -> torch.Tensor:
    """Expected (x, y) of a spatial distribution. heatmap: (B, K, H, W), summing to 1 -> (B, K, 2)."""
    grid = make_coordinate_grid(*heatmap.shape[2:], dtype=heatmap.dtype, device=heatmap.device)
    return torch.einsum("bkhw,hwc->bkc", heatmap, grid)


def hull_area(points) -> float:
    """Area of the convex hull of (N, 2) points (0 for fewer than 3 non-collinear points)."""
    import numpy as np

    pts = sorted(map(tuple, np.asarray(points, dtype=np.float64)))
    if len(pts) < 3:
        return 0.0

    def half(seq):  # Andrew's monotone chain
        out = []
        for p in seq:
            while len(out) >= 2 and _cross(out[-2], out[-1], p) <= 0:
                out.pop()
            out.append(p)
        return out

    hull = half(pts)[:-1] + half(pts[::-1])[:-1]
    area = 0.0
    for (x0, y0), (x1, y1) in zip(hull, hull[1:] + hull[:1]):
        area += x0 * y1 - x1 * y0
    return abs(area) / 2


def _cross(o, a, b) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
