"""Train the built-in 'puppets' model and measure it on held-out puppets.

    .venv/bin/python -m benchmarks.train_builtin [--steps 5000] [--adv-steps 2000] [--work runs/builtin]

1. renders the training set: `marionet synth --kind humanoid --size 64 --videos 400 --frames 32 --seed 0`;
2. trains configs/puppets-64.yaml for --steps (WORK/run), then fine-tunes it with
   configs/puppets-64-adv.yaml (GAN + feature matching) for --adv-steps (WORK/run-adv); both stages
   resume when rerun;
3. exports the final generator and keypoint detector (float16) to marionet/assets/models/puppets-64.safetensors;
4. renders held-out puppets (seed 777, never used in training) and runs the reconstruction protocol for
   each stage and for the untrained model (same config, random weights), printing their
   L1 / AKD / MKR beside the copy-the-source baseline, and writing them to WORK/report.json.
"""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import torch

import marionet
from marionet.checkpoints import save_checkpoint
from marionet.config import load_config
from marionet.data.puppets import synthesize
from marionet.evaluate.reconstruction import reconstruct
from marionet.loading import BUILTIN_MODELS
from marionet.train import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--adv-steps", type=int, default=2000)
    ap.add_argument("--work", default="runs/builtin")
    ap.add_argument("--heldout-videos", type=int, default=24)
    args = ap.parse_args()
    work = Path(args.work)
    data, heldout = work / "data", work / "heldout"
    if not data.exists():
        synthesize(data, videos=400, frames=32, size=64, kind="humanoid", seed=0, progress=True)
    if not heldout.exists():
        synthesize(heldout, videos=args.heldout_videos + 1, frames=32, size=64, kind="humanoid", seed=777,
                   test_fraction=args.heldout_videos / (args.heldout_videos + 1))
    stages = [("puppets-64", work / "run", args.steps, None)]
    if args.adv_steps:
        stages.append(("puppets-64-adv", work / "run-adv", args.adv_steps, work / "run"))
    for config_name, run, steps, init in stages:
        state = run / "train_state.pt"
        done = torch.load(state, weights_only=True)["step"] if state.exists() else 0
        if done < steps:
            train(load_config(config_name), data, run, steps=steps, resume=state.exists(), checkpoint_every=250,
                  init=init)
    # Ship the inference networks only, in float16 (loaded back into float32 parameters).
    final = marionet.load(stages[-1][1])
    save_checkpoint(BUILTIN_MODELS["puppets"], final.model, final.config, networks=("generator", "kp_detector"),
                    dtype=torch.float16)

    report = {"steps": {name: steps for name, _, steps, _ in stages}}
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        untrained = marionet.load(config="puppets-64")
    report["untrained"] = reconstruct(untrained, heldout, work / "rec-untrained")
    for name, run, _, _ in stages:
        report[name] = reconstruct(marionet.load(run), heldout, work / f"rec-{name}")
    report["built-in"] = reconstruct(marionet.load("puppets"), heldout, work / "rec-builtin")
    (work / "report.json").write_text(json.dumps(report, indent=2))
    first = report["built-in"]
    print(f"held-out puppets ({first['videos']} videos, {first['frames']} frames):")
    print(f"  {'':<26}{'L1':>8}{'AKD (px)':>10}{'MKR':>8}")
    rows = [("copy the source", first, "baseline_"), ("untrained model", report["untrained"], "")]
    rows += [(f"{name} ({steps} steps)", report[name], "") for name, _, steps, _ in stages]
    rows.append(("built-in (float16 export)", first, ""))
    for label, m, p in rows:
        print(f"  {label:<26}{m[p + 'l1']:>8.4f}{m[p + 'akd']:>10.3f}{m[p + 'mkr']:>8.3f}")


if __name__ == "__main__":
    main()
