"""marionet reconstruct: the papers' reconstruction protocol on a dataset's test split."""
from __future__ import annotations

import argparse

from marionet.cli.common import add_model_arguments, positive_int
from marionet.cli.evaluate import KINDS   # marionet.evaluate.metrics.KINDS, without its imports at start-up

HELP = ("reconstruct each test video from its first frame (or, with --pairs, from another identity's first frame "
        "in the same motion); write the frames and metrics.json (l1, akd, mkr)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--data", required=True, help="dataset folder (its test/ split is used)")
    p.add_argument("--out", required=True, help="output folder: <video>/ PNG frames and metrics.json")
    p.add_argument("--max-videos", type=positive_int, help="only the first N test videos (pairs with --pairs)")
    p.add_argument("--pairs", action="store_true",
                   help="cross-identity: source = A's first frame, driving = B's video, compared with A's own "
                        "frames, for every pair (A, B) of a test group of pairs.csv (marionet synth --pairs K)")
    p.add_argument("--relative", action="store_true",
                   help="relative motion from the first driving frame (default: absolute, the papers' protocol)")
    p.add_argument("--still-background", action="store_true",
                   help="keep the source's background still (no camera motion from the driving video; see animate)")
    p.add_argument("--evaluate", action="store_true",
                   help="also run `marionet evaluate` on the output (OUT/evaluation/: PSNR, SSIM, per-frame curves, "
                        "worst frames; AKD/MKR/AED with --kind)")
    p.add_argument("--kind", choices=KINDS,
                   help="with --evaluate: the keypoint estimator (default: the puppets' own for puppet data)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="frames per forward pass (default: 8)")


def run(args) -> int:
    import json

    from marionet.cli.common import load_model
    from marionet.files import check_writable
    from marionet.evaluate.reconstruction import reconstruct

    check_writable(f"{args.out}/metrics.json")
    model = load_model(args)
    metrics = reconstruct(model, args.data, args.out, max_videos=args.max_videos, batch_size=args.batch_size,
                          pairs=args.pairs, relative=args.relative,
                          still_background=args.still_background)
    print(json.dumps(metrics, indent=2))
    if args.evaluate:
        from pathlib import Path

        from marionet.evaluate.real import evaluate

        regressor = metrics.get("keypoint_regressor")   # puppet data: their own estimator
        kind = args.kind or ({"face": "face-puppet"}.get(regressor, regressor) if regressor else None)
        report = evaluate(args.data, args.out, Path(args.out) / "evaluation", kind=kind)
        print(json.dumps({k: v for k, v in report.items() if k != "per_frame"}, indent=2))
    return 0
