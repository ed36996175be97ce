"""Donkey-Net beside Monkey-Net at equal budget, across identities and within one identity.

    .venv/bin/python -m benchmarks.donkeynet_table [--steps 2000] [--stop-after 1000] [--batch-size 4]
                                                   [--work runs/donkey-table] [--jobs 1] [--eval-only]

Trains, at the same number of steps and batch size, on the paired puppets of benchmarks/train_donkey.py
(`marionet synth --kind humanoid --size 64 --videos 800 --frames 64 --pairs 2 --seed 0 --test-fraction 0.05`):
  monkeynet               the networks of configs/donkeynet-puppets-64.yaml without attention, trained as
                          Monkey-Net (two frames of one video, one scale)
  donkeynet-pass1-noatt   Donkey-Net without attention, pass 1 only (pass2_gradient: false, the public code)
  donkeynet-both-noatt    Donkey-Net without attention, both passes back-propagated
  donkeynet-pass1         Donkey-Net with attention (configs/donkeynet-puppets-64.yaml), pass 1 only
  donkeynet-both          configs/donkeynet-puppets-64.yaml as it is
then runs the reconstruction protocol on the held-out pairs (seed 777, 24 pairs of 32 frames):
cross-identity (`reconstruct --pairs`, absolute and relative motion, relative with
`--still-background`) and same identity, printing L1 / AKD /
MKR beside copying the source (WORK/table.json), with the built-in `puppets` for reference. Every model
trains the first --stop-after steps of a --steps schedule (the learning rate falls at 60% and 90% of
--steps): the equal budget. Runs resume when the command is repeated; --jobs trains that many models at once, one thread each; --eval-only trains
nothing and evaluates the runs as they are, naming each one's step.

    .venv/bin/python -m benchmarks.donkeynet_table --pairing [--model NAME_OR_RUN ...]

measures `marionet pair` instead: 24 pairs of puppets sharing a motion per split (`synth --pairs 2
--videos 96 --frames 32 --seed 21 --test-fraction 0.5`) mixed with 24 unpaired puppets per split (seed
22), paired with the ground-truth joints and with each model's keypoint detector; prints precision and
recall of the true pairs (WORK/pairing.json).

    .venv/bin/python -m benchmarks.donkeynet_table --bounds

prints what the held-out cross-identity protocol allows at best (WORK/bounds.json), as a fraction of
copying the source: A's true frames with its background held still (a model cannot know A's camera pan
from B's video), and A rendered with B's proportions, still background (absolute keypoints copied exactly).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from benchmarks.monkeynet_table import _step
from benchmarks.train_donkey import evaluate, print_report, render_data
from marionet.config import load_config

NO_ATTENTION = {"generator_params.attention": False, "generator_params.dense_motion_params.attention": False,
                "discriminator_params.attention": False}
VARIANTS = {  # name -> (family, model_params changes, train_params changes)
    "monkeynet": ("monkeynet", NO_ATTENTION, {}),
    "donkeynet-pass1-noatt": ("donkeynet", NO_ATTENTION, {"pass2_gradient": False}),
    "donkeynet-both-noatt": ("donkeynet", NO_ATTENTION, {}),
    "donkeynet-pass1": ("donkeynet", {}, {"pass2_gradient": False}),
    "donkeynet-both": ("donkeynet", {}, {}),
}


def variant_config(family: str, model_changes: dict, train_changes: dict) -> dict:
    config = load_config("donkeynet-puppets-64")
    config["family"] = family
    for dotted, value in model_changes.items():
        section = config["model_params"]
        *path, key = dotted.split(".")
        for part in path:
            section = section[part]
        section[key] = value
    config["train_params"].update(train_changes)
    if family == "monkeynet":   # single-scale, single-pass objective
        for key in ("scales", "pass2_gradient"):
            config["train_params"].pop(key, None)
    return config


def mixed_pairs(work: Path) -> Path:
    """24 puppet pairs and 24 unpaired puppets in each of train/ and test/, with their ground truth."""
    import shutil

    from marionet.data.puppets import synthesize

    root = work / "mixed"
    if not root.exists():
        synthesize(work / "mixed-tmp", videos=96, frames=32, size=64, kind="humanoid", seed=21, pairs=2,
                   test_fraction=0.5)
        synthesize(work / "solo", videos=48, frames=32, size=64, kind="humanoid", seed=22, test_fraction=0.5)
        for split in ("train", "test"):
            for video in sorted((work / "solo" / split).iterdir()):
                shutil.copytree(video, work / "mixed-tmp" / split / f"solo_{video.name}")
                shutil.copy(work / "solo" / "groundtruth" / split / f"{video.name}.npz",
                            work / "mixed-tmp" / "groundtruth" / split / f"solo_{video.name}.npz")
        (work / "mixed-tmp").rename(root)
    return root


def pairing(work: Path, models: list[str]) -> None:
    from marionet.cli import main as cli

    data = mixed_pairs(work)
    results = {}
    for source in ["ground truth", *models]:
        out = work / f"paired-{Path(source).name.replace(' ', '-')}"
        argv = ["pair", "--data", str(data), "--out", str(out), "--overwrite", "--quiet"]
        if cli(argv + ([] if source == "ground truth" else ["--model" if "/" not in source else "--checkpoint",
                                                             source])) != 0:
            raise SystemExit(f"marionet pair failed for {source}")
        report = json.loads((out / "pairs.json").read_text())
        results[source] = {split: entry["accuracy"] for split, entry in report["splits"].items()}
    (work / "pairing.json").write_text(json.dumps(results, indent=2))
    print("marionet pair on 48 puppet pairs mixed with 48 unpaired puppets (half in train/, half in test/):")
    print(f"  {'keypoints':<36}{'split':<8}{'pairs found':>12}{'precision':>11}{'recall':>8}")
    for source, splits in results.items():
        for split, acc in splits.items():
            print(f"  {source:<36}{split:<8}{acc['found']:>12}{acc['precision']:>11.3f}{acc['recall']:>8.3f}")


def bounds(heldout: Path, work: Path) -> None:
    """Cross-identity L1 of two renderings of A in the shared motion, against A's real frames."""
    import numpy as np

    from marionet.data.pairs import video_pairs
    from marionet.data.puppets import ground_truth_path, load_ground_truth, render_video
    from marionet.data.video import open_video

    test = sorted((heldout / "test").iterdir())
    sums = {"copy the source": 0.0, "A, background still": 0.0, "A with B's proportions, background still": 0.0}
    pairs = video_pairs(heldout, "test", test, both_orders=True)
    for a, b in pairs:
        ga, gb = (load_ground_truth(ground_truth_path(v)) for v in (a, b))
        kind, size, frames = ga["kind"], int(ga["size"]), len(ga["joints"])
        render = dict(motion_seed=int(ga["motion_seed"]), fps=float(ga["fps"]))
        real, still, shaped = (render_video(kind, size, frames, int(ga["seed"]), **render, **options)[0]
                               .astype(np.float32) / 255
                               for options in ({}, {"still_background": True},
                                               {"still_background": True, "shape_seed": int(gb["shape_seed"])}))
        with open_video(a) as reader:
            assert np.array_equal(real, np.stack(list(reader)).astype(np.float32) / 255), f"{a}: not re-rendered as written"
        for name, fake in zip(sums, (real[:1], still, shaped)):
            sums[name] += float(np.abs(fake - real).mean())
    result = {name: total / len(pairs) for name, total in sums.items()}
    (work / "bounds.json").write_text(json.dumps(result, indent=2))
    print(f"cross-identity bounds on {len(pairs)} held-out ordered pairs (L1, and as a fraction of copying the source):")
    for name, l1 in result.items():
        print(f"  {name:<44}{l1:>8.4f}{l1 / result['copy the source']:>7.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--work", default="runs/donkey-table")
    ap.add_argument("--data", default="runs/donkey", help="where train_donkey's data/ and heldout/ are (rendered if absent)")
    ap.add_argument("--stop-after", type=int, default=1000, help="the equal budget: steps each model trains")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--eval-only", action="store_true", help="train nothing, evaluate the runs as they are")
    ap.add_argument("--pairing", action="store_true", help="measure marionet pair instead (see above)")
    ap.add_argument("--bounds", action="store_true", help="the cross-identity protocol's bounds instead (see above)")
    ap.add_argument("--model", action="append", default=[], help="with --pairing: a built-in model or a run "
                                                                 "directory whose detector pairs too (repeatable)")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.pairing:
        pairing(work, args.model)
        return
    data, heldout = render_data(Path(args.data))
    if args.bounds:
        bounds(heldout, work)
        return

    budget = min(args.stop_after or args.steps, args.steps)
    commands = []
    for name, variant in VARIANTS.items():
        path = work / f"{name}.yaml"
        path.write_text(yaml.safe_dump(variant_config(*variant), sort_keys=False))
        run = work / name
        state = run / "train_state.pt"
        if not args.eval_only and _step(state) < budget:
            # marionet train has no option to stop early: train() in a child process, one thread
            commands.append([sys.executable, "-W", "ignore", "-c",
                             "from marionet.train import train; "
                             f"train({str(path)!r}, {str(data)!r}, {str(run)!r}, steps={args.steps}, "
                             f"stop_after={budget}, checkpoint_every=250, batch_size={args.batch_size}, workers=0, "
                             f"progress=False, resume={state.exists()})"])
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with ThreadPoolExecutor(args.jobs) as pool:   # --jobs trainings at once
        list(pool.map(lambda cmd: subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True), commands))

    runs = {name: work / name for name in VARIANTS if (work / name / "model.safetensors").exists()}
    table = {f"{name} ({_step(run / 'train_state.pt')})": metrics
             for (name, run), metrics in zip(runs.items(), evaluate(runs, heldout, work).values())}
    table.update(evaluate({"built-in puppets": "puppets"}, heldout, work))   # the reference across identities
    (work / "table.json").write_text(json.dumps(table, indent=2))
    print(f"the first {budget} steps of a {args.steps}-step schedule at batch {args.batch_size} (the step each run "
          "reached in brackets):")
    print_report(table)


if __name__ == "__main__":
    main()
