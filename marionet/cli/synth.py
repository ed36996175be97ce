"""``marionet synth``: render a synthetic puppet dataset with ground truth (docs/puppets.md)."""
from __future__ import annotations

import argparse

HELP = "render a synthetic dataset of articulated puppets with exact ground truth"

KIND_CHOICES = ("humanoid", "quadruped", "face")
FORMAT_CHOICES = ("frames", "mp4", "gif")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder (DIR/train/<video>, DIR/test/<video>, DIR/groundtruth/...)")
    parser.add_argument("--videos", type=int, default=20, metavar="N", help="number of videos (default 20)")
    parser.add_argument("--frames", type=int, default=32, metavar="T", help="frames per video (default 32)")
    parser.add_argument("--size", type=int, default=64, metavar="S", help="frame side in pixels (default 64)")
    parser.add_argument("--kind", default="humanoid", metavar="KIND",
                        help=f"puppet kind: {', '.join(KIND_CHOICES)} (default humanoid)")
    parser.add_argument("--seed", type=int, default=0, metavar="X", help="dataset seed (default 0)")
    parser.add_argument("--format", dest="fmt", default="frames", metavar="FMT",
                        help="frames (folder of PNGs, default), mp4 or gif")
    parser.add_argument("--test-fraction", type=float, default=0.2, metavar="F",
                        help="fraction of videos in test/ (default 0.2; at least one video per split)")
    parser.add_argument("--pairs", type=int, default=0, metavar="K",
                        help="render groups of K identities sharing one motion, listed in pairs.csv")
    parser.add_argument("--fps", type=float, default=25.0, help="frame rate of motion and mp4/gif (default 25)")
    parser.add_argument("--preview", metavar="PNG", default=None,
                        help="also write a contact sheet of the first videos with their joints")
    parser.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from marionet.files import check_writable
    from marionet.data.puppets import synthesize
    from marionet.errors import MarionetError

    if args.kind not in KIND_CHOICES:
        raise MarionetError(f"--kind: unknown kind {args.kind!r} (choose from {', '.join(KIND_CHOICES)})")
    if args.fmt not in FORMAT_CHOICES:
        raise MarionetError(f"--format: unknown format {args.fmt!r} (choose from {', '.join(FORMAT_CHOICES)})")
    if args.videos < 2:
        raise MarionetError(f"--videos: need at least 2 (one for train, one for test), got {args.videos}")
    if args.preview is not None and not str(args.preview).lower().endswith(".png"):
        raise MarionetError(f"--preview: {args.preview}: must be a .png file")
    check_writable(args.out)
    if args.preview is not None:
        check_writable(args.preview)
    meta = synthesize(args.out, videos=args.videos, frames=args.frames, size=args.size, kind=args.kind,
                      seed=args.seed, fmt=args.fmt, test_fraction=args.test_fraction, pairs=args.pairs,
                      preview=args.preview, fps=args.fps, overwrite=args.overwrite,
                      progress=not args.quiet)
    n_train = sum(e["split"] == "train" for e in meta["entries"])
    n_test = len(meta["entries"]) - n_train
    print(f"wrote {args.out}: {n_train} train + {n_test} test {args.kind} videos, "
          f"{args.frames} frames of {args.size}x{args.size}"
          + (f", preview {args.preview}" if args.preview else ""))
    return 0
