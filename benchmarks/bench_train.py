"""Training speed: iterations/s of `marionet train` for a config on generated puppets.

    .venv/bin/python -m benchmarks.bench_train [--config puppets-64] [--steps 30] [--batch-size 8]
"""
from __future__ import annotations

import argparse
import csv
import tempfile
import warnings
from pathlib import Path

from marionet.config import load_config
from marionet.data.puppets import synthesize
from marionet.train import train


def steps_per_second(log_csv: Path, warm: int) -> tuple[float, int]:
    """Steps per second in a run's log.csv after its first ``warm`` steps (one-time start-up costs),
    and the number of steps timed."""
    with open(log_csv, newline="") as f:
        seconds = [float(r["seconds"]) for r in csv.DictReader(f)]
    return (len(seconds) - warm) / (seconds[-1] - seconds[warm - 1]), len(seconds) - warm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="puppets-64")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    config = load_config(args.config)
    size = config["dataset_params"]["frame_shape"][0]
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        synthesize(Path(tmp) / "data", videos=20, frames=16, size=size, kind="humanoid", seed=5)
        train(config, Path(tmp) / "data", Path(tmp) / "run", steps=args.steps, batch_size=args.batch_size,
              checkpoint_every=10 ** 9, progress=False)
        rate, timed = steps_per_second(Path(tmp) / "run" / "log.csv", warm=5)
    print(f"{args.config}: {rate:.2f} iterations/s at batch {args.batch_size} "
          f"({rate * args.batch_size:.1f} samples/s), {timed} timed steps")


if __name__ == "__main__":
    main()
