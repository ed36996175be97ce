"""Train the built-in 'puppets' model and measure it on held-out puppets.

    .venv/bin/python -m benchmarks.train_builtin [--work runs/builtin] [--adv-steps 0] [--start K --init CKPT]

1. renders the training set: `marionet synth --kind humanoid --size 64 --videos 400 --frames 128 --seed 0`
   (long clips, so that training pairs and the held-out test span the puppets' larger motions);
2. trains the stages of RECIPE in WORK/run, WORK/run-2, ...: each starts from the previous stage's
   weights with a fresh learning-rate schedule (`marionet train --init`); a stage that ran before a
   part of configs/puppets-64.yaml existed says what it ran without. `--start K --init CKPT`
   skips the stages before K, beginning from CKPT, the model they made (a built-in model of an
   earlier commit: `git show COMMIT:marionet/assets/models/puppets-64.safetensors`). With --adv-steps, then fine-tunes
   with configs/puppets-64-adv.yaml (GAN + feature matching, WORK/run-adv). Each stage resumes when rerun;
3. exports the final generator and keypoint detector (float16) to marionet/assets/models/puppets-64.safetensors;
4. renders held-out puppets (seed 777, never used in training: 24 test videos of 128 frames, and their
   first 32 frames as a second, shorter set) and runs the reconstruction protocol for each stage and
   for the untrained model (same config, random weights), printing their L1 / AKD / MKR beside the
   copy-the-source baseline, and writing them to WORK/report.json.
"""
from __future__ import annotations

import argparse
import json
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

import marionet
from marionet.checkpoints import save_checkpoint
from marionet.config import load_config
from marionet.data.puppets import synthesize
from marionet.evaluate.reconstruction import reconstruct
from marionet.checkpoints import BUILTIN_MODELS, resolve_checkpoint
from marionet.train import train


CONFIG = "puppets-64"
HELDOUT_VIDEOS, FRAMES, SHORT_FRAMES = 24, 128, 32


@dataclass
class Stage:
    steps: int                      # length of the stage's learning-rate schedule
    stop_after: int | None = None   # the stage ended early, at this step
    without: tuple[str, ...] = ()   # parts of puppets-64 the stage ran without (added later)
    lr_scale: float = 1.0           # the config's learning rates times this


# How the shipped model was made: the stages ran as the model gained its parts. Stages 3-5 tracked
# the camera with MRAA's learned network ("background_search" absent), stages 6-10 with the search;
# stages 6-9 refined only its best whole-pixel shift, of unblurred frames ("search_candidates" absent;
# their refinement then took 5x5 steps of 1/4 and 1/16 px, where candidates=1 now takes 3x3 steps of 1/2 to 1/16).
RECIPE = [
    Stage(8000, without=("background_motion", "keypoint_separation", "full_resolution_motion")),
    Stage(2500, without=("background_motion", "keypoint_separation", "full_resolution_motion")),
    Stage(10000, stop_after=6250, without=("full_resolution_motion", "background_search")),
    Stage(7000, without=("background_search",)),
    Stage(4500, without=("background_search",)),
    Stage(6000, without=("search_candidates",)),
    Stage(4500, without=("search_candidates",)),
    Stage(1500, lr_scale=0.1, without=("search_candidates",)),
    Stage(3000, lr_scale=0.1, without=("search_candidates",)),
    Stage(4500, lr_scale=0.1),
]
LEARNED_BACKGROUND = {"block_expansion": 16, "max_features": 128, "num_blocks": 4}


def stage_config(stage: Stage) -> dict:
    config = load_config(CONFIG)
    generator = config["model_params"]["generator_params"]
    if "background_motion" in stage.without:
        del generator["background_motion"]
    elif "background_search" in stage.without:
        generator["background_motion"] = dict(LEARNED_BACKGROUND)
    elif "search_candidates" in stage.without:
        generator["background_motion"].update(candidates=1, sigma=0)
    for key in ("lr_generator", "lr_discriminator", "lr_kp_detector"):
        config["train_params"][key] *= stage.lr_scale
    if "keypoint_separation" in stage.without:
        del config["train_params"]["loss_weights"]["keypoint_separation"]
    if "full_resolution_motion" in stage.without:
        generator["dense_motion_params"]["scale_factor"] = 0.5
    return config


def render_data(work: Path) -> tuple[Path, Path]:
    """The training puppets and the held-out ones (seed 777) under WORK, rendered once."""
    data, heldout = work / "data", work / "heldout"
    if not data.exists():
        synthesize(data, videos=400, frames=FRAMES, size=64, kind="humanoid", seed=0, progress=True)
    if not heldout.exists():
        synthesize(heldout, videos=HELDOUT_VIDEOS + 1, frames=FRAMES, size=64, kind="humanoid", seed=777,
                   test_fraction=HELDOUT_VIDEOS / (HELDOUT_VIDEOS + 1))
    return data, heldout


def short_clips(heldout: Path, out: Path, frames: int = SHORT_FRAMES) -> Path:
    """The first ``frames`` frames of each held-out test video (the clip length of earlier reports)."""
    if not out.exists():
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        for video in sorted((heldout / "test").iterdir()):
            (tmp / "test" / video.name).mkdir(parents=True)
            for png in sorted(video.glob("*.png"))[:frames]:
                shutil.copyfile(png, tmp / "test" / video.name / png.name)
        shutil.copytree(heldout / "groundtruth", tmp / "groundtruth")
        tmp.rename(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adv-steps", type=int, default=0)
    ap.add_argument("--work", default="runs/builtin")
    ap.add_argument("--start", type=int, default=1, help="first stage to run (needs --init when > 1)")
    ap.add_argument("--init", help="weights the --start stage begins from: the model the stages before it "
                                   "made, e.g. an earlier commit's built-in model; copied to WORK/init.safetensors")
    args = ap.parse_args()
    work = Path(args.work)
    if (args.start > 1) != bool(args.init):
        ap.error("--start > 1 and --init go together")
    data, heldout = render_data(work)
    init = None
    if args.init:  # kept under WORK: the export below replaces the shipped model
        init = work / "init.safetensors"
        if not init.exists():
            shutil.copyfile(resolve_checkpoint(args.init), init)
    stages = []  # (run directory, its last step, config, stage, init)
    for i, stage in enumerate(RECIPE, start=1):
        run = work / ("run" if i == 1 else f"run-{i}")
        if i >= args.start:
            stages.append((run, stage.stop_after or stage.steps, stage_config(stage), stage, init))
        init = run if i >= args.start else init
    if args.adv_steps:
        stages.append((work / "run-adv", args.adv_steps, load_config("puppets-64-adv"), Stage(args.adv_steps), init))
    for run, target, config, stage, init in stages:
        state = run / "train_state.pt"
        done = torch.load(state, weights_only=True)["step"] if state.exists() else 0
        if done < target:
            train(config, data, run, steps=stage.steps, resume=state.exists(), checkpoint_every=250, init=init,
                  stop_after=stage.stop_after)
    # Ship the inference networks only, in float16 (loaded back into float32 parameters).
    final = marionet.load(stages[-1][0])
    save_checkpoint(BUILTIN_MODELS["puppets"], final.model, final.config, networks=("generator", "kp_detector"),
                    dtype=torch.float16)

    models = {"untrained": None}
    if args.init:
        models[f"init ({args.init})"] = work / "init.safetensors"
    models.update({run.name: run for run, *_ in stages})
    models["built-in"] = "puppets"
    report = {"steps": {run.name: target for run, target, *_ in stages}}
    for label, frames, videos in (("long", FRAMES, heldout), ("short", SHORT_FRAMES, short_clips(heldout, work / "heldout-short"))):
        report[label] = {}
        for name, source in models.items():
            torch.manual_seed(0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = marionet.load(config=CONFIG) if source is None else marionet.load(source)
            report[label][name] = reconstruct(model, videos, work / f"rec-{label}-{name}", progress=False)
        first = report[label]["built-in"]
        print(f"held-out puppets, {first['videos']} videos of {frames} frames ({first['frames']} frames):")
        print(f"  {'':<36}{'L1':>8}{'AKD (px)':>10}{'MKR':>8}")
        rows = [("copy the source", first, "baseline_"), ("untrained model", report[label]["untrained"], "")]
        rows += [(name, report[label][name], "") for name in models if name.startswith("init")]
        rows += [(f"{run.name}: {target} steps", report[label][run.name], "") for run, target, *_ in stages]
        rows.append(("built-in (float16 export)", first, ""))
        for row, m, p in rows:
            print(f"  {row:<36}{m[p + 'l1']:>8.4f}{m[p + 'akd']:>10.3f}{m[p + 'mkr']:>8.3f}")
    (work / "report.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
