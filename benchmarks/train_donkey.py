"""Train the built-in cross-identity model 'donkey-puppets' (Donkey-Net) and measure it beside 'puppets'.

    .venv/bin/python -m benchmarks.train_donkey [--work runs/donkey] [--eval-only]

1. renders the training pairs, `marionet synth --kind humanoid --size 64 --videos 800 --frames 64
   --pairs 2 --seed 0 --test-fraction 0.05` (400 pairs of identities sharing a motion), and the
   held-out pairs, seed 777 (`--videos 50 --frames 32 --pairs 2 --test-fraction 0.96`: 24 test pairs,
   48 ordered (A, B) evaluations);
2. trains the stages of RECIPE with configs/donkeynet-puppets-64.yaml at batch 4 in WORK/run,
   WORK/run-2, ... (each from the previous stage's weights with a fresh schedule, `marionet train
   --init`; a stage resumes when rerun);
3. exports the final generator and keypoint detector (float16) to
   marionet/assets/models/donkey-puppets-64.safetensors;
4. runs `marionet reconstruct` on the held-out pairs for each stage and for the built-in 'puppets':
   cross-identity (`--pairs`, absolute and `--relative`) and same-identity, and prints L1 / AKD / MKR
   with each L1 as a fraction of copying the source (WORK/report.json).
"""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import torch

import marionet
from benchmarks.train_builtin import Stage
from marionet.checkpoints import BUILTIN_MODELS, save_checkpoint
from marionet.config import load_config
from marionet.data.puppets import synthesize
from marionet.evaluate.reconstruction import reconstruct
from marionet.train import train

CONFIG = "donkeynet-puppets-64"
BUILTIN = "donkey-puppets"
# Batch 4, like the table (benchmarks/donkeynet_table.py): its 'donkeynet-both' row is stage 1's first 1000 steps.
BATCH = 4
RECIPE = [Stage(2000)]
PROTOCOLS = {"cross-identity": dict(pairs=True), "cross-identity, relative": dict(pairs=True, relative=True),
             "cross-identity, relative, still": dict(pairs=True, relative=True, still_background=True),
             "same identity": dict()}


def render_data(work: Path) -> tuple[Path, Path]:
    data, heldout = work / "data", work / "heldout"
    if not data.exists():
        synthesize(data, videos=800, frames=64, size=64, kind="humanoid", seed=0, pairs=2, test_fraction=0.05)
    if not heldout.exists():
        synthesize(heldout, videos=50, frames=32, size=64, kind="humanoid", seed=777, pairs=2, test_fraction=0.96)
    return data, heldout


def stage_config(stage: Stage) -> dict:
    config = load_config(CONFIG)
    for key in ("lr", "lr_generator", "lr_discriminator", "lr_kp_detector"):
        config["train_params"][key] *= stage.lr_scale
    return config


def evaluate(models: dict, heldout: Path, work: Path) -> dict:
    """{model: {protocol: metrics}} on the held-out pairs."""
    report = {}
    for name, source in models.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = marionet.load(source)
        report[name] = {protocol: reconstruct(model, heldout, work / f"rec-{name}-{i}", progress=False, **options)
                        for i, (protocol, options) in enumerate(PROTOCOLS.items())}
    return report


def print_report(report: dict) -> None:
    first = next(iter(report.values()))
    print(f"held-out puppet pairs ({first['cross-identity']['videos']} ordered pairs, "
          f"{first['same identity']['videos']} videos of 32 frames); L1 also as a fraction of copying the source:")
    print(f"  {'':<30}{'protocol':<26}{'L1':>8}{'/copy':>7}{'AKD':>7}{'/copy':>7}{'MKR':>7}")
    for name, protocols in report.items():
        for protocol, m in protocols.items():
            print(f"  {name:<30}{protocol:<26}{m['l1']:>8.4f}{m['l1'] / m['baseline_l1']:>7.2f}{m['akd']:>7.3f}"
                  f"{m['akd'] / m['baseline_akd']:>7.2f}{m['mkr']:>7.3f}")
    for protocol, m in first.items():
        print(f"  {'copy the source':<30}{protocol:<26}{m['baseline_l1']:>8.4f}{1:>7.2f}{m['baseline_akd']:>7.3f}"
              f"{1:>7.2f}{m['baseline_mkr']:>7.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="runs/donkey")
    ap.add_argument("--eval-only", action="store_true", help="evaluate the stages trained so far, train nothing")
    args = ap.parse_args()
    work = Path(args.work)
    data, heldout = render_data(work)
    runs, init = [], None
    for i, stage in enumerate(RECIPE, start=1):
        run = work / ("run" if i == 1 else f"run-{i}")
        state = run / "train_state.pt"
        done = torch.load(state, weights_only=True)["step"] if state.exists() else 0
        if not args.eval_only and done < stage.steps:
            train(stage_config(stage), data, run, steps=stage.steps, resume=state.exists(), checkpoint_every=250,
                  init=init if not state.exists() else None, workers=0, batch_size=BATCH)
        if (run / "model.safetensors").exists():
            runs.append(run)
        init = run
    if not runs:
        raise SystemExit("nothing trained yet")
    if not args.eval_only:
        final = marionet.load(runs[-1])
        save_checkpoint(BUILTIN_MODELS.get(BUILTIN, Path("marionet/assets/models/donkey-puppets-64.safetensors")),
                        final.model, final.config, networks=("generator", "kp_detector"), dtype=torch.float16)
    models = {run.name: run for run in runs}
    if BUILTIN in BUILTIN_MODELS and not args.eval_only:
        models[f"built-in {BUILTIN}"] = BUILTIN
    models["built-in puppets"] = "puppets"
    report = evaluate(models, heldout, work)
    (work / "report.json").write_text(json.dumps(report, indent=2))
    print_report(report)


if __name__ == "__main__":
    main()
