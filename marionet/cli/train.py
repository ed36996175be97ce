"""marionet train: self-supervised training on a folder of videos (torchrun for several processes)."""
from __future__ import annotations

import argparse

HELP = "train a model on your videos (one CPU, one GPU, or many with torchrun)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="training config (the official layout) or a shipped name")
    p.add_argument("--data", required=True, help="dataset folder: train/ and test/ of videos, or videos to split")
    p.add_argument("--out", required=True, help="run directory: checkpoints, log.csv, tensorboard/, visuals/")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--init", help="start from the weights of a checkpoint (official *.pth.tar, marionet .safetensors, "
                                  "a run directory or a built-in model name) instead of random weights: fine-tuning")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu); under torchrun, one GPU per process")
    p.add_argument("--steps", type=int, help="total optimisation steps (overrides the config's num_epochs; "
                                             "the learning-rate milestones keep their fraction of the run)")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default: the config's "
                                                        "checkpoint_freq epochs)")
    p.add_argument("--batch-size", type=int, help="global batch size, split across processes (default: the config's)")
    p.add_argument("--workers", type=int, help="data-loading worker processes (default: half the CPU cores, at most 4)")


def run(args) -> int:
    from marionet.errors import MarionetError
    from marionet.train import train

    for name in ("steps", "checkpoint_every", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise MarionetError(f"--{name.replace('_', '-')} {value}: must be at least 1")
    last = train(args.config, args.data, args.out, steps=args.steps, resume=args.resume, device=args.device,
                 checkpoint_every=args.checkpoint_every, batch_size=args.batch_size, workers=args.workers,
                 init=args.init)
    print(f"finished: {args.out} ({', '.join(f'{k} {v:.4g}' for k, v in last.items())})")
    return 0
