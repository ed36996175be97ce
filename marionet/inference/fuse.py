"""Inference rewrites of the shared convolution blocks: the same function, less work.

``fuse(model)`` replaces, in any family's networks, the blocks of ``marionet.nn.blocks`` by equivalents
that give the same outputs up to float rounding (about 1e-6):

- batch norm folded into the convolution before it (``SameBlock2d``, ``DownBlock2d``, ``UpBlock2d``: conv ->
  BN -> ReLU is one convolution with a ReLU; ``ResBlock2d``: its second norm goes into its first
  convolution, its first norm, which also feeds nothing else, stays a per-channel scale and shift);
- ``UpBlock2d``'s nearest x2 upsampling then 3x3 convolution as four 2x2 convolutions on the small map,
  one per output phase (sub-pixel): 16 instead of 36 multiply-adds per input pixel and channel pair, and
  the upsampled map is never built;
- ``AntiAliasInterpolation2d`` as a strided convolution: only the pixels it keeps are computed.

A family may also name convolutions whose output is pixels (``image_heads``, e.g. FOMM's RGB output
layer); they become ``FoldedConv``s, so that reduced precision covers them.

Only exact block types are replaced (a subclass may change ``forward``), and only when their norms hold
running statistics; anything else is left as it is. Every convolution of a rewritten block is a
``FoldedConv``, whose ``kernel`` runs it: float32 here, bfloat16 or int8 from ``marionet.inference.precision``.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from marionet.nn.blocks import AntiAliasInterpolation2d, DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d


class Float32Kernel:
    """conv2d (+ ReLU) in float32; the others follow its interface: ``(conv, x) -> y``, ``name``."""
    name = "fp32"

    def __call__(self, conv: "FoldedConv", x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x.float(), conv.weight, conv.bias, conv.stride, conv.padding, 1, conv.groups)
        return F.relu_(y) if conv.relu else y


class FoldedConv(nn.Module):
    """A convolution with its batch norm folded in and an optional ReLU. weight (O, I/groups, kh, kw)."""

    def __init__(self, weight, bias, padding=0, stride=1, groups=1, relu=False):
        super().__init__()
        self.register_buffer("weight", weight.detach().float().clone())
        self.register_buffer("bias", bias.detach().float().clone())
        self.padding, self.stride, self.groups, self.relu = _pair(padding), _pair(stride), groups, relu
        self.kernel = Float32Kernel()

    def forward(self, x):
        return self.kernel(self, x)

    def extra_repr(self):
        return f"{tuple(self.weight.shape)}, padding={self.padding}, relu={self.relu}, kernel={self.kernel.name}"


class SubPixelConv(FoldedConv):
    """Nearest x2 upsampling then a 3x3 convolution (padding 1), computed on the small map.

    Output pixel (2i + a, 2j + b) sees upsampled rows 2i+a-1 .. 2i+a+1, i.e. input rows (i-1, i, i) for
    a = 0 and (i, i, i+1) for a = 1: a 2x2 kernel per phase (a, b), whose taps are sums of the 3x3 taps.
    All four phases are one convolution with 4*O outputs over the input padded by 1, (H+1) x (W+1);
    phase (a, b) is its window starting at (a, b).
    """

    def __init__(self, weight, bias, relu=False):
        o, i = weight.shape[:2]
        w = weight.detach().double()
        rows = [torch.stack([w[:, :, 0], w[:, :, 1] + w[:, :, 2]], 2),           # a = 0: rows (i-1, i)
                torch.stack([w[:, :, 0] + w[:, :, 1], w[:, :, 2]], 2)]           # a = 1: rows (i, i+1)
        phases = [torch.stack(pair, -1) for r in rows                           # (O, I, 2, 2) each, order (a, b)
                  for pair in ((r[..., 0], r[..., 1] + r[..., 2]), (r[..., 0] + r[..., 1], r[..., 2]))]
        # phase-major channels (p * O + o): in channels-last memory each phase's pixel is one contiguous run
        super().__init__(torch.cat(phases, 0), bias.detach().repeat(4), padding=1, relu=relu)
        self.out_channels = o

    def forward(self, x):
        b, _, h, w = x.shape
        full = self.kernel(self, x).unflatten(1, (4, self.out_channels))          # (B, 4, O, H+1, W+1)
        out = torch.empty(b, self.out_channels, 2 * h, 2 * w, dtype=full.dtype, device=full.device,
                          memory_format=_format(x))
        for p, (a, c) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
            out[:, :, a::2, c::2] = full[:, p, :, a:a + h, c:c + w]
        return out


class ConvBlock(nn.Module):
    """SameBlock2d / DownBlock2d / UpBlock2d with the norm folded: conv + ReLU (+ 2x2 average pool)."""

    def __init__(self, conv: FoldedConv, pool: bool = False):
        super().__init__()
        self.conv, self.pool = conv, pool

    def forward(self, x):
        out = self.conv(x).float()
        return F.avg_pool2d(out, 2) if self.pool else out


class FoldedResBlock(nn.Module):
    """x + conv2(conv1(relu(x * scale + shift))), conv1 holding the second norm and its ReLU."""

    def __init__(self, scale, shift, conv1: FoldedConv, conv2: FoldedConv):
        super().__init__()
        self.register_buffer("scale", scale.detach().float().reshape(1, -1, 1, 1).clone())
        self.register_buffer("shift", shift.detach().float().reshape(1, -1, 1, 1).clone())
        self.conv1, self.conv2 = conv1, conv2

    def forward(self, x):
        h = F.relu_(torch.addcmul(self.shift, x, self.scale))
        return self.conv2(self.conv1(h)).float() + x


class StridedAntiAlias(nn.Module):
    """AntiAliasInterpolation2d computing only the pixels it keeps (stride = 1 / scale); its Gaussian
    k k^T as two 1-D passes (k = the kernel's row sums, as k sums to 1) when the stored kernel is
    exactly that (a checkpoint stored in float16 is not)."""

    def __init__(self, block: AntiAliasInterpolation2d):
        super().__init__()
        kernel = block.weight.detach()[0, 0].double()                   # (k, k)
        k = kernel.sum(1)
        c, n = block.groups, len(k)
        if torch.allclose(k[:, None] * k[None, :], kernel, rtol=0, atol=1e-8):
            self.register_buffer("rows", k.float().expand(c, 1, 1, n).clone())
            self.register_buffer("cols", k.float()[:, None].expand(c, 1, n, 1).clone())
            self.weight = None
        else:
            self.register_buffer("weight", block.weight.detach().clone())
        self.pads = (block.ka, block.kb, block.ka, block.kb)
        self.groups, self.stride = c, block.stride

    def forward(self, x):
        x = F.pad(x, self.pads)
        if self.weight is not None:
            return F.conv2d(x, self.weight, stride=self.stride, groups=self.groups)
        x = F.conv2d(x, self.rows, stride=(1, self.stride), groups=self.groups)
        return F.conv2d(x, self.cols, stride=(self.stride, 1), groups=self.groups)


# ------------------------------------------------------------------------------------------------

def fold(conv: nn.Conv2d, norm: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of ``conv`` followed by the eval-mode ``norm`` (computed in float64)."""
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else w.new_zeros(w.shape[0])
    if norm is None:
        return w, b
    scale, shift = norm_affine(norm)
    return w * scale[:, None, None, None], b * scale + shift


def norm_affine(norm) -> tuple[torch.Tensor, torch.Tensor]:
    """An eval-mode batch norm as y = x * scale + shift per channel (float64)."""
    scale = 1 / torch.sqrt(norm.running_var.detach().double() + norm.eps)
    shift = -norm.running_mean.detach().double() * scale
    if norm.affine:
        scale, shift = scale * norm.weight.detach().double(), shift * norm.weight.detach().double() + norm.bias.detach().double()
    return scale, shift


def _plain(conv) -> bool:
    return type(conv) is nn.Conv2d and not parametrize.is_parametrized(conv) and conv.dilation == (1, 1)


def _foldable(norm) -> bool:
    return isinstance(norm, nn.modules.batchnorm._BatchNorm) and norm.running_mean is not None


def rewrite(module: nn.Module) -> nn.Module | None:
    """The fused equivalent of one block, or None to keep it."""
    kind = type(module)
    if kind is AntiAliasInterpolation2d:
        return StridedAntiAlias(module) if module.scale != 1.0 else nn.Identity()
    if kind in (SameBlock2d, DownBlock2d, UpBlock2d) and _plain(module.conv) and _foldable(module.norm):
        c = module.conv
        w, b = fold(c, module.norm)
        if kind is UpBlock2d:
            if c.kernel_size != (3, 3) or c.padding != (1, 1) or c.stride != (1, 1) or c.groups != 1:
                return None
            return ConvBlock(SubPixelConv(w, b, relu=True))
        return ConvBlock(FoldedConv(w, b, c.padding, c.stride, c.groups, relu=True), pool=kind is DownBlock2d)
    if kind is ResBlock2d and _plain(module.conv1) and _plain(module.conv2) and _foldable(module.norm1) \
            and _foldable(module.norm2):
        c1, c2 = module.conv1, module.conv2
        scale, shift = norm_affine(module.norm1)
        conv1 = FoldedConv(*fold(c1, module.norm2), c1.padding, c1.stride, c1.groups, relu=True)
        conv2 = FoldedConv(*fold(c2), c2.padding, c2.stride, c2.groups)
        return FoldedResBlock(scale, shift, conv1, conv2)
    return None


def fuse(model: nn.Module, inplace: bool = False, image_heads: tuple[str, ...] = ()) -> nn.Module:
    """``model`` (eval mode) with its shared blocks rewritten (see the module docstring), and the plain
    convolutions its family lists in ``image_heads`` (pixels out, not geometry) as FoldedConvs too."""
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            new = rewrite(child)
            if new is not None:
                setattr(parent, name, new.to(child_device(child)))
    for path in image_heads:
        parent_path, _, name = path.rpartition(".")
        parent = model.get_submodule(parent_path)
        conv = getattr(parent, name, None)
        if conv is not None and _plain(conv):
            head = FoldedConv(*fold(conv), conv.padding, conv.stride, conv.groups).to(child_device(conv))
            setattr(parent, name, head)
    return model


def child_device(module: nn.Module) -> torch.device:
    tensor = next(iter(module.buffers()), None) if next(module.parameters(), None) is None else next(module.parameters())
    return tensor.device if tensor is not None else torch.device("cpu")


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _format(x: torch.Tensor):
    return torch.channels_last if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) \
        and not x.is_contiguous() else torch.contiguous_format
