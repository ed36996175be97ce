"""Reduced precision for the convolutions of fused blocks, where the CPU has the instructions for it.

``set_precision(model, "fp32" | "bf16" | "int8")`` gives every ``FoldedConv`` of a fused model (see
``marionet.inference.fuse``) a kernel:

- fp32: ``F.conv2d``.
- bf16: activations and weights in bfloat16, accumulation in float32 (oneDNN, weights packed once in its
  blocked layout, ReLU fused). Only on a CPU with bfloat16 dot products (AVX512-BF16 or AMX); elsewhere
  it would be emulated and slower, so the model stays float32 and ``set_precision`` says so.
- int8: weights int8 per output channel (symmetric), activations uint8 per tensor with the scale and
  zero point of each call's own input (dynamic: no calibration, nothing saturates), products summed in
  int32 (AVX512-VNNI where present), output float32 with the ReLU fused (oneDNN).

Reduced precision covers every convolution of the shared blocks (hourglass encoders and decoders of
the keypoint detector and the dense-motion network; the generator's encoder, residual bottleneck and
decoder) and the heads a family lists as ``image_heads`` (FOMM: the RGB output layer); int8 leaves the
keypoint detector in float32 (``FLOAT32_UNDER_INT8``). What stays float32: the other heads (keypoint heatmaps and Jacobians, dense-motion masks and occlusion), each
block's output (so warps, residual sums and concatenations see float32), the anti-alias blur, the
warps, the softmaxes and all keypoint geometry (means, Jacobian inverses, relative transfer, hull).
"""
from __future__ import annotations

import functools
import warnings
from pathlib import Path

import torch
from torch import nn

from marionet.errors import MarionetError
from marionet.inference.fuse import FoldedConv, Float32Kernel

PRECISIONS = ("fp32", "bf16", "int8")
# Networks int8 leaves in float32: the keypoint detector's int8 rounding moved keypoints enough to cost the
# trained puppets model 35 dB of PSNR on real frames (49 dB and more for every part of the generator), and
# it is about 3% of vox-256's arithmetic.
FLOAT32_UNDER_INT8 = ("kp_detector",)
_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile")


@functools.cache   # read once: /proc/cpuinfo does not change while we run
def cpu_features() -> dict:
    """What this CPU offers for reduced precision: torch's own detection plus /proc/cpuinfo's flags (Linux)."""
    def probe(name):
        fn = getattr(torch.cpu, name, None)
        try:
            return bool(fn()) if fn is not None else None
        except Exception:  # noqa: BLE001 -- a probe that fails counts as absent
            return None

    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    return {
        "capability": torch.backends.cpu.get_cpu_capability(),
        "onednn": torch.backends.mkldnn.is_available(),
        "avx512_bf16": probe("_is_avx512_bf16_supported"),
        "amx": probe("_is_amx_tile_supported"),
        "vnni": probe("_is_vnni_supported"),
        "cpuinfo": sorted(flags.intersection(_FLAGS)),
    }


def unavailable(precision: str, features: dict | None = None) -> str | None:
    """Why ``precision`` cannot run natively here, or None when it can."""
    if precision not in PRECISIONS:
        raise MarionetError(f"--precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    features = features or cpu_features()
    if precision == "fp32":
        return None
    if not features["onednn"]:
        return "this PyTorch build has no oneDNN"
    flags = set(features["cpuinfo"])
    if precision == "bf16" and not (features["avx512_bf16"] or features["amx"] or flags & {"avx512_bf16", "amx_bf16"}):
        return "this CPU has no bfloat16 dot products (AVX512-BF16 or AMX)"
    if precision == "int8" and not hasattr(torch.ops.onednn, "qconv2d_pointwise"):
        return "this PyTorch build has no oneDNN int8 convolution"
    return None


def set_precision(model: nn.Module, precision: str) -> str:
    """Give every FoldedConv of ``model`` the kernel of ``precision``; -> the precision in effect
    (float32 where the CPU lacks the instructions; ``unavailable`` says why)."""
    if unavailable(precision) is not None:
        precision = "fp32"
    kernels = {"fp32": lambda conv: Float32Kernel(), "bf16": Bfloat16Kernel, "int8": Int8Kernel}
    for name, module in model.named_modules():
        if isinstance(module, FoldedConv):
            keep = precision == "int8" and name.split(".")[0] in FLOAT32_UNDER_INT8
            module.kernel = kernels["fp32" if keep else precision](module)
    return precision


def _attr(conv: FoldedConv) -> str:
    return "relu" if conv.relu else "none"


class Bfloat16Kernel:
    """bf16 in, bf16 out; weights packed once for oneDNN (the per-call reorder costs a fifth of the time)."""
    name = "bf16"

    def __init__(self, conv: FoldedConv):
        self.bias = conv.bias.bfloat16()
        weight = conv.weight.bfloat16().contiguous(memory_format=torch.channels_last)
        self.weight = torch.ops.mkldnn._reorder_convolution_weight(weight, list(conv.padding), list(conv.stride),
                                                                   [1, 1], conv.groups)

    def __call__(self, conv: FoldedConv, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_pointwise(x.to(torch.bfloat16), self.weight, self.bias, list(conv.padding),
                                                       list(conv.stride), [1, 1], conv.groups, _attr(conv), [], "")


class Int8Kernel:
    """uint8 activations (this call's range) x int8 weights (per output channel) -> float32."""
    name = "int8"

    def __init__(self, conv: FoldedConv):
        w = conv.weight
        self.w_scale = (w.abs().amax(dim=(1, 2, 3)).double() / 127).clamp_min(1e-12).float()
        wq = torch.round(w / self.w_scale[:, None, None, None]).clamp(-127, 127).to(torch.int8)
        self.w_zero = torch.zeros(w.shape[0], dtype=torch.long)
        self.weight = torch.ops.onednn.qconv_prepack(wq.contiguous(memory_format=torch.channels_last), self.w_scale,
                                                     1.0, 0, list(conv.stride), list(conv.padding), [1, 1],
                                                     conv.groups, None)

    def __call__(self, conv: FoldedConv, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        lo, hi = torch.aminmax(_flat(x))
        lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)  # 0 (the padding) must be exact
        scale = (hi - lo) / 255 or 1.0
        zero = min(255, max(0, round(-lo / scale)))
        with warnings.catch_warnings():  # only a fast float -> uint8 pass here; its deprecation is about qtensors
            warnings.simplefilter("ignore", UserWarning)
            q = _as_uint8(torch.quantize_per_tensor(x, scale, zero, torch.quint8))
        return torch.ops.onednn.qconv2d_pointwise(q, scale, zero, self.weight, self.w_scale, self.w_zero, conv.bias,
                                                  list(conv.stride), list(conv.padding), [1, 1], conv.groups,
                                                  1.0, 0, torch.float32, _attr(conv), [], "")


def _flat(x: torch.Tensor) -> torch.Tensor:
    """x as one axis without a copy (a reduction over a channels-last tensor otherwise copies it first)."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return x.permute(0, 2, 3, 1).reshape(-1)
    return x.reshape(-1)


def _as_uint8(q: torch.Tensor) -> torch.Tensor:
    """The uint8 values of a quint8 tensor, sharing its memory (``int_repr`` would copy them)."""
    return torch.empty(0, dtype=torch.uint8).set_(q.untyped_storage(), q.storage_offset(), q.size(), q.stride())
