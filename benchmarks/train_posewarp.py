"""Train the built-in 'posewarp-puppets' model (its recipe) and export it.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.train_posewarp [--work runs/posewarp] [--export]

1. renders the training set once: `marionet synth --kind humanoid --size 64 --videos 400 --frames 128
   --seed 0` (the built-in FOMM model's data), into WORK/data;
2. runs the stages of RECIPE in WORK/<run>: stage 1 (configs/posewarp-puppets-64.yaml, the feature
   loss only) and stage 2 (configs/posewarp-puppets-64-gan.yaml: + 0.1 x adversarial, starting from
   stage 1 with `marionet train --init`, the discriminator trained alone for its first 5 steps);
   each stage resumes when the command is rerun (`marionet train ... --resume`);
3. with --export, writes the last stage's generator in float16 to
   marionet/assets/models/posewarp-puppets-64.safetensors (the built-in model `posewarp-puppets`).

`benchmarks/posewarp_table.py` trains the U-Net baseline at the same budget and measures both.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch

RECIPE_DATA = dict(videos=400, frames=128, size=64, kind="humanoid", seed=0)


@dataclass
class Stage:
    run: str            # run directory under WORK
    config: str         # shipped config name
    steps: int
    init: str | None    # the run it starts from


RECIPE = [
    Stage("posewarp-1", "posewarp-puppets-64", 2000, None),
    Stage("posewarp-2", "posewarp-puppets-64-gan", 250, "posewarp-1"),
]
BATCH, CHECKPOINT_EVERY = 8, 250


def render_data(work: Path) -> Path:
    from marionet.data.puppets import synthesize

    data = work / "data"
    if not data.exists():
        synthesize(data, progress=True, **RECIPE_DATA)
    return data


def run_stages(work: Path, data: Path, stages, config_override=None) -> None:
    """Train each stage in WORK/<run> unless it has finished (resuming a stopped one)."""
    from marionet.config import load_config
    from marionet.train import train

    for stage in stages:
        run = work / stage.run
        state = run / "train_state.pt"
        done = torch.load(state, weights_only=True)["step"] if state.exists() else 0
        if done >= stage.steps:
            continue
        config = load_config(stage.config)
        if config_override:
            config_override(config)
        train(config, data, run, steps=stage.steps, batch_size=BATCH, checkpoint_every=CHECKPOINT_EVERY,
              resume=state.exists(), init=None if state.exists() or stage.init is None else work / stage.init)


def export(run: Path) -> Path:
    """The run's generator in float16 as the built-in model (no discriminator)."""
    import marionet
    from marionet.checkpoints import BUILTIN_MODELS, save_checkpoint

    model = marionet.load(run)
    target = BUILTIN_MODELS["posewarp-puppets"]
    save_checkpoint(target, model.model, model.config, networks=("generator",), dtype=torch.float16)
    return target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/posewarp"))
    ap.add_argument("--export", action="store_true", help="write the built-in model from the last stage")
    args = ap.parse_args()
    run_stages(args.work, render_data(args.work), RECIPE)
    if args.export:
        print(f"wrote {export(args.work / RECIPE[-1].run)}")


if __name__ == "__main__":
    main()
