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


class RandomTPS:
    """Random affine + thin-plate-spline warps, one per sample (the equivariance losses' transform).

    warp(z) = A z + b + sum_j w_j U(|z - c_j|_1), U(r) = r^2 log(r), with c_j a points x points grid on
    [-1, 1]; A, b and w drawn around the identity (std sigma_affine, sigma_tps). As in the official code
    the radial distance is the L1 norm. Each sample's parameters come from its own seed, so a sample
    gets the same warp whatever batch or process it lands in.
    """

    def __init__(self, seeds, sigma_affine: float, sigma_tps: float = 0.0, points_tps: int = 0, device=None):
        thetas, weights = [], []
        for seed in seeds:
            g = torch.Generator().manual_seed(int(seed))
            thetas.append(torch.randn(2, 3, generator=g) * sigma_affine + torch.eye(2, 3))
            if sigma_tps and points_tps:
                weights.append(torch.randn(points_tps ** 2, generator=g) * sigma_tps)
        self.theta = torch.stack(thetas).to(device)                            # (B, 2, 3)
        self.tps = bool(weights)
        if self.tps:
            self.control_points = make_coordinate_grid(points_tps, points_tps, device=device).reshape(-1, 2)  # (P, 2)
            self.control_weights = torch.stack(weights).to(device)             # (B, P)

    def warp_coordinates(self, coords: torch.Tensor) -> torch.Tensor:
        """coords (B, N, 2) -> warped (B, N, 2)."""
        theta = self.theta.to(coords.dtype)
        out = torch.einsum("bij,bnj->bni", theta[:, :, :2], coords) + theta[:, None, :, 2]
        if self.tps:
            r = (coords[:, :, None, :] - self.control_points.to(coords.dtype)).abs().sum(-1)  # (B, N, P)
            u = r ** 2 * torch.log(r + 1e-6)
            out = out + (u * self.control_weights[:, None, :].to(coords.dtype)).sum(-1, keepdim=True)
        return out

    def jacobian(self, coords: torch.Tensor) -> torch.Tensor:
        """d warp / d coords at coords (B, N, 2) -> (B, N, 2, 2), differentiable (create_graph)."""
        if not coords.requires_grad:
            coords = coords.detach().requires_grad_(True)
        warped = self.warp_coordinates(coords)
        gx = torch.autograd.grad(warped[..., 0].sum(), coords, create_graph=True)[0]
        gy = torch.autograd.grad(warped[..., 1].sum(), coords, create_graph=True)[0]
        return torch.stack([gx, gy], dim=-2)

    def warp_frames(self, frames: torch.Tensor, align_corners: bool = True) -> torch.Tensor:
        """Resample frames (B, C, H, W) at the warped pixel grid (reflection padding)."""
        b, _, h, w = frames.shape
        grid = make_coordinate_grid(h, w, dtype=frames.dtype, device=frames.device).reshape(1, -1, 2).expand(b, -1, -1)
        grid = self.warp_coordinates(grid).reshape(b, h, w, 2)
        return torch.nn.functional.grid_sample(frames, grid, padding_mode="reflection", align_corners=align_corners)
