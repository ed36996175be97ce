"""Self-supervised training: one CPU, one GPU, or many processes with torchrun (DDP).

Every random choice (which frames, augmentations, equivariance warps, data order) is a function of
the seed and a global sample counter, so a run resumed from a checkpoint continues exactly as if it
had not stopped, and N processes see the same samples as one process with an N times larger batch.

A run directory holds: config.yaml, train_state.pt (everything to resume; the official checkpoint
layout plus schedulers, step and RNG states, readable with torch.load(weights_only=True)),
model.safetensors (marionet's inference checkpoint), log.csv, tensorboard/ and visuals/.
"""
from __future__ import annotations

import csv
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Dataset, Sampler

from marionet.checkpoints import atomic_write, save_checkpoint
from marionet.data.datasets import FramesDataset
from marionet.errors import MarionetError
from marionet.losses import FOMMObjective, MonkeyNetObjective
from marionet.models import build_model, family_of
from marionet.nn.sync_batchnorm import convert_sync_batchnorm

OBJECTIVES = {"fomm": FOMMObjective, "monkeynet": MonkeyNetObjective}
NETWORKS = ("generator", "kp_detector", "discriminator")


class SampleIds(Dataset):
    """Adds each item's global sample id as ``seed`` (used for its equivariance warp)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        item = self.dataset[i]
        item["seed"] = i
        return item


class StepSampler(Sampler):
    """Global sample ids of this process's share of each step's batch, from ``start_step`` on.

    Step s, slot k of the global batch -> counter g = s*global_batch + k -> epoch g // n and the
    epoch's permutation (seeded by seed and epoch) -> id epoch*n + perm[g % n]. Process r takes slots
    [r*local, (r+1)*local), so N processes together see exactly the one-process batch.
    """

    def __init__(self, n, global_batch, start_step, total_steps, seed=0, rank=0, world_size=1):
        self.n, self.global_batch, self.seed = n, global_batch, seed
        self.start, self.total = start_step, total_steps
        self.local = global_batch // world_size
        self.offset = rank * self.local

    def permutation(self, epoch):
        return np.random.default_rng([self.seed, 7919, epoch]).permutation(self.n)

    def __iter__(self):
        cached_epoch, perm = -1, None
        for step in range(self.start, self.total):
            for k in range(self.offset, self.offset + self.local):
                epoch, pos = divmod(step * self.global_batch + k, self.n)
                if epoch != cached_epoch:
                    cached_epoch, perm = epoch, self.permutation(epoch)
                yield int(epoch * self.n + perm[pos])

    def __len__(self):
        return (self.total - self.start) * self.local


def distributed_context():
    """(rank, world_size, local_rank) from torchrun's environment; initialises the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, 0
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and os.environ.get("MARIONET_DDP_BACKEND") != "gloo" else "gloo"
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))


def train(config: dict, data_dir, out_dir, steps: int | None = None, resume: bool = False, device: str = "cpu",
          checkpoint_every: int | None = None, batch_size: int | None = None, workers: int | None = None,
          visual_every: int | None = None, progress: bool = True, stop_after: int | None = None,
          dtype: torch.dtype = torch.float32, init=None) -> dict:
    """Train the model of ``config`` on the videos in ``data_dir``; returns the last step's losses.

    ``steps`` is the length of the whole run (it sets the learning-rate schedule); ``stop_after`` ends
    this session early at that step with a checkpoint, to be continued with ``resume=True``.
    ``dtype`` float64 is for numerical checks (e.g. that N processes equal one). ``init`` starts from the
    weights of a checkpoint (official, marionet, a run directory or a built-in name) instead of random ones.
    """
    rank, world, local_rank = distributed_context()
    tp = config.setdefault("train_params", {})
    seed = int(tp.get("seed", 0))
    out_dir = Path(out_dir)
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise MarionetError(f"device {device}: CUDA is not available on this machine")
        device = f"cuda:{local_rank}" if world > 1 else device
    dev = torch.device(device)

    global_batch = int(batch_size or tp.get("batch_size", 4))
    if global_batch % world:
        raise MarionetError(f"--batch-size {global_batch}: must be divisible by the {world} processes")
    dataset_params = dict(config.get("dataset_params", {}))
    dataset_params["root_dir"] = str(data_dir)
    dataset = FramesDataset(**dataset_params, is_train=True, num_repeats=int(tp.get("num_repeats", 1)))
    steps_per_epoch = max(1, len(dataset) // global_batch)
    num_epochs = int(tp.get("num_epochs", 1))
    total = int(steps) if steps else num_epochs * steps_per_epoch
    milestones = [round(m / num_epochs * total) for m in tp.get("epoch_milestones", [])]
    every_epochs = tp.get("checkpoint_freq", (tp.get("log_params") or {}).get("cpk_freq_epoch", 50))  # FOMM / Monkey-Net key
    checkpoint_every = int(checkpoint_every or every_epochs * steps_per_epoch)
    visual_every = int(visual_every or checkpoint_every)

    torch.manual_seed(seed)
    model = build_model(config).to(dev, dtype)
    if init is not None and not resume:
        _load_init(model, init)
    if world > 1:
        model = convert_sync_batchnorm(model)
    family = family_of(config)
    objective = OBJECTIVES[family](model, tp).to(dev, dtype)
    # Adam as in the official code; FOMM configs give lr_<network>, Monkey-Net configs one lr.
    optimizers = {name: torch.optim.Adam(getattr(model, name).parameters(), lr=tp.get(f"lr_{name}", tp.get("lr", 2e-4)),
                                         betas=(0.5, 0.999)) for name in NETWORKS}
    schedulers = {k: torch.optim.lr_scheduler.MultiStepLR(o, milestones, gamma=0.1) for k, o in optimizers.items()}
    start = 0
    state_path = out_dir / "train_state.pt"
    if resume:
        start = _restore(state_path, model, optimizers, schedulers)
    elif rank == 0 and state_path.exists():
        raise MarionetError(f"{out_dir}: already holds a run (train_state.pt); use --resume or another --out")
    if start >= total:
        raise MarionetError(f"{state_path}: the run is already at step {start} of {total}; raise --steps to continue")

    gan = objective.trains_discriminator
    runner, disc_runner = objective, model.discriminator
    if world > 1:
        ids = [dev.index] if dev.type == "cuda" else None
        runner = DDP(objective, device_ids=ids)
        disc_runner = DDP(model.discriminator, device_ids=ids) if gan else model.discriminator

    loader = DataLoader(SampleIds(dataset), batch_size=global_batch // world,
                        sampler=StepSampler(len(dataset), global_batch, start, total, seed, rank, world),
                        num_workers=min(4, (os.cpu_count() or 2) // 2) if workers is None else workers)
    logger = RunLogger(out_dir, config, start, enabled=rank == 0)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else nullcontext()
    from tqdm import tqdm

    bar = tqdm(total=total, initial=start, unit="step", disable=None if progress and rank == 0 else True)
    model.train()
    step, last = start, {}
    t0 = time.perf_counter()
    for batch in loader:
        batch = {k: (v.to(dev, dtype if v.is_floating_point() else None, non_blocking=True) if torch.is_tensor(v) else v)
                 for k, v in batch.items()}
        with amp:
            losses, generated = runner(batch)
        loss = sum(losses.values())
        for name in ("generator", "kp_detector"):
            optimizers[name].zero_grad(set_to_none=True)
        loss.backward()
        optimizers["generator"].step()
        optimizers["kp_detector"].step()
        if gan:
            optimizers["discriminator"].zero_grad(set_to_none=True)
            with amp:
                d_losses = objective.discriminator_loss(batch, generated, disc_runner)
            sum(d_losses.values()).backward()
            optimizers["discriminator"].step()
            losses.update(d_losses)
        for name, s in schedulers.items():
            if name != "discriminator" or gan:
                s.step()
        step += 1
        values = torch.stack([v.detach().double() for v in losses.values()])
        if world > 1:  # log the mean over processes, i.e. the loss of the whole batch
            dist.all_reduce(values)
            values /= world
        last = dict(zip(losses, values.tolist()))
        if not all(math.isfinite(v) for v in last.values()):
            raise MarionetError(f"{out_dir}: the loss became {last} at step {step}; lower the learning rates")
        bar.update(1)
        bar.set_postfix({k: f"{v:.3g}" for k, v in last.items()}, refresh=False)
        logger.scalars(step, {**last, "lr": schedulers["generator"].get_last_lr()[0],
                              "seconds": time.perf_counter() - t0})
        if step % visual_every == 0 or step == total:
            logger.visual(step, batch, generated)
        stopping = stop_after is not None and step >= stop_after
        if step % checkpoint_every == 0 or step == total or stopping:
            if rank == 0:
                _save(out_dir, config, model, optimizers, schedulers, step)
            if world > 1:
                dist.barrier()
        if stopping:
            break
    bar.close()
    logger.close()
    return last


def _load_init(model, init) -> None:
    """Generator and keypoint detector must match the config; a discriminator that does not (e.g. an
    -adv config fine-tuning a checkpoint trained without one) starts from random weights, as officially."""
    import warnings

    from marionet.checkpoints import load_weights, read_checkpoint
    from marionet.loading import resolve_checkpoint
    from marionet.models.fomm import TranslationSearch

    path = resolve_checkpoint(init)
    states, _, official = read_checkpoint(path)
    # Anti-aliasing kernels are fixed functions of a network's scale_factor, not learned: a fine-tune
    # may change the resolution a network works at, and keeps its own kernels.
    for network, key in (("kp_detector", "down.weight"), ("generator", "dense_motion_network.down.weight")):
        own = getattr(model, network).state_dict()
        if network in states:
            states[network] = {k: v for k, v in states[network].items() if k != key}
            if key in own:
                states[network][key] = own[key]
    # A background-motion network added to a model trained without one starts as the identity; the
    # weights of a learned one are dropped when the config replaces it by the weight-free search.
    if "generator" in states and isinstance(getattr(model.generator, "bg_motion", None), TranslationSearch):
        states["generator"] = {k: v for k, v in states["generator"].items() if not k.startswith("bg_motion.")}
    load_weights(model, states, path, official, missing_ok=("generator.bg_motion.",))
    try:
        load_weights(model, states, path, official, networks=("discriminator",))
    except MarionetError as e:
        warnings.warn(f"the discriminator starts from random weights ({e})", stacklevel=3)


def _save(out_dir: Path, config, model, optimizers, schedulers, step: int) -> None:
    state = {name: getattr(model, name).state_dict() for name in NETWORKS}
    state.update({f"optimizer_{k}": o.state_dict() for k, o in optimizers.items()})
    state.update({f"scheduler_{k}": s.state_dict() for k, s in schedulers.items()})
    state.update(step=step, epoch=step, rng_torch=torch.get_rng_state())
    atomic_write(out_dir / "train_state.pt", lambda tmp: torch.save(state, tmp))
    save_checkpoint(out_dir / "model.safetensors", model, config)


def _restore(path: Path, model, optimizers, schedulers) -> int:
    if not path.is_file():
        raise MarionetError(f"{path}: nothing to resume (no such file)")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise MarionetError(f"{path}: not a readable training state ({str(e).splitlines()[0][:150]})") from None
    try:
        for name in NETWORKS:
            getattr(model, name).load_state_dict(state[name])
        for k in optimizers:
            optimizers[k].load_state_dict(state[f"optimizer_{k}"])
            schedulers[k].load_state_dict(state[f"scheduler_{k}"])
    except (KeyError, RuntimeError, ValueError) as e:
        raise MarionetError(f"{path}: does not match the config ({str(e).splitlines()[0][:200]})") from None
    torch.set_rng_state(state["rng_torch"])
    return int(state["step"])


class RunLogger:
    """log.csv (rewritten up to the resumed step on resume), TensorBoard scalars and PNG visuals; rank 0 only."""

    def __init__(self, out_dir: Path, config: dict, start_step: int, enabled: bool = True):
        self.enabled = enabled
        if not enabled:
            return
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(out_dir / "config.yaml", lambda tmp: Path(tmp).write_text(yaml.safe_dump(config, sort_keys=False)))
        self.csv_path = out_dir / "log.csv"
        self.fields = None
        if start_step and self.csv_path.exists():  # drop rows logged after the checkpoint we resume from
            with open(self.csv_path, newline="") as f:
                reader = csv.DictReader(f)
                rows, self.fields = [r for r in reader if int(r["step"]) <= start_step], reader.fieldnames
            with open(self.csv_path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=self.fields)
                writer.writeheader()
                writer.writerows(rows)
        elif self.csv_path.exists():
            self.csv_path.unlink()
        from tensorboardX import SummaryWriter

        self.tb = SummaryWriter(str(out_dir / "tensorboard"), purge_step=start_step or None)

    def scalars(self, step: int, values: dict) -> None:
        if not self.enabled:
            return
        for k, v in values.items():
            self.tb.add_scalar(f"train/{k}", v, step)
        new = self.fields is None
        if new:
            self.fields = ["step", *values]
        with open(self.csv_path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({"step": step, **values})

    def visual(self, step: int, batch: dict, generated: dict) -> None:
        if not self.enabled:
            return
        from marionet.visualize import training_grid

        path = self.out_dir / "visuals" / f"step-{step:07d}.png"
        path.parent.mkdir(exist_ok=True)
        image = training_grid(batch, generated)
        atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))

    def close(self) -> None:
        if self.enabled:
            self.tb.close()
