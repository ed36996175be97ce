"""Inference speed: fused blocks, reduced precision and the onnxruntime backend (docs/speed.md).

    model, used = optimize(model, "bf16")     # a fused copy; ``used`` is "fp32" where the CPU lacks bf16
    pipeline.optimized("int8")                # the same through marionet.pipeline.AnimationPipeline

- ``fuse``: batch norm folded into convolutions, sub-pixel upsampling convolutions, strided anti-aliasing.
- ``precision``: CPU feature detection; bfloat16 and int8 kernels for the fused convolutions.
- ``ort``: an onnxruntime-backed model with the interface the pipeline calls (``marionet.export`` writes it).
"""
from __future__ import annotations

import torch
from torch import nn

from marionet.inference.fuse import fuse
from marionet.inference.precision import PRECISIONS, cpu_features, set_precision, unavailable

__all__ = ["optimize", "fuse", "set_precision", "cpu_features", "unavailable", "PRECISIONS"]


def optimize(model: nn.Module, precision: str = "fp32", inplace: bool = False,
             channels_last: bool = True, image_heads: tuple[str, ...] = ()) -> tuple[nn.Module, str]:
    """An eval-mode copy of ``model`` (or ``model`` itself with ``inplace``) with fused blocks running at
    ``precision`` -> (model, the precision in effect: float32 where the CPU lacks the instructions)."""
    unavailable(precision)  # an unknown name is an error
    model = fuse(model, inplace=inplace, image_heads=image_heads)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, set_precision(model, precision)
