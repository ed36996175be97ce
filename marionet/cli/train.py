"""marionet train: self-supervised training on a folder of videos (torchrun for several processes)."""
from __future__ import annotations

import argparse

from marionet.cli.common import non_negative_int, positive_int

HELP = "train a model on your videos (one CPU, one GPU, or many with torchrun)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="training config (the official layout) or a shipped name")
    p.add_argument("--data", required=True, help="dataset folder: train/ and test/ of videos, or videos to split")
    p.add_argument("--out", required=True, help="run directory: checkpoints, log.csv, tensorboard/, visuals/")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--init", help="start from the weights of a checkpoint (official *.pth.tar, marionet .safetensors, "
                                  "a run directory or a built-in model name) instead of random weights: fine-tuning")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu); under torchrun, one GPU per process")
    p.add_argument("--steps", type=positive_int, help="total optimisation steps (overrides the config's num_epochs; "
                                                      "the learning-rate milestones keep their fraction of the run)")
    p.add_argument("--checkpoint-every", type=positive_int,
                   help="steps between checkpoints (default: the config's checkpoint_freq epochs, at most a "
                        "twentieth of the run); Ctrl-C or SIGTERM also saves one before stopping")
    p.add_argument("--batch-size", type=positive_int,
                   help="global batch size, split across processes (default: the config's)")
    p.add_argument("--workers", type=non_negative_int,
                   help="data-loading worker processes (default: half the CPU cores, at most 4)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="bf16: bfloat16 autocast around the forward passes, weights and optimiser in float32, where "
                        "the device has it (CPUs with AVX512-BF16 or AMX; otherwise fp32, with a note); auto (default): "
                        "bf16 on CUDA, fp32 on CPU")
    p.add_argument("--download-vgg19", action="store_true",
                   help="allow downloading torchvision's ImageNet VGG19 weights for the perceptual loss when no "
                        "local file is found (default: never use the network; see the README)")


def run(args) -> int:
    from marionet.train import train

    last = train(args.config, args.data, args.out, steps=args.steps, resume=args.resume, device=args.device,
                 checkpoint_every=args.checkpoint_every, batch_size=args.batch_size, workers=args.workers,
                 init=args.init, download_vgg19=args.download_vgg19, precision=args.precision)
    print(f"finished: {args.out} ({', '.join(f'{k} {v:.4g}' for k, v in last.items())})")
    return 0
