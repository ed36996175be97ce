"""Train the ground-truth keypoint regressor of a puppet kind and report its held-out error.

    .venv/bin/python -m benchmarks.train_regressor --kind humanoid      # 4-9 min on 2 free cores
    .venv/bin/python -m benchmarks.train_regressor --kind all --out marionet/assets/regressors

Training data is rendered on the fly (fresh puppets every round, seeds 10_000_000 + i; a quarter of
them rendered at 128x128 and downsampled, as the regressor sees larger frames). The held-out error
is measured on other puppets (seeds 20_000_000 + i) rendered at 64x64 and at 128x128, in pixels of
that resolution: mean Euclidean distance over *visible* joints (the AKD-style number) and over all
joints inside the frame (hidden ones included). Joints outside the frame are not counted.
The weights are stored in float16 and the reported errors are those of the stored weights.
Runs are deterministic for a given --seed and thread count, up to floating-point reduction order.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from marionet.data.puppets import KINDS, render_video
from marionet.evaluate.keypoint_regressor import (ASSETS, INPUT_SIZE, KeypointRegressor,
                                                  heldout_error, load_regressor, save_regressor,
                                                  to_input)

STEPS = {"humanoid": 1200, "quadruped": 2400, "face": 1200}  # quadruped paws need longer
TRAIN_SEED0 = 10_000_000
HELDOUT_SEED0 = 20_000_000


def render_pool(kind: str, videos: int, first: int, frames: int = 8, big_every: int = 4):
    """-> (uint8 images (N, 64, 64, 3), joints (N, J, 2) in 64-px units, visible (N, J))."""
    X, Y, V = [], [], []
    for i in range(videos):
        size = 128 if (first + i) % big_every == 0 else INPUT_SIZE
        v, gt = render_video(kind, size, frames, first + i, fps=5.0)
        x = to_input(v)
        X.append((x * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
        Y.append(gt["joints"] * (INPUT_SIZE / size))
        V.append(gt["visible"])
    return np.concatenate(X), np.concatenate(Y).astype(np.float32), np.concatenate(V)


def train(kind: str, steps: int, batch: int, lr: float, width: int, pool: int, seed: int,
          log=print) -> KeypointRegressor:
    torch.manual_seed(seed)
    J = len(KINDS[kind].joints)
    model = KeypointRegressor(J, width)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    gen = torch.Generator().manual_seed(seed)
    step, rnd, t0 = 0, 0, time.time()
    while step < steps:
        X, Y, V = render_pool(kind, pool, TRAIN_SEED0 + rnd * pool)
        rnd += 1
        X = torch.from_numpy(X).permute(0, 3, 1, 2)
        Y, V = torch.from_numpy(Y), torch.from_numpy(V).float()
        inside = ((Y >= 0) & (Y < INPUT_SIZE)).all(-1).float()
        order = torch.randperm(len(X), generator=gen)
        model.train()
        for k in range(0, len(order) - batch + 1, batch):
            idx = order[k:k + batch]
            x = X[idx].float() / 255.0
            pred, vis = model(x)
            m = inside[idx]
            d = (pred * INPUT_SIZE - Y[idx]).abs().sum(-1)
            loss = (d * m).sum() / m.sum().clamp(min=1)
            bce = F.binary_cross_entropy_with_logits(vis, V[idx], reduction="none")
            loss = loss + 0.5 * (bce * m).sum() / m.sum().clamp(min=1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 100 == 0 or step == steps:
                log(f"  {kind} step {step}/{steps} loss {loss.item():.3f} "
                    f"({time.time() - t0:.0f} s)")
            if step >= steps:
                break
    return model.eval()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kind", default="all", help="humanoid, quadruped, face or all")
    p.add_argument("--steps", type=int, default=None,
                   help="training steps (default: " + ", ".join(f"{k} {v}" for k, v in STEPS.items()) + ")")
    p.add_argument("--batch", type=int, default=48)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--pool", type=int, default=2000, help="videos (x8 frames) rendered per round")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on a shared machine more threads were slower)")
    p.add_argument("--heldout", type=int, default=64, help="held-out videos (x8 frames) per size")
    p.add_argument("--out", default=str(ASSETS), help="folder for <kind>.safetensors")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    kinds = list(KINDS) if a.kind == "all" else [a.kind]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {}
    for kind in kinds:
        t0 = time.time()
        steps = a.steps or STEPS[kind]
        model = train(kind, steps, a.batch, a.lr, a.width, a.pool, a.seed)
        minutes = (time.time() - t0) / 60
        path = out / f"{kind}.safetensors"
        save_regressor(model, path, kind, KINDS[kind].joints)
        stored = load_regressor(str(path), cache=False)  # evaluate what is shipped (float16)
        errs = {s: heldout_error(kind, s, a.heldout, 8, HELDOUT_SEED0, stored) for s in (64, 128)}
        extra = {"heldout_error_px": {str(s): {k: round(v, 3) if isinstance(v, float) else v
                                               for k, v in e.items()} for s, e in errs.items()},
                 "train": {"steps": steps, "batch": a.batch, "lr": a.lr, "pool": a.pool,
                           "seed": a.seed, "minutes": round(minutes, 1)}}
        save_regressor(stored, path, kind, KINDS[kind].joints, extra)
        report[kind] = extra
        print(f"{kind}: trained in {minutes:.1f} min, {path} ({path.stat().st_size / 1024:.0f} KB)")
        for s, e in errs.items():
            print(f"  held-out {s}x{s}: {e['visible']:.2f} px (visible joints), "
                  f"{e['all']:.2f} px (all joints in frame), visibility accuracy "
                  f"{100 * e['visibility_accuracy']:.1f}%")
        sys.stdout.flush()
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
