"""posewarp against its plain U-Net baseline at the same budget, on held-out humanoid puppets.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.posewarp_table [--work runs/posewarp] [--jobs 2] [--long]

1. trains what is missing, at the same budget (benchmarks/train_posewarp.py's RECIPE: 2,000 steps of
   the feature loss, then 250 with + 0.1 x adversarial, batch 8, on WORK/data): posewarp (WORK/posewarp-1,
   -2) and the U-Net baseline (configs/posewarp-unet-puppets-64.yaml, WORK/unet-1, -2); --jobs 2 trains
   the two at once (a process each, one thread);
2. renders the held-out puppets, seeds never used in training: 24 test videos of 128 frames (seed 777,
   as the built-in FOMM model's table), measured on their first 32 frames (all 128 with --long), and
   12 pair groups of 2 identities sharing a motion, 32 frames (`--pairs 2`, seed 778: 24 ordered pairs);
3. same identity: source = frame 0, target joints = the ground truth of frame t, compared with frame t;
   cross identity: A's frame 0 posed with B's joints of frame t (scaled by the ratio of A's and B's
   person scales on their first frames, about B's first bbox centre moved onto A's), compared with A's
   frame t. Prints L1, AKD and MKR (the shipped humanoid regressor as the pose estimator) beside copying
   the source, and a bound: the real frame's puppet pasted over the source frame with the hole it left
   filled perfectly (what a model that keeps the background still could reach at best); WORK/table.json.
   Each posewarp model is measured twice: as it runs (the source's own background pixels where its
   segmentation says background, `composite_on_source`) and with the composite it trained with (the
   filled background everywhere: "filled background").
   A model's measurement is kept in WORK/rec/<set>-<model>/metrics.json and reused while it is newer
   than the model's weights.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np

from benchmarks.train_builtin import short_clips
from benchmarks.train_posewarp import RECIPE, Stage, render_data, run_stages

BASELINE = [Stage("unet-1", "posewarp-unet-puppets-64", RECIPE[0].steps, None),
            Stage("unet-2", "posewarp-unet-puppets-64", RECIPE[1].steps, "unet-1")]
PLANS = ("posewarp", "unet")


def baseline_stage2(config: dict) -> None:
    """The U-Net's stage 2: the GAN stage's training keys on the baseline's networks."""
    from marionet.config import load_config

    config["train_params"] = load_config(RECIPE[1].config)["train_params"]


def train_all(work: Path, data: Path, jobs: int) -> None:
    """Both plans; with jobs > 1 that many at once, each in its own process (one thread each)."""
    if jobs == 1:
        for name in PLANS:
            train_plan(work, data, name)
        return
    env = dict(os.environ, OMP_NUM_THREADS="1")
    running, failed = [], False
    for name in PLANS:
        while len(running) >= jobs:
            failed |= bool(running.pop(0).wait())
        running.append(subprocess.Popen([sys.executable, "-W", "ignore", "-m", "benchmarks.posewarp_table", "--work",
                                         str(work), "--only-train", name], env=env))
    if failed or any(p.wait() for p in running):
        raise SystemExit("a training run failed")


def train_plan(work: Path, data: Path, name: str) -> None:
    if name == "posewarp":
        run_stages(work, data, RECIPE)
    else:
        run_stages(work, data, BASELINE[:1])
        run_stages(work, data, BASELINE[1:], config_override=baseline_stage2)


def heldout_sets(work: Path, long_clips: bool) -> dict[str, tuple[Path, bool]]:
    from marionet.data.puppets import synthesize

    long, pairs = work / "heldout", work / "heldout-pairs"
    if not long.exists():
        synthesize(long, videos=25, frames=128, size=64, kind="humanoid", seed=777, test_fraction=24 / 25)
    if not pairs.exists():
        synthesize(pairs, videos=26, frames=32, size=64, kind="humanoid", seed=778, pairs=2, test_fraction=12 / 13)
    sets = {"same identity, first 32 frames": (short_clips(long, work / "heldout-short"), False),
            "cross identity, 32 frames": (pairs, True)}
    return {"same identity, 128 frames": (long, False), **sets} if long_clips else sets


def still_background_bound(data: Path, pairs: bool) -> float:
    """Mean L1 of the real frames against the source frame with each real frame's puppet pasted in and
    the source puppet's hole filled with the truth: only the background's pan is left."""
    from marionet.data.puppets import load_ground_truth
    from marionet.evaluate.reconstruction import paired_test_videos
    from marionet.data.datasets import FramesDataset
    from marionet.data.video import open_video

    videos = FramesDataset(data, frame_shape=(64, 64, 3), is_train=False).videos
    jobs = paired_test_videos(data, videos) if pairs else [(v, v) for v in videos]
    total, count = 0.0, 0
    for target, _ in jobs:
        with open_video(target) as reader:
            real = np.stack(list(reader)).astype(np.float32) / 255
        masks = load_ground_truth(target)["masks"][: len(real)] > 0
        person = masks | masks[:1]
        pasted = np.where(person[..., None], real, real[:1])
        total += float(np.abs(pasted - real).mean(axis=(1, 2, 3)).sum())
        count += len(real)
    return total / count


def weights_file(source) -> Path:
    from marionet.checkpoints import BUILTIN_MODELS, MODEL_FILE

    return BUILTIN_MODELS[source] if source in BUILTIN_MODELS else Path(source) / MODEL_FILE


def measured(out: Path, source) -> dict | None:
    """A reconstruction's metrics.json if it is newer than the model's weights, else None."""
    metrics = out / "metrics.json"
    if metrics.is_file() and metrics.stat().st_mtime > weights_file(source).stat().st_mtime:
        return json.loads(metrics.read_text())
    return None


def load(source, filled_background: bool = False):
    """A model; ``filled_background``: posewarp's composite as trained (the filled background everywhere)
    instead of the source's own background pixels."""
    import functools

    import marionet

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline = marionet.load(source)
    if filled_background:
        pipeline.model.transfer = functools.partial(pipeline.model.transfer, source_background=False)
    return pipeline


def print_rows(label: str, rows: dict, pairs: bool) -> None:
    """One held-out set: L1 (and as a fraction of copying the source), AKD, MKR per model."""
    first = next(iter(rows.values()))
    copy = {"l1": first["baseline_l1"], "akd": first["baseline_akd"], "mkr": first["baseline_mkr"]}
    lines = [("copy the source frame", copy)] + [(n, m) for n, m in rows.items() if n != "bound"]
    lines.append(("still-background bound", rows["bound"]))
    print(f"\n{label}: {first['videos']} {'pairs' if pairs else 'videos'}, {first['frames']} frames")
    print(" " * 42 + "".join(f"{h:>{w}}" for h, w in (("L1", 8), ("/copy", 7), ("AKD (px)", 10), ("MKR", 8))))
    for name, m in lines:
        cells = [f"{m['l1']:>8.4f}{m['l1'] / copy['l1']:>7.2f}"] + [f"{m[k]:>{w}.3f}" for k, w in (("akd", 10), ("mkr", 8))
                                                                     if k in m]
        print(f"  {name:<40}{''.join(cells)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="runs/posewarp")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--long", action="store_true", help="also the whole 128-frame held-out videos")
    ap.add_argument("--only-train", choices=PLANS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    work = Path(args.work)
    data = render_data(work)
    if args.only_train:
        train_plan(work, data, args.only_train)
        return
    train_all(work, data, args.jobs)

    from marionet.evaluate.reconstruction import reconstruct

    models = {"U-Net baseline, stage 1": work / "unet-1", "U-Net baseline, stage 2": work / "unet-2",
              "posewarp, stage 1": work / "posewarp-1", "posewarp, stage 2": work / "posewarp-2"}
    from marionet.checkpoints import BUILTIN_MODELS

    if BUILTIN_MODELS["posewarp-puppets"].is_file():
        models["built-in posewarp-puppets (float16)"] = "posewarp-puppets"
    table = {}
    for label, (videos, pairs) in heldout_sets(work, args.long).items():
        rows = {}
        for name, source in models.items():
            for filled in (False, True) if "posewarp" in name else (False,):
                row = f"{name}, filled background" if filled else name
                out = work / "rec" / re.sub(r"[^a-z0-9]+", "-", f"{label} {row.replace(' (float16)', '')}".lower())
                rows[row] = measured(out, source) or reconstruct(load(source, filled), videos, out, progress=False,
                                                                 pairs=pairs)
        rows["bound"] = {"l1": still_background_bound(videos, pairs)}
        table[label] = rows
        print_rows(label, rows, pairs)
    (work / "table.json").write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
