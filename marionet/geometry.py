"""Coordinate grids, Gaussian keypoint heatmaps and keypoint transforms.

Convention (shared with the official FOMM / Monkey-Net code): coordinates are (x, y) in [-1, 1],
x along the width, and -1 / +1 are the centres of the border pixels (the ``align_corners=True``
convention of ``grid_sample``).
"""
from __future__ import annotations

import contextlib
import functools

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


def geometry_precision(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 when it is in a half precision (bf16 autocast): keypoint geometry (softmax
    heatmaps, means, covariances, Jacobians) stays float32 however the convolutions run."""
    return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x


def float32_geometry(fn):
    """Under autocast, run ``fn`` with autocast off and its half-precision tensor arguments (also
    the values of dict arguments) in float32: autocast would otherwise round keypoint sums, einsums
    and matrix products to bfloat16 (1/256 of the frame). Without autocast ``fn`` runs as it is."""
    def cast(x):
        if torch.is_tensor(x):
            return geometry_precision(x)
        return {k: cast(v) for k, v in x.items()} if isinstance(x, dict) else x

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        devices = [d for d in ("cpu", "cuda") if torch.is_autocast_enabled(d)]
        if not devices:
            return fn(*args, **kwargs)
        with contextlib.ExitStack() as stack:
            for d in devices:
                stack.enter_context(torch.autocast(d, enabled=False))
            return fn(*[cast(a) for a in args], **{k: cast(v) for k, v in kwargs.items()})
    return wrapper


@float32_geometry
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


def fit_similarity(source: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None):
    """Least-squares similarity (scale, rotation, translation) taking ``source`` to ``target``.

    source, target: (..., N, 2); weights: (..., N) or None. Points are read as complex numbers x + iy,
    so the similarity is z -> a z + b with a = scale * e^(i angle): -> (a, b), complex, each (...).
    Compose with ``a1 * (a2 z + b2) + b1``, invert with ``(z - b) / a``."""
    z, w = torch.view_as_complex(source.double().contiguous()), torch.view_as_complex(target.double().contiguous())
    weights = torch.ones(z.shape, dtype=torch.float64) if weights is None else weights.double()
    weights = weights / weights.sum(-1, keepdim=True)
    z_mean, w_mean = (weights * z).sum(-1), (weights * w).sum(-1)
    zc, wc = z - z_mean[..., None], w - w_mean[..., None]
    a = (weights * wc * zc.conj()).sum(-1) / (weights * zc.abs() ** 2).sum(-1)
    return a, w_mean - a * z_mean


def thin_plate_spline(control: torch.Tensor, values: torch.Tensor, points: torch.Tensor,
                      regularization: float = 0.0) -> torch.Tensor:
    """The thin-plate spline through ``values`` at ``control``, evaluated at ``points``.

    control (N, 2), values (N, C), points (M, 2) -> (M, C). f(p) = A [p, 1] + sum_j w_j U(|p - c_j|) with
    U(r) = r^2 log r over the Euclidean distance (``RandomTPS`` keeps the official L1 one); a
    ``regularization`` > 0 trades exact interpolation for smoothness (K + lambda I). Coordinates are
    best of order 1 (the kernel is not scale-invariant)."""
    def kernel(a, b):
        r2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return 0.5 * r2 * torch.log(r2.clamp_min(1e-20))                    # r^2 log r = r2 log(r2) / 2

    n = len(control)
    affine = torch.cat([control, torch.ones(n, 1, dtype=control.dtype)], 1)        # (N, 3)
    system = torch.zeros(n + 3, n + 3, dtype=torch.float64)
    system[:n, :n] = kernel(control, control) + regularization * torch.eye(n, dtype=control.dtype)
    system[:n, n:], system[n:, :n] = affine, affine.T
    rhs = torch.cat([values, torch.zeros(3, values.shape[1], dtype=values.dtype)]).double()
    solution = torch.linalg.solve(system, rhs).to(points.dtype)                     # (N + 3, C)
    basis = torch.cat([kernel(points, control), points, torch.ones(len(points), 1, dtype=points.dtype)], 1)
    return basis @ solution                                                          # (M, C)


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
