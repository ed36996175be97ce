"""marionet reconstruct: the papers' reconstruction protocol on a dataset's test split."""
from __future__ import annotations

import argparse

from marionet.cli.common import add_model_arguments, positive_int

HELP = "reconstruct each test video from its first frame; write the frames and metrics.json (l1, akd)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--data", required=True, help="dataset folder (its test/ split is used)")
    p.add_argument("--out", required=True, help="output folder: <video>/ PNG frames and metrics.json")
    p.add_argument("--max-videos", type=positive_int, help="only the first N test videos")
    p.add_argument("--batch-size", type=positive_int, default=8, help="frames per forward pass (default: 8)")


def run(args) -> int:
    import json

    from marionet.cli.common import load_model
    from marionet.files import check_writable
    from marionet.evaluate.reconstruction import reconstruct

    check_writable(f"{args.out}/metrics.json")
    model = load_model(args)
    metrics = reconstruct(model, args.data, args.out, max_videos=args.max_videos, batch_size=args.batch_size)
    print(json.dumps(metrics, indent=2))
    return 0
