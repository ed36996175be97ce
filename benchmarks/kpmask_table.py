"""KP-mask (heatmap and circles masks) beside FOMM at an equal training budget, on held-out puppets.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.kpmask_table [--steps 1500] [--work runs/kpmask] [--export]

1. renders the built-in model's training set (`marionet synth --kind humanoid --size 64 --videos 400
   --frames 128 --seed 0`), its held-out set (seed 777, never used in training: 24 test videos of
   128 frames) and held-out pairs (seed 777, `--pairs 2`: 12 groups of two identities sharing one
   motion, 24 test videos, 24 ordered pairs);
2. trains, for the same number of steps at batch 8, at the same time (one thread each, resuming when
   rerun):
     kpmask-heatmap   configs/kpmask-puppets-64.yaml, detector from the built-in `puppets` (--init puppets)
     kpmask-circles   the same with kp_detector_params.kp_after_softmax: True
     fomm             configs/puppets-64.yaml (the built-in model's config) from random weights
3. runs the reconstruction protocol with absolute motion (the papers' protocol, and the only one the
   heatmap mask supports): same identity (each held-out video from its first frame) and cross
   identity (`reconstruct --pairs`: A's first frame driven by B's video, compared with A's own
   frames), for the three and, for reference, the built-in `puppets` FOMM (about 57,000 steps; its
   detector is the KP-mask models'); prints L1 / AKD / MKR beside copying the source and writes
   WORK/table.json (a result newer than its model is read back when the command is repeated, so an
   interrupted evaluation continues where it stopped);
4. with --export, writes the heatmap model (float16) as the built-in `kpmask-puppets`.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from benchmarks.train_builtin import render_data
from marionet.config import load_config

MODELS = {  # name -> (config, kp_detector_params changes, --init)
    "kpmask-heatmap": ("kpmask-puppets-64", {}, "puppets"),
    "kpmask-circles": ("kpmask-puppets-64", {"kp_after_softmax": True}, "puppets"),
    "fomm": ("puppets-64", {}, None),
}
REFERENCE = "built-in puppets"   # the FOMM of the built-in model (about 57,000 steps), not trained here
PROTOCOLS = {  # label -> (held-out set, reconstruct's pairs); absolute motion
    "same identity, absolute": ("heldout", False),
    "cross identity, absolute": ("heldout-pairs", True),
}


def trained_steps(run: Path) -> int:
    state = run / "train_state.pt"
    return int(torch.load(state, weights_only=True)["step"]) if state.exists() else 0


def train_all(work: Path, data: Path, steps: int) -> None:
    """The models still short of ``steps``, in parallel, one thread each (logs: WORK/<name>.log)."""
    running = []
    for name, (config_name, switches, init) in MODELS.items():
        run = work / name
        if trained_steps(run) >= steps:
            continue
        config = load_config(config_name)
        config["model_params"]["kp_detector_params"].update(switches)
        (work / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        cmd = [sys.executable, "-W", "ignore", "-m", "marionet", "train", "--config", str(work / f"{name}.yaml"),
               "--data", str(data), "--out", str(run), "--steps", str(steps), "--checkpoint-every", "250",
               "--batch-size", "8", "--workers", "0"]
        cmd += ["--resume"] if (run / "train_state.pt").exists() else (["--init", init] if init else [])
        log = open(work / f"{name}.log", "a")
        running.append((name, subprocess.Popen(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=log,
                                               stderr=subprocess.STDOUT)))
    for name, process in running:
        if process.wait():
            raise SystemExit(f"training {name} failed: see {work / name}.log")


def evaluate(work: Path) -> dict:
    """Every protocol for the trained models and, for reference, the built-in FOMM (whose detector the
    KP-mask models use). A result newer than its model is read back instead of recomputed."""
    import marionet
    from marionet.checkpoints import resolve_checkpoint
    from marionet.evaluate.reconstruction import reconstruct

    sources = {**{name: work / name for name in MODELS}, REFERENCE: "puppets"}
    table = {label: {} for label in PROTOCOLS}
    for name, source in sources.items():   # model by model: the reference, not trained here, comes last
        for label, (videos, pairs) in PROTOCOLS.items():
            out = work / "rec" / label.replace(", ", "-").replace(" ", "-") / name
            metrics = out / "metrics.json"
            if metrics.exists() and metrics.stat().st_mtime > resolve_checkpoint(source).stat().st_mtime:
                table[label][name] = json.loads(metrics.read_text())
                continue
            table[label][name] = reconstruct(marionet.load(source), work / videos, out, pairs=pairs, progress=False)
    return table


def print_table(table: dict, steps: int) -> None:
    print(f"held-out humanoid puppets (seed 777), {steps} training steps at batch 8 each; AKD in px at 64x64")
    for label, rows in table.items():
        first = next(iter(rows.values()))
        print(f"\n{label} ({first['videos']} videos, {first['frames']} frames)")
        print(f"  {'':<24}{'L1':>8}{'AKD':>8}{'MKR':>8}")
        print(f"  {'copy the source':<24}{first['baseline_l1']:>8.4f}{first['baseline_akd']:>8.3f}"
              f"{first['baseline_mkr']:>8.3f}")
        for name, m in rows.items():
            print(f"  {name:<24}{m['l1']:>8.4f}{m['akd']:>8.3f}{m['mkr']:>8.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--work", default="runs/kpmask")
    ap.add_argument("--export", action="store_true", help="write the heatmap model as the built-in kpmask-puppets")
    args = ap.parse_args()
    work = Path(args.work)
    data, _ = render_data(work)
    if not (work / "heldout-pairs").exists():
        from marionet.data.puppets import synthesize

        synthesize(work / "heldout-pairs", videos=26, frames=128, size=64, kind="humanoid", seed=777, pairs=2,
                   test_fraction=0.96)
    train_all(work, data, args.steps)
    table = evaluate(work)
    (work / "table.json").write_text(json.dumps({"steps": args.steps, **table}, indent=2))
    print_table(table, args.steps)
    if args.export:
        import marionet
        from marionet.checkpoints import BUILTIN_MODELS, save_checkpoint

        model = marionet.load(work / "kpmask-heatmap")
        save_checkpoint(BUILTIN_MODELS["kpmask-puppets"], model.model, model.config,
                        networks=("generator", "kp_detector"), dtype=torch.float16)


if __name__ == "__main__":
    main()
