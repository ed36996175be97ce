"""Convolutional building blocks shared by the model families.

Attribute names (``conv``, ``norm``, ``conv1``, ``norm2``, ``down_blocks``, ``up_blocks`` ...) follow the
official FOMM code so that its checkpoints load by name.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from marionet.nn.attention import DecoderAttention, DecoderGate


class SameBlock2d(nn.Module):
    """conv -> BN -> ReLU at constant resolution; the down and up blocks add a resize."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, padding: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size, padding=padding, groups=groups)
        self.norm = nn.BatchNorm2d(out_features, affine=True)

    def forward(self, x):
        return F.relu(self.norm(self.conv(x)))


class DownBlock2d(SameBlock2d):
    """conv 3x3 -> BN -> ReLU -> avg-pool 2x2 (halves H and W)."""

    def forward(self, x):
        return F.avg_pool2d(super().forward(x), 2)


class UpBlock2d(SameBlock2d):
    """nearest x2 upsampling -> conv 3x3 -> BN -> ReLU."""

    def forward(self, x):
        return super().forward(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ResBlock2d(nn.Module):
    """Pre-activation residual block: x + conv(relu(bn(conv(relu(bn(x))))))."""

    def __init__(self, features: int, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size, padding=padding)
        self.conv2 = nn.Conv2d(features, features, kernel_size, padding=padding)
        self.norm1 = nn.BatchNorm2d(features, affine=True)
        self.norm2 = nn.BatchNorm2d(features, affine=True)

    def forward(self, x):
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


class Encoder(nn.Module):
    """Hourglass encoder: returns [x, e_1, ..., e_n], each half the size of the previous one."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256):
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DownBlock2d(in_features if i == 0 else min(max_features, block_expansion * 2 ** i),
                        min(max_features, block_expansion * 2 ** (i + 1)))
            for i in range(num_blocks))

    def forward(self, x):
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class Decoder(nn.Module):
    """Hourglass decoder: upsample, then concatenate [upsampled, skip] at every level.

    ``extra_features``: channels the caller has already concatenated to every skip (Monkey-Net's
    keypoint embedding); ``out_features``: a final 3x3 conv to that many channels (Monkey-Net's
    ``decoder.conv``), else the output has ``out_filters`` channels; ``attention``: a
    ``DecoderAttention`` (Donkey-Net's gate after every up block, before its skip is concatenated).
    """

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256,
                 extra_features: int = 0, out_features: int | None = None, attention: DecoderAttention | None = None):
        super().__init__()
        blocks = []
        for i in reversed(range(num_blocks)):
            in_filters = (1 if i == num_blocks - 1 else 2) * min(max_features, block_expansion * 2 ** (i + 1))
            blocks.append(UpBlock2d(in_filters + extra_features, min(max_features, block_expansion * 2 ** i)))
        self.up_blocks = nn.ModuleList(blocks)
        widths = [block.conv.out_channels for block in blocks]                       # deepest first
        self.attention = DecoderGate(widths, attention) if attention is not None else None
        self.out_filters = block_expansion + in_features + extra_features
        if out_features is not None:
            self.conv = nn.Conv2d(self.out_filters, out_features, kernel_size=3, padding=1)
            self.out_filters = out_features
        else:
            self.conv = None

    def forward(self, skips: list[torch.Tensor]):
        skips = list(skips)
        out = skips.pop()
        for level, block in enumerate(self.up_blocks):
            out = block(out)
            if self.attention is not None:
                out = self.attention(out, level)
            out = torch.cat([out, skips.pop()], dim=1)
        return out if self.conv is None else self.conv(out)


class Hourglass(nn.Module):
    """U-Net; output has ``out_filters`` channels (``block_expansion + in_features``, or
    ``out_features`` after a final conv) at the input resolution.

    H and W must be multiples of 2**num_blocks.
    """

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256,
                 out_features: int | None = None, attention: DecoderAttention | None = None):
        super().__init__()
        self.encoder = Encoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = Decoder(block_expansion, in_features, num_blocks, max_features, out_features=out_features,
                               attention=attention)
        self.out_filters = self.decoder.out_filters
        self.num_blocks = num_blocks

    def forward(self, x):
        return self.decoder(self.encoder(x))


class DiscriminatorBlock(nn.Module):
    """conv (no padding; optional spectral norm) -> InstanceNorm (optional) -> LeakyReLU(0.2) -> avg-pool 2 (optional)."""

    def __init__(self, in_features: int, out_features: int, norm: bool = False, kernel_size: int = 4,
                 pool: bool = True, sn: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=kernel_size)
        if sn:
            self.conv = spectral_norm(self.conv)
        self.norm = nn.InstanceNorm2d(out_features, affine=True) if norm else None
        self.pool = pool

    def forward(self, x):
        out = self.conv(x)
        if self.norm is not None:
            out = self.norm(out)
        out = F.leaky_relu(out, 0.2)
        return F.avg_pool2d(out, 2) if self.pool else out


class AntiAliasInterpolation2d(nn.Module):
    """Gaussian blur then subsampling by an integer stride (scale = 1/stride).

    The Gaussian (sigma = (1/scale - 1) / 2) is a buffer named ``weight``, as in official checkpoints.
    Subsampling keeps rows/columns 0, stride, 2*stride, ... (not centred), like the official code.
    """

    def __init__(self, channels: int, scale: float):
        super().__init__()
        sigma = (1 / scale - 1) / 2
        kernel_size = 2 * round(sigma * 4) + 1
        self.ka = kernel_size // 2
        self.kb = self.ka - 1 if kernel_size % 2 == 0 else self.ka
        mean = (kernel_size - 1) / 2
        axis = torch.arange(kernel_size, dtype=torch.float32)
        # scale 1 gives sigma 0; the kernel is then unused (and NaN in official files), keep it finite here.
        g = torch.exp(-((axis - mean) ** 2) / (2 * sigma ** 2)) if sigma > 0 else torch.ones(kernel_size)
        kernel = g[:, None] * g[None, :]
        kernel = kernel / kernel.sum()
        self.register_buffer("weight", kernel.expand(channels, 1, kernel_size, kernel_size).clone())
        self.groups = channels
        self.scale = scale
        self.stride = int(1 / scale)

    def forward(self, x):
        if self.scale == 1.0:
            return x
        dtype = x.dtype
        # In float32 under autocast: oneDNN's bfloat16 depthwise convolution with a large kernel (29x29 at
        # scale 1/8) on channels-last input takes minutes where float32 takes milliseconds.
        work = torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype
        with torch.autocast(x.device.type, enabled=False):
            x = F.pad(x.to(work), (self.ka, self.kb, self.ka, self.kb))
            x = F.conv2d(x, self.weight.to(work), groups=self.groups)
        return x[:, :, ::self.stride, ::self.stride].to(dtype)


def vgg_features(config) -> nn.Sequential:
    """A VGG feature stack named as torchvision's ``vgg*.features``: conv 3x3 + ReLU for each width in
    ``config``, 2x2 max-pooling for each "M"."""
    layers, channels = [], 3
    for v in config:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, v, 3, padding=1), nn.ReLU()]
            channels = v
    return nn.Sequential(*layers)
