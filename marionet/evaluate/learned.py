"""Learned metrics, computed only from weights the user supplies (nothing can ship or be downloaded):

- LPIPS (Zhang et al. 2018, VGG variant): torchvision's ImageNet ``vgg16`` state dict for the
  backbone and the LPIPS linear heads (the ``vgg.pth`` of the lpips project, keys
  ``lin{0..4}.model.1.weight``). Per frame: the five relu*_* feature maps of both images, each
  unit-normalised over channels, squared differences weighted by the heads, averaged over space,
  summed over layers.
- FID (Heusel et al. 2017): the Inception-v3 of pytorch-fid (``pt_inception-2015-12-05-*.pth``, the
  port of the TensorFlow FID network), its 2048-D pool features of the real and of the generated
  frames, and the Fréchet distance between the two Gaussians fitted to them. With few frames it is
  biased upwards; compare numbers only at equal frame counts.

Weights are read with ``torch.load(weights_only=True)`` and matched key by key.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from marionet.errors import MarionetError
from marionet.nn.blocks import vgg_features


def _load_state(path, what: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise MarionetError(f"{path}: no such {what} weights file")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- zip/pickle errors, or objects other than tensors
        raise MarionetError(f"{path}: not a readable {what} state dict ({str(e).splitlines()[0][:120]})") from None
    if not isinstance(state, dict):
        raise MarionetError(f"{path}: not a {what} state dict")
    return state


def _load_into(module: nn.Module, state: dict, path, what: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise MarionetError(f"{path}: not the {what} layout ({str(e).splitlines()[1].strip()[:160]})") from None


# ------------------------------------------------------------------------------------------------ LPIPS

_VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
_VGG16_CUTS = (4, 9, 16, 23, 30)                   # after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
_LPIPS_WIDTHS = (64, 128, 256, 512, 512)


class LPIPS(nn.Module):
    """Per-image LPIPS distance of (N, 3, H, W) images in [0, 1] -> (N,)."""

    def __init__(self, vgg16_path, heads_path):
        super().__init__()
        self.features = vgg_features(_VGG16)
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in _LPIPS_WIDTHS)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        vgg = {k.removeprefix("features."): v for k, v in _load_state(vgg16_path, "VGG16").items()
               if k.startswith("features.") and int(k.split(".")[1]) < _VGG16_CUTS[-1]}
        _load_into(self.features, vgg, vgg16_path, "torchvision vgg16")
        heads = _load_state(heads_path, "LPIPS heads")
        heads = {f"{i}.weight": heads.get(f"lin{i}.model.1.weight") for i in range(5)}
        if any(v is None for v in heads.values()):
            raise MarionetError(f"{heads_path}: not the LPIPS heads layout (lin0..lin4.model.1.weight)")
        _load_into(self.heads, heads, heads_path, "LPIPS heads")
        self.requires_grad_(False).eval()

    def _features(self, x):
        x = ((x * 2 - 1) - self.shift) / self.scale
        out, start = [], 0
        for cut in _VGG16_CUTS:
            x = self.features[start:cut](x)
            out.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
            start = cut
        return out

    @torch.no_grad()
    def forward(self, a, b):
        return sum(head((fa - fb) ** 2).mean((1, 2, 3))
                   for head, fa, fb in zip(self.heads, self._features(a), self._features(b)))


# ------------------------------------------------------------------------------------------------ FID

class _Conv(nn.Sequential):
    """conv (no bias) -> batch norm (eps 1e-3) -> ReLU, named as in the Inception checkpoints."""

    def __init__(self, cin, cout, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _avg3(x):  # the FID network's pooling branch leaves the padding out of the average
    return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)


class _A(nn.Module):
    def __init__(self, cin, pool):
        super().__init__()
        self.branch1x1 = _Conv(cin, 64, 1)
        self.branch5x5_1, self.branch5x5_2 = _Conv(cin, 48, 1), _Conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1, self.branch3x3dbl_2 = _Conv(cin, 64, 1), _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, padding=1)
        self.branch_pool = _Conv(cin, pool, 1)

    def forward(self, x):
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(_avg3(x))], 1)


class _B(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.branch3x3 = _Conv(cin, 384, 3, stride=2)
        self.branch3x3dbl_1, self.branch3x3dbl_2 = _Conv(cin, 64, 1), _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, 3, 2)], 1)


class _C(nn.Module):
    def __init__(self, cin, c7):
        super().__init__()
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        self.branch1x1 = _Conv(cin, 192, 1)
        self.branch7x7_1, self.branch7x7_2, self.branch7x7_3 = _Conv(cin, c7, 1), _Conv(c7, c7, **row), \
            _Conv(c7, 192, **col)
        self.branch7x7dbl_1, self.branch7x7dbl_2 = _Conv(cin, c7, 1), _Conv(c7, c7, **col)
        self.branch7x7dbl_3, self.branch7x7dbl_4 = _Conv(c7, c7, **row), _Conv(c7, c7, **col)
        self.branch7x7dbl_5 = _Conv(c7, 192, **row)
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x):
        double = x
        for i in range(1, 6):
            double = getattr(self, f"branch7x7dbl_{i}")(double)
        return torch.cat([self.branch1x1(x), self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))), double,
                          self.branch_pool(_avg3(x))], 1)


class _D(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.branch3x3_1, self.branch3x3_2 = _Conv(cin, 192, 1), _Conv(192, 320, 3, stride=2)
        self.branch7x7x3_1, self.branch7x7x3_2 = _Conv(cin, 192, 1), _Conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3, self.branch7x7x3_4 = _Conv(192, 192, (7, 1), padding=(3, 0)), _Conv(192, 192, 3, 2)

    def forward(self, x):
        seven = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), seven, F.max_pool2d(x, 3, 2)], 1)


class _E(nn.Module):
    def __init__(self, cin, max_pool: bool):
        super().__init__()
        self.branch1x1 = _Conv(cin, 320, 1)
        self.branch3x3_1 = _Conv(cin, 384, 1)
        self.branch3x3_2a, self.branch3x3_2b = _Conv(384, 384, (1, 3), padding=(0, 1)), \
            _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1, self.branch3x3dbl_2 = _Conv(cin, 448, 1), _Conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a, self.branch3x3dbl_3b = _Conv(384, 384, (1, 3), padding=(0, 1)), \
            _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _Conv(cin, 192, 1)
        self.max_pool = max_pool   # the last block pools by max in the FID network (a quirk of its TF graph)

    def forward(self, x):
        single = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, 1, 1) if self.max_pool else _avg3(x)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(single), self.branch3x3_2b(single),
                          self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double), self.branch_pool(pooled)], 1)


class FIDInception(nn.Module):
    """pytorch-fid's Inception-v3: (N, 3, H, W) in [0, 1] -> (N, 2048) pool features. ``path=None``
    leaves random weights (to write a file of the layout in tests)."""

    def __init__(self, path=None):
        super().__init__()
        self.Conv2d_1a_3x3, self.Conv2d_2a_3x3 = _Conv(3, 32, 3, stride=2), _Conv(32, 32, 3)
        self.Conv2d_2b_3x3, self.Conv2d_3b_1x1 = _Conv(32, 64, 3, padding=1), _Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = _Conv(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = _A(192, 32), _A(256, 64), _A(288, 64)
        self.Mixed_6a = _B(288)
        self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e = _C(768, 128), _C(768, 160), _C(768, 160), \
            _C(768, 192)
        self.Mixed_7a = _D(768)
        self.Mixed_7b, self.Mixed_7c = _E(1280, max_pool=False), _E(2048, max_pool=True)
        if path is not None:
            state = {k: v for k, v in _load_state(path, "Inception").items() if not k.startswith("fc.")}
            _load_into(self, state, path, "pytorch-fid Inception")
        self.requires_grad_(False).eval()

    @torch.no_grad()
    def forward(self, x):
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
        x = F.max_pool2d(self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x))), 3, 2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, 2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return x.mean((2, 3))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to features a (N, D) and b (M, D):
    |mu_a - mu_b|^2 + tr(C_a) + tr(C_b) - 2 tr((C_a C_b)^1/2).

    tr((C_a C_b)^1/2) is the sum of singular values of A^T B for centred, scaled samples (C_a = A^T A),
    computed on the smaller of the N x M sample product and the D x D covariances; exact either way, and
    no general matrix square root (slow and unstable on the rank-deficient covariances of few frames)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    x = (a - mu_a) / np.sqrt(max(len(a) - 1, 1))    # (N, D): C_a = x^T x
    y = (b - mu_b) / np.sqrt(max(len(b) - 1, 1))    # (M, D): C_b = y^T y
    if len(a) * len(b) <= a.shape[1] ** 2:
        cross = np.linalg.svd(x @ y.T, compute_uv=False).sum()        # (N, M)
    else:
        values, vectors = np.linalg.eigh(x.T @ x)                      # C_a^1/2 C_b C_a^1/2 is symmetric PSD
        root = (vectors * np.sqrt(values.clip(0))) @ vectors.T
        cross = np.sqrt(np.linalg.eigvalsh(root @ (y.T @ y) @ root).clip(0)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + (x * x).sum() + (y * y).sum() - 2 * cross)
