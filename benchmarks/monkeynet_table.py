"""Monkey-Net beside FOMM on held-out puppets, with the paper's dense-motion ablations.

    .venv/bin/python -m benchmarks.monkeynet_table [--steps 1500] [--work runs/table] [--jobs 2]

Trains, at the same number of steps and batch size, on 400 humanoid puppet videos of 32 frames
(`marionet synth --kind humanoid --size 64 --videos 400 --frames 32 --seed 0`):
  monkeynet             configs/monkeynet-puppets-64.yaml
  monkeynet-no-residual the same with use_correction: False (coarse part-based flow only)
  monkeynet-no-coarse   the same with use_mask: False (residual flow only)
  fomm                  configs/puppets-64.yaml
then runs the reconstruction protocol on held-out puppets (seed 777) and prints L1 / AKD / MKR beside
the copy-the-source baseline (WORK/table.json). Runs resume when the command is repeated; --jobs
trains that many models at once, one thread each.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from marionet.config import load_config

VARIANTS = {
    "monkeynet": ("monkeynet-puppets-64", {}),
    "monkeynet-no-residual": ("monkeynet-puppets-64", {"use_correction": False}),
    "monkeynet-no-coarse": ("monkeynet-puppets-64", {"use_mask": False}),
    "fomm": ("puppets-64", {}),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--work", default="runs/table")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data, heldout = work / "data", work / "heldout"
    from marionet.data.puppets import synthesize

    if not data.exists():
        synthesize(data, videos=400, frames=32, size=64, kind="humanoid", seed=0)
    if not heldout.exists():
        synthesize(heldout, videos=25, frames=32, size=64, kind="humanoid", seed=777, test_fraction=24 / 25)

    commands = []
    for name, (config_name, dense_motion) in VARIANTS.items():
        config = load_config(config_name)
        config["model_params"]["generator_params"]["dense_motion_params"].update(dense_motion)
        path = work / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        run = work / name
        state = run / "train_state.pt"
        cmd = [sys.executable, "-W", "ignore", "-m", "marionet", "train", "--config", str(path), "--data", str(data),
               "--out", str(run), "--steps", str(args.steps), "--checkpoint-every", "250", "--batch-size", "8",
               "--workers", "0"] + (["--resume"] if state.exists() else [])
        if not (run / "model.safetensors").exists() or _step(state) < args.steps:
            commands.append(cmd)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    running = []
    for cmd in commands:
        while len(running) >= args.jobs:
            running.pop(0).wait()
        running.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL))
    for p in running:
        p.wait()

    import marionet
    from marionet.evaluate.reconstruction import reconstruct

    table = {name: reconstruct(marionet.load(work / name), heldout, work / f"rec-{name}", progress=False)
             for name in VARIANTS}
    (work / "table.json").write_text(json.dumps(table, indent=2))
    any_ = next(iter(table.values()))
    print(f"held-out puppets ({any_['videos']} videos, {any_['frames']} frames), {args.steps} steps at batch 8:")
    print(f"  {'':<24}{'L1':>8}{'AKD (px)':>10}{'MKR':>8}")
    print(f"  {'copy the source':<24}{any_['baseline_l1']:>8.4f}{any_['baseline_akd']:>10.3f}{any_['baseline_mkr']:>8.3f}")
    for name, m in table.items():
        print(f"  {name:<24}{m['l1']:>8.4f}{m['akd']:>10.3f}{m['mkr']:>8.3f}")


def _step(state: Path) -> int:
    if not state.exists():
        return 0
    import torch

    return int(torch.load(state, weights_only=True)["step"])


if __name__ == "__main__":
    main()
