"""marionet vgg-stats: the activation statistics posewarp's feature loss normalises by, from your VGG19
weights over your training pairs, stored beside the weights."""
from __future__ import annotations

import argparse

from marionet.cli.common import positive_int

HELP = "compute posewarp's VGG19 activation statistics over a dataset (stored beside the VGG19 weights)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="a posewarp config (its pose_params and frame size make the pairs)")
    p.add_argument("--data", required=True, help="the training dataset folder")
    p.add_argument("--vgg19-weights", help="torchvision's vgg19 state dict (default: the config's "
                                           "train_params.vgg19_weights, $MARIONET_VGG19_WEIGHTS, torch.hub's cache)")
    p.add_argument("--out", help="statistics file (default: beside the weights, <weights>.posewarp-stats.safetensors; "
                                 "give it to training as train_params.vgg_statistics when elsewhere)")
    p.add_argument("--batches", type=positive_int, default=500, help="batches of training pairs (default: 500)")
    p.add_argument("--batch-size", type=positive_int, default=4, help="pairs per batch (default: 4)")


def run(args) -> int:
    import json

    import torch
    from safetensors.torch import save_file

    from marionet.config import frame_shape, load_config
    from marionet.data.pose_videos import PosePairs
    from marionet.errors import MarionetError
    from marionet.files import atomic_write, check_writable
    from marionet.losses import find_vgg19_weights
    from marionet.models import family_class
    from marionet.models.posewarp import activation_statistics, pose_params, statistics_path

    config = load_config(args.config)
    if family_class(config, args.config).family != "posewarp":
        raise MarionetError(f"{args.config}: not a posewarp config (family: posewarp)")
    configured = args.vgg19_weights or (config.get("train_params") or {}).get("vgg19_weights")
    weights = find_vgg19_weights(configured)
    if weights is None:
        raise MarionetError("no VGG19 weights found: give --vgg19-weights, set MARIONET_VGG19_WEIGHTS, or use "
                            "marionet train --download-vgg19 once")
    out = statistics_path(weights, args.out)
    check_writable(out)
    pairs = PosePairs(args.data, pose_params(config, args.config), frame_shape(config), is_train=True,
                      seed=(config.get("dataset_params") or {}).get("random_seed", 0))
    loader = torch.utils.data.DataLoader(pairs, batch_size=args.batch_size, sampler=range(args.batches * args.batch_size))
    stats = activation_statistics(weights, (torch.cat([b["source"], b["target"]]).clamp(0, 1) for b in loader))
    meta = {"format": "marionet-posewarp-vgg-stats/1", "vgg19_weights": str(weights), "data": str(args.data),
            "pairs": json.dumps(args.batches * args.batch_size)}
    atomic_write(out, lambda tmp: save_file(stats, str(tmp), metadata=meta))
    print(f"wrote {out} ({len(stats) // 2} layers, {args.batches * args.batch_size} pairs)")
    return 0
