"""Which perceptual loss to fall back on without VGG19 weights: pixel pyramid or random VGG19.

    .venv/bin/python -m benchmarks.perceptual_fallback [--minutes 6 | --steps N] [--work runs/fallback]

Trains the built-in model's config once per backbone for the same wall-clock budget (a CPU user's
constraint: the random VGG19 costs a few times the step time of the pixel pyramid), or for the same
number of steps with --steps, then runs the reconstruction protocol on held-out puppets (seed 777)
and prints L1 / AKD / MKR for each. The data are the built-in model's (benchmarks/train_builtin.py).
For --minutes, the step rate of each backbone is measured first and sets its number of steps, so
run it on a machine whose load does not change. Finished runs (WORK/<backbone>-<N>steps) are reused.
"""
from __future__ import annotations

import argparse
import copy
import json
import tempfile
import warnings
from pathlib import Path

import torch

from benchmarks.bench_train import steps_per_second
from benchmarks.train_builtin import CONFIG, render_data
from marionet.config import load_config
from marionet.evaluate.reconstruction import reconstruct
from marionet.train import train

import marionet

BACKBONES = ("pixels", "random-vgg19")


def measured_rate(config: dict, data: Path, steps: int = 8) -> float:
    """Steps per second of a short throw-away run."""
    with tempfile.TemporaryDirectory() as tmp:
        train(copy.deepcopy(config), data, Path(tmp), steps=steps, checkpoint_every=10 ** 9, progress=False)
        return steps_per_second(Path(tmp) / "log.csv", warm=2)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=6.0)
    ap.add_argument("--steps", type=int, default=None, help="the same number of steps for each backbone instead")
    ap.add_argument("--work", default="runs/fallback")
    args = ap.parse_args()
    work = Path(args.work)
    data, heldout = render_data(work)
    report = {}
    for backbone in BACKBONES:
        config = load_config(CONFIG)
        config["train_params"]["perceptual_backbone"] = backbone
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            steps = args.steps or max(10, int(measured_rate(config, data) * args.minutes * 60))
            run = work / f"{backbone}-{steps}steps"
            state = run / "train_state.pt"
            if not (state.exists() and torch.load(state, weights_only=True)["step"] >= steps):
                train(config, data, run, steps=steps, checkpoint_every=10 ** 9, progress=False)
        rate = steps_per_second(run / "log.csv", warm=2)[0]
        metrics = reconstruct(marionet.load(run), heldout, work / f"rec-{run.name}", progress=False)
        report[backbone] = dict(metrics, steps=steps, steps_per_second=rate)
        print(f"{backbone:>13}: {steps:6d} steps ({rate:.2f}/s)  L1 {metrics['l1']:.4f}  "
              f"AKD {metrics['akd']:.2f}  MKR {metrics['mkr']:.3f}", flush=True)
    first = report[BACKBONES[0]]
    print(f"{'copy source':>13}:                       L1 {first['baseline_l1']:.4f}  AKD {first['baseline_akd']:.2f}")
    (work / f"report-{'%dsteps' % args.steps if args.steps else '%gmin' % args.minutes}.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
