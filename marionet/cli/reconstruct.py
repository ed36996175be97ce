"""marionet reconstruct: the papers' reconstruction protocol on a dataset's test split."""
from __future__ import annotations

import argparse

HELP = "reconstruct each test video from its first frame; write the frames and metrics.json (l1, akd)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", help="training run directory, marionet .safetensors, or official *.pth.tar")
    p.add_argument("--model", help="a built-in model by name, instead of --checkpoint (e.g. puppets)")
    p.add_argument("--config", help="config for an official checkpoint")
    p.add_argument("--data", required=True, help="dataset folder (its test/ split is used)")
    p.add_argument("--out", required=True, help="output folder: <video>/ PNG frames and metrics.json")
    p.add_argument("--max-videos", type=int, help="only the first N test videos")
    p.add_argument("--batch-size", type=int, default=8, help="frames per forward pass (default: 8)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")


def run(args) -> int:
    import json

    import marionet
    from marionet.errors import MarionetError
    from marionet.evaluate.reconstruction import reconstruct

    if (args.checkpoint is None) == (args.model is None):
        raise MarionetError("give exactly one of --checkpoint and --model")
    model = marionet.load(checkpoint=args.checkpoint or args.model, config=args.config, device=args.device)
    metrics = reconstruct(model, args.data, args.out, max_videos=args.max_videos, batch_size=args.batch_size)
    print(json.dumps(metrics, indent=2))
    return 0
