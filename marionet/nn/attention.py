"""Attention gates of Donkey-Net (Paliyam et al., 2021), usable by config on any width.

- ``ECA``: efficient channel attention (Wang et al., CVPR 2020): global average pool, then a 1-D
  convolution along the channel axis (no bias) -> one logit per channel.
- ``DecoderGate``: after each up block of an hourglass decoder, ECA scales the channels, then a
  spatial map from [mean, max] over the scaled channels (one k x k conv shared by every level) scales
  the pixels, and the result is added back: ``x + s * (c * x)``.
- ``DiscriminatorGate``: after a discriminator block, the ECA logit (no sigmoid) times a spatial
  logit (1x1 reduction, two dilated 3x3 conv + BN + ReLU, 1x1 to one channel) gives the weight
  ``w = sigmoid(e * s) + 1``, and the block output becomes ``w * x + x``.

Each gate's widths come from the network it sits in; ECA kernel sizes are derived from them
(``eca_kernel_size``) unless a config lists them (the public code's checkpoints need its hard-coded
lists, see ``marionet.models.donkeynet``). Config sections (``attention:`` of a decoder's or a
discriminator's params): ``true`` for the defaults, or a mapping of ``DecoderAttention`` /
``DiscriminatorAttention`` fields.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from marionet.config import parse_section
from marionet.errors import ConfigError


def eca_kernel_size(channels: int) -> int:
    """ECA's adaptive kernel, the odd size nearest (log2 C + 1) / 2: 2 floor((log2 C + 1) / 4) + 1."""
    return 2 * int((math.log2(channels) + 1) // 4) + 1


# ---------------------------------------------------------------------------------------------- config

def _check_kernels(kernels, where: str) -> None:
    if kernels != "auto" and (isinstance(kernels, str) or not all(k >= 1 and k % 2 for k in kernels)):
        raise ConfigError(f"{where}.eca_kernels: 'auto' or a list of odd sizes >= 1, got {kernels!r}")


@dataclass(frozen=True)
class DecoderAttention:
    eca_kernels: str | tuple[int, ...] = "auto"   # 'auto' (from each level's width) or one odd size per level
    spatial_kernel: int = 7

    def validate(self, where: str) -> None:
        _check_kernels(self.eca_kernels, where)
        if self.spatial_kernel < 1 or self.spatial_kernel % 2 == 0:
            raise ConfigError(f"{where}.spatial_kernel: must be odd and >= 1, got {self.spatial_kernel}")


@dataclass(frozen=True)
class DiscriminatorAttention:
    eca_kernels: str | tuple[int, ...] = "auto"   # as DecoderAttention, one per discriminator block
    reduction: int = 16                            # spatial branch width: channels // reduction (at least 1)
    dilations: tuple[int, ...] = (2, 4)            # of the two dilated 3x3 convolutions

    def validate(self, where: str) -> None:
        _check_kernels(self.eca_kernels, where)
        if self.reduction < 1:
            raise ConfigError(f"{where}.reduction: must be >= 1, got {self.reduction}")
        if len(self.dilations) != 2 or min(self.dilations) < 1:
            raise ConfigError(f"{where}.dilations: two whole numbers >= 1, got {list(self.dilations)}")


def parse_attention(cls, spec, where: str):
    """An ``attention:`` config value -> ``cls`` (DecoderAttention or DiscriminatorAttention) or None:
    None/false -> no gates; true -> the defaults; a mapping -> its fields; a parsed one as it is."""
    if spec is None or spec is False or isinstance(spec, cls):
        return spec or None
    spec = parse_section(cls, {} if spec is True else spec, where)
    spec.validate(where)
    return spec


def _kernels(spec, widths: list[int], what: str) -> list[int]:
    if spec.eca_kernels == "auto":
        return [eca_kernel_size(c) for c in widths]
    if len(spec.eca_kernels) != len(widths):
        raise ConfigError(f"attention.eca_kernels: {len(spec.eca_kernels)} sizes for the {len(widths)} levels of "
                          f"{what}")
    return list(spec.eca_kernels)


# ---------------------------------------------------------------------------------------------- modules

class ECA(nn.Conv1d):
    """(B, C, h, w) -> channel logits (B, C, 1, 1): a 1-D conv over the channels' spatial means."""

    def __init__(self, kernel_size: int):
        super().__init__(1, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=False)

    def forward(self, x):
        b, c = x.shape[:2]
        return super().forward(x.mean(dim=(2, 3)).reshape(b, 1, c)).reshape(b, c, 1, 1)


class DecoderGate(nn.Module):
    """One ECA per decoder level (deepest first) and one spatial conv shared by the levels."""

    def __init__(self, widths: list[int], spec: DecoderAttention, what: str = "the decoder"):
        super().__init__()
        self.eca = nn.ModuleList(ECA(k) for k in _kernels(spec, widths, what))
        k = spec.spatial_kernel
        self.spatial = nn.Conv2d(2, 1, k, padding=k // 2)

    def forward(self, x, level: int):
        """x (B, C, h, w), the output of up block ``level`` -> gated x, same shape."""
        y = torch.sigmoid(self.eca[level](x)) * x                                        # channel scaling
        pooled = torch.cat([y.mean(dim=1, keepdim=True), y.amax(dim=1, keepdim=True)], dim=1)  # (B, 2, h, w)
        return x + torch.sigmoid(self.spatial(pooled)) * y


class DiscriminatorGate(nn.Module):
    """The gate of one discriminator block of ``channels`` outputs."""

    def __init__(self, channels: int, eca_kernel: int, spec: DiscriminatorAttention):
        super().__init__()
        hidden = max(1, channels // spec.reduction)
        d1, d2 = spec.dilations
        self.eca = ECA(eca_kernel)
        self.reduce = nn.Conv2d(channels, hidden, kernel_size=1)
        self.dilated1 = nn.Conv2d(hidden, hidden, kernel_size=3, padding=d1, dilation=d1)
        self.norm1 = nn.BatchNorm2d(hidden)
        self.dilated2 = nn.Conv2d(hidden, hidden, kernel_size=3, padding=d2, dilation=d2)
        self.norm2 = nn.BatchNorm2d(hidden)
        self.project = nn.Conv2d(hidden, 1, kernel_size=1)

    def forward(self, x):
        """x (B, C, h, w) -> (sigmoid(e * s) + 1) * x + x, same shape."""
        e = self.eca(x)                                                                   # (B, C, 1, 1)
        s = F.relu(self.norm1(self.dilated1(self.reduce(x))))
        s = self.project(F.relu(self.norm2(self.dilated2(s))))                           # (B, 1, h, w)
        return (torch.sigmoid(e * s) + 1) * x + x


def discriminator_gates(widths: list[int], spec: DiscriminatorAttention | None) -> nn.ModuleList | None:
    """One ``DiscriminatorGate`` per block of the given output widths, or None without attention."""
    if spec is None:
        return None
    kernels = _kernels(spec, widths, "the discriminator")
    return nn.ModuleList(DiscriminatorGate(c, k, spec) for c, k in zip(widths, kernels))
