"""Training speed of vox-256 at batch 1: marionet's trainer against the reference training step.

    .venv/bin/python -m benchmarks.bench_train_speed [--steps 4] [--repeats 3] [--size 256] [--check | --check-bf16]

The reference step is the official train.py iteration written out plainly: GeneratorFullModel's losses
(keypoints of source and driving, generator, the image pyramid, VGG19 on each level of the generated and the
real frame separately, equivariance of values and Jacobians with the same random warp), backward, one Adam
step each for the generator and the keypoint detector; the networks in the default memory format, on a
batch already in memory. Both sides use marionet's networks from the same initial weights and the same
perceptual backbone (a random VGG19: no ImageNet weights ship offline), vox-256's loss weights, no GAN (as
vox-256 trains). marionet's side is Trainer.step on the same batches (the two alternate in one process, so
machine noise hits both; wall-clock and process CPU time, which with --threads 1 hardly depends on the
machine's load), then the whole `marionet train` loop (data loading from disk, logging), timed from its log.

Where the CPU has bfloat16 dot products, Trainer.step with `--precision bf16` (autocast) is timed as well.

--check compares the weights after one step from the same weights and batch (reference step against
Trainer.step), in float64 so that only the order of summation differs. --check-bf16 compares a bf16
autocast step with the float32 reference: the losses, the gradients' cosine, and the share of weights
that Adam's first step moves the same way.
"""
from __future__ import annotations

import argparse
import copy
import csv
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

warnings.simplefilter("ignore")


def config(size: int = 256, backbone: str = "random-vgg19") -> dict:
    """vox-256 as shipped, but reading a local folder of videos (no identity sampling or pairs list)."""
    from marionet.config import load_config

    cfg = load_config("vox-256")
    cfg["dataset_params"] = {"root_dir": "data", "frame_shape": [size, size, 3], "id_sampling": False,
                             "augmentation_params": cfg["dataset_params"]["augmentation_params"]}
    cfg["train_params"].update(batch_size=1, perceptual_backbone=backbone, num_repeats=1)
    if size < 256:  # the 0.125 pyramid level needs 16 px for VGG19
        cfg["train_params"]["scales"] = [s for s in cfg["train_params"]["scales"] if size * s >= 16]
    return cfg


def videos(folder: Path, size: int) -> Path:
    from marionet.data.puppets import synthesize

    synthesize(folder, videos=6, frames=8, size=size, kind="humanoid", seed=5)
    return folder


class ReferenceStep:
    """The official training iteration (see the module docstring) on marionet's networks."""

    def __init__(self, model, params):
        from marionet.losses import ImagePyramid, Vgg19

        self.model = model
        self.params = params
        self.weights = params.loss_weights
        self.pyramid = ImagePyramid(params.scales).to(next(model.parameters()).dtype)
        self.vgg = Vgg19().to(next(model.parameters()).dtype)
        self.optimizers = {name: torch.optim.Adam(getattr(model, name).parameters(),
                                                  lr=params.learning_rate(name), betas=(0.5, 0.999))
                           for name in ("generator", "kp_detector")}

    def losses(self, batch: dict) -> dict:
        from marionet.geometry import RandomTPS

        kp, gen, w = self.model.kp_detector, self.model.generator, self.weights
        kp_source, kp_driving = kp(batch["source"]), kp(batch["driving"])
        generated = gen(batch["source"], kp_driving=kp_driving, kp_source=kp_source)
        real, fake = self.pyramid(batch["driving"]), self.pyramid(generated["prediction"])
        perceptual = 0
        for scale in self.params.scales:
            x_vgg = self.vgg(fake[f"prediction_{scale}"])
            y_vgg = self.vgg(real[f"prediction_{scale}"])
            for i, weight in enumerate(w.perceptual):
                perceptual = perceptual + weight * torch.abs(x_vgg[i] - y_vgg[i].detach()).mean()
        losses = {"perceptual": perceptual}
        transform = RandomTPS(batch["seed"].tolist(), **vars(self.params.transform_params))
        transformed = transform.warp_frames(batch["driving"], self.model.align_corners)
        kp_t = kp(transformed)
        losses["equivariance_value"] = w.equivariance_value * torch.abs(
            kp_driving["value"] - transform.warp_coordinates(kp_t["value"])).mean()
        jacobian_t = torch.matmul(transform.jacobian(kp_t["value"]), kp_t["jacobian"])
        normed = torch.matmul(torch.inverse(kp_driving["jacobian"]), jacobian_t)
        eye = torch.eye(2, dtype=normed.dtype).view(1, 1, 2, 2)
        losses["equivariance_jacobian"] = w.equivariance_jacobian * torch.abs(eye - normed).mean()
        return losses

    def step(self, batch: dict) -> dict:
        losses = self.losses(batch)
        sum(v.mean() for v in losses.values()).backward()
        for opt in self.optimizers.values():
            opt.step()
            opt.zero_grad()
        return losses


def batches(data: Path, cfg: dict, n: int, dtype=torch.float32) -> list[dict]:
    """The first n training items of the data set, as batches of 1, the way the trainer forms them."""
    from marionet.models import family_class
    from marionet.train import SampleIds

    family = family_class(cfg)
    dataset = SampleIds(family.training_dataset(cfg, data, family.train_params(cfg)))
    out = []
    for i in range(n):
        batch = torch.utils.data.default_collate([dataset[i]])
        out.append({k: v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v for k, v in batch.items()})
    return out


def timed(step, items: list[dict]) -> tuple[float, float]:
    """(wall, CPU) seconds per call of ``step`` over ``items`` after one warm-up call on the first."""
    step(items[0])
    wall, cpu = time.perf_counter(), time.process_time()
    for batch in items[1:]:
        step(batch)
    n = len(items) - 1
    return (time.perf_counter() - wall) / n, (time.process_time() - cpu) / n


def reference_step(cfg: dict):
    from marionet.models import build_model

    torch.manual_seed(0)
    model = build_model(cfg, with_discriminator=False).train()
    return ReferenceStep(model, model.train_params(cfg)).step


def marionet_step(cfg: dict, data: Path, out: Path, precision: str = "fp32"):
    from marionet.train import RunOptions, Trainer

    trainer = Trainer(copy.deepcopy(cfg), data, out, RunOptions(steps=100, progress=False, precision=precision))
    trainer.model.train()
    return lambda batch: trainer.step(trainer.to_device(batch))


def loop_rate(cfg: dict, data: Path, steps: int, precision: str = "fp32") -> float:
    """Seconds per iteration of `marionet train` as a whole (data loading, logging), from its log.csv."""
    from marionet.train import train

    with tempfile.TemporaryDirectory() as tmp:
        train(copy.deepcopy(cfg), data, Path(tmp) / "run", steps=steps + 1, checkpoint_every=10 ** 9,
              visual_every=10 ** 9, progress=False, precision=precision)
        with open(Path(tmp) / "run" / "log.csv", newline="") as f:
            seconds = [float(r["seconds"]) for r in csv.DictReader(f)]
    return (seconds[-1] - seconds[0]) / steps


def compare(steps: int = 3, repeats: int = 2, size: int = 256, loop: bool = True) -> dict:
    """Interleaved: each repeat times the reference step and Trainer.step on the same batches (wall-clock
    and process CPU time: with one thread the latter hardly depends on the machine's load); then the
    whole `marionet train` loop once."""
    cfg = config(size)
    with tempfile.TemporaryDirectory() as tmp:
        data = videos(Path(tmp) / "data", size)
        items = batches(data, cfg, steps + 1)
        from marionet.inference import unavailable

        bf16 = unavailable("bf16") is None
        times = {"reference": [], "marionet": []} | ({"marionet bf16": []} if bf16 else {})
        loads = [os.getloadavg()[0]]
        for r in range(repeats):
            times["reference"].append(timed(reference_step(cfg), items))
            times["marionet"].append(timed(marionet_step(cfg, data, Path(tmp) / f"run{r}"), items))
            if bf16:
                times["marionet bf16"].append(timed(marionet_step(cfg, data, Path(tmp) / f"bf16-{r}", "bf16"), items))
            loads.append(os.getloadavg()[0])
            print(f"repeat {r}: " + ", ".join(f"{k} {v[-1][0]:.2f} s ({v[-1][1]:.2f} CPU s)" for k, v in times.items()),
                  file=sys.stderr)
        wholes = {p: loop_rate(cfg, data, steps, p) for p in (("fp32", "bf16") if bf16 else ("fp32",))} if loop else {}
    ref_wall, ref_cpu = np.median([t[0] for t in times["reference"]]), np.median([t[1] for t in times["reference"]])
    print(f"\nvox-256 training at {size}x{size}, batch 1, random VGG19, vox-256 losses (no GAN), {steps} timed steps x "
          f"{repeats} interleaved repeats, {torch.get_num_threads()} threads, load average "
          f"{min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores")
    print("\n| | s/iteration | iterations/s | vs reference | CPU s/iteration | vs reference (CPU) |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| reference step (official losses, default memory format) | {ref_wall:.2f} | {1 / ref_wall:.3f} | 1.00x | "
          f"{ref_cpu:.2f} | 1.00x |")
    rates = {}
    for name, label in (("marionet", "marionet `Trainer.step`"),
                        ("marionet bf16", "marionet `Trainer.step`, `--precision bf16`")):
        if name not in times:
            continue
        own_wall, own_cpu = np.median([t[0] for t in times[name]]), np.median([t[1] for t in times[name]])
        rates[name] = 1 / own_wall
        print(f"| {label} | {own_wall:.2f} | {1 / own_wall:.3f} | {ref_wall / own_wall:.2f}x | {own_cpu:.2f} | "
              f"{ref_cpu / own_cpu:.2f}x |")
    for precision, whole in wholes.items():
        print(f"| `marionet train --precision {precision}`, whole loop (data loading, logging) | {whole:.2f} | "
              f"{1 / whole:.3f} | {ref_wall / whole:.2f}x | | |")
    return {"reference": 1 / ref_wall, **rates, **{f"loop {p}": 1 / w for p, w in wholes.items()}}


def check(size: int = 128) -> dict:
    """Largest weight difference after one step, reference step vs Trainer.step, float64."""
    from marionet.train import RunOptions, Trainer

    cfg = config(size)
    with tempfile.TemporaryDirectory() as tmp:
        data = videos(Path(tmp) / "data", size)
        trainer = Trainer(cfg, data, Path(tmp) / "run", RunOptions(steps=1, dtype=torch.float64, progress=False))
        batch = trainer.to_device(batches(data, cfg, 1, torch.float64)[0])
        reference = copy.deepcopy(trainer.model)
        step = ReferenceStep(reference, trainer.params)
        step.vgg.load_state_dict(trainer.objective.perceptual.vgg.state_dict())
        trainer.model.train()
        reference.train()
        step.step(batch)
        trainer.step(batch)
    diffs = {}
    for name in ("generator", "kp_detector"):
        own = dict(getattr(trainer.model, name).named_parameters())
        for key, value in getattr(reference, name).named_parameters():
            diffs[f"{name}.{key}"] = float((value - own[key]).abs().max())
    worst = max(diffs, key=diffs.get)
    print(f"after one step (float64, {size}x{size}): largest weight difference {diffs[worst]:.1e} ({worst}); "
          f"learning rate {trainer.params.learning_rate('generator'):g}")
    return diffs


def check_bf16(size: int = 128) -> dict:
    """Trainer.step with bf16 autocast against the float32 reference step, from the same weights and batch:
    each loss's relative difference, the cosine between the two gradients of each network, and the
    fraction of weights that Adam's first step moves the same way."""
    from marionet.train import RunOptions, Trainer

    cfg = config(size)
    with tempfile.TemporaryDirectory() as tmp:
        data = videos(Path(tmp) / "data", size)
        trainer = Trainer(cfg, data, Path(tmp) / "run", RunOptions(steps=1, precision="bf16", progress=False))
        if trainer.amp is None:
            raise SystemExit("this CPU has no bfloat16 support: nothing to check")
        batch = trainer.to_device(batches(data, cfg, 1)[0])
        reference = copy.deepcopy(trainer.model)
        before = copy.deepcopy(trainer.model)
        step = ReferenceStep(reference, trainer.params)
        step.vgg.load_state_dict(trainer.objective.perceptual.vgg.state_dict())
        trainer.model.train()
        reference.train()
        ref_losses = step.losses(batch)
        sum(v.mean() for v in ref_losses.values()).backward()
        own_losses, _ = trainer.step(batch)
    result = {f"loss {k}": abs(own_losses[k] - float(v)) / abs(float(v)) for k, v in ref_losses.items()}
    for name in ("generator", "kp_detector"):
        ref, own, old = (dict(getattr(m, name).named_parameters()) for m in (reference, trainer.model, before))
        keys = [k for k, p in ref.items() if p.grad is not None]
        ref_grad = torch.cat([ref[k].grad.flatten() for k in keys])
        own_grad = torch.cat([own[k].grad.flatten() for k in keys])
        result[f"gradient cosine {name}"] = float(torch.nn.functional.cosine_similarity(ref_grad, own_grad, dim=0))
        moved = torch.cat([(own[k] - old[k]).flatten() for k in keys])
        agree = torch.sign(moved) == -torch.sign(ref_grad)
        result[f"same direction {name}"] = float(agree.float().mean())
    print(f"bf16 autocast step against the float32 reference ({size}x{size}, same weights and batch):")
    for k, v in result.items():
        print(f"  {k:<40}{v:.4f}")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--size", type=int, help="frame size (default: 256 for timing, 128 for the checks)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--check", action="store_true", help="weights after one step against the reference (float64)")
    ap.add_argument("--check-bf16", action="store_true", help="a bf16 autocast step against the float32 reference")
    ap.add_argument("--no-loop", action="store_true", help="skip timing the whole `marionet train` loop")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.check or args.check_bf16:
        (check if args.check else check_bf16)(args.size or 128)
        return
    compare(args.steps, args.repeats, args.size or 256, loop=not args.no_loop)


if __name__ == "__main__":
    main()
