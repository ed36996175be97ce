"""Train the built-in 'puppets' model and measure it on held-out puppets.

    .venv/bin/python -m benchmarks.train_builtin [--steps 4000] [--work runs/builtin]

1. renders the training set: `marionet synth --kind humanoid --size 64 --videos 400 --frames 32 --seed 0`;
2. trains configs/puppets-64.yaml for --steps (resumable: rerun the same command to continue);
3. exports the run's generator and keypoint detector (float16) to marionet/assets/models/puppets-64.safetensors;
4. renders held-out puppets (seed 777, never used in training) and runs the reconstruction protocol for
   the trained model and for the untrained model (same config, random weights), printing their
   L1 / AKD beside the copy-the-source baseline, and writing them to WORK/report.json.
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
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--work", default="runs/builtin")
    ap.add_argument("--heldout-videos", type=int, default=24)
    args = ap.parse_args()
    work = Path(args.work)
    data, heldout, run = work / "data", work / "heldout", work / "run"
    if not data.exists():
        synthesize(data, videos=400, frames=32, size=64, kind="humanoid", seed=0, progress=True)
    if not heldout.exists():
        synthesize(heldout, videos=args.heldout_videos + 1, frames=32, size=64, kind="humanoid", seed=777,
                   test_fraction=args.heldout_videos / (args.heldout_videos + 1))
    config = load_config("puppets-64")
    state = run / "train_state.pt"
    done = torch.load(state, weights_only=True)["step"] if state.exists() else 0
    if done < args.steps:
        train(config, data, run, steps=args.steps, resume=state.exists(), checkpoint_every=250)
    # Ship the inference networks only, in float16 (loaded back into float32 parameters).
    trained = marionet.load(run)
    save_checkpoint(BUILTIN_MODELS["puppets"], trained.model, trained.config, networks=("generator", "kp_detector"),
                    dtype=torch.float16)

    report = {"steps": args.steps}
    report["trained"] = reconstruct(marionet.load("puppets"), heldout, work / "rec-trained")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        untrained = marionet.load(config="puppets-64")
    report["untrained"] = reconstruct(untrained, heldout, work / "rec-untrained")
    (work / "report.json").write_text(json.dumps(report, indent=2))
    t, u = report["trained"], report["untrained"]
    print(f"held-out puppets ({t['videos']} videos, {t['frames']} frames):")
    print(f"  {'':<22}{'L1':>8}{'AKD (px)':>10}{'MKR':>8}")
    for name, m, p in (("copy the source", t, "baseline_"), ("untrained model", u, ""), ("built-in model", t, "")):
        print(f"  {name:<22}{m[p + 'l1']:>8.4f}{m[p + 'akd']:>10.3f}{m[p + 'mkr']:>8.3f}")


if __name__ == "__main__":
    main()
