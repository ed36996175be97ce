"""Batch norm synchronised across DistributedDataParallel processes, on any device.

torch.nn.SyncBatchNorm only runs on GPUs; this one all-reduces the per-channel sums with the
differentiable ``torch.distributed.nn.all_reduce``, so gloo on CPUs works too. With one process,
or in eval mode, it is exactly ``BatchNorm2d``; its state dict keys are BatchNorm2d's.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn as dist_nn

from torch import nn


class SyncBatchNorm2d(nn.BatchNorm2d):
    # Its own process group: sharing the default one with DDP's asynchronous gradient all-reduces
    # interleaves the two streams of collectives and corrupts gradients (seen with gloo).
    process_group = None

    def forward(self, x):
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        if x.dtype in (torch.bfloat16, torch.float16):   # under autocast: statistics in float32, as BatchNorm2d
            x = x.float()
        c = x.shape[1]
        # Two passes (mean, then squared deviations): E[x^2] - E[x]^2 loses precision when |mean| >> std.
        count = torch.full((1,), x.numel() / c, dtype=x.dtype, device=x.device)
        sums = dist_nn.all_reduce(torch.cat([x.sum((0, 2, 3)), count]), group=self.process_group)
        n = sums[-1]
        mean = sums[:c] / n
        centred = x - mean.view(1, c, 1, 1)
        var = dist_nn.all_reduce((centred * centred).sum((0, 2, 3)), group=self.process_group) / n  # biased
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            self.running_mean.lerp_(mean.detach(), self.momentum)
            self.running_var.lerp_(var.detach() * n / (n - 1), self.momentum)
        return centred * (self.weight / torch.sqrt(var + self.eps)).view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)


def convert_sync_batchnorm(module: nn.Module, process_group=None) -> nn.Module:
    """Replace every BatchNorm2d by a synchronised one (torch's on CUDA, ours elsewhere), keeping its state.

    Every process must call it (it creates a process group for the batch-norm statistics)."""
    if process_group is None and dist.is_available() and dist.is_initialized():
        process_group = dist.new_group()
    return _convert(module, process_group)


def _convert(module: nn.Module, process_group) -> nn.Module:
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, SyncBatchNorm2d):
        cls = nn.SyncBatchNorm if module.weight is not None and module.weight.is_cuda else SyncBatchNorm2d
        new = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        new.process_group = process_group
        new.load_state_dict(module.state_dict())
        new.to(module.running_mean.device, module.running_mean.dtype)   # float64 runs too
        for name, p in module.named_parameters(recurse=False):  # a frozen layer stays frozen (KP-mask's detector)
            getattr(new, name).requires_grad_(p.requires_grad)
        return new.train(module.training)
    for name, child in module.named_children():
        setattr(module, name, _convert(child, process_group))
    return module



