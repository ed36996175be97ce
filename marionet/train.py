"""Self-supervised training: one CPU, one GPU, or many processes with torchrun (DDP), for any family.

Every random choice (which frames, augmentations, equivariance warps, data order) is a function of
the seed and a global sample counter, so a run resumed from a checkpoint continues exactly as if it
had not stopped, and N processes see the same samples as one process with an N times larger batch.

A run directory holds: config.yaml, train_state.pt (everything to resume; the official checkpoint
layout plus schedulers, step and RNG states, readable with torch.load(weights_only=True)),
model.safetensors (marionet's inference checkpoint), log.csv, tensorboard/ and visuals/.

The trainer knows a family only through ``ModelFamily``: its networks, its objective (whose
generator side is one forward, so DDP can wrap it) and its ``TrainParams``.
"""
from __future__ import annotations

import csv
import math
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Dataset, Sampler

from marionet.checkpoints import MODEL_FILE, load_init, save_checkpoint
from marionet.config import load_config, validate_config
from marionet.errors import Interrupted, MarionetError
from marionet.files import atomic_write, atomic_write_text, check_writable
from marionet.losses import download_vgg19, find_vgg19_weights
from marionet.models import build_model, family_class
from marionet.nn.sync_batchnorm import convert_sync_batchnorm

STATE_FILE = "train_state.pt"


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


@dataclass
class RunOptions:
    """What a run adds to its config (the command line's options); None takes the config's value."""
    steps: int | None = None              # length of the whole run (sets the learning-rate schedule)
    resume: bool = False
    device: str = "cpu"
    checkpoint_every: int | None = None   # steps
    batch_size: int | None = None         # global, split across processes
    workers: int | None = None
    visual_every: int | None = None
    progress: bool = True
    stop_after: int | None = None         # end this session early at that step, with a checkpoint
    dtype: torch.dtype = torch.float32    # float64 for numerical checks (N processes equal one)
    init: str | Path | None = None        # start from a checkpoint's weights (fine-tuning)
    download_vgg19: bool = False          # the only network use, and only when asked
    channels_last: bool = True            # convolutions and batch norms: about 1.5x faster on CPUs in this layout
    precision: str = "auto"               # fp32 | bf16 (autocast) | auto: bf16 on CUDA, fp32 on CPU


def train(config, data_dir, out_dir, **options) -> dict:
    """Train the model of ``config`` (a dict, a YAML path or a shipped name) on the videos in
    ``data_dir``; ``options`` are ``RunOptions`` fields. Returns the last step's losses."""
    return Trainer(config, data_dir, out_dir, RunOptions(**options)).run()


class Trainer:
    """Set-up in ``__init__``; ``step`` runs one optimisation step; ``save`` writes a checkpoint."""

    def __init__(self, config, data_dir, out_dir, options: RunOptions):
        if isinstance(config, dict):
            source, config = "config", validate_config(config)
        else:
            source, config = str(config), load_config(config)
        self.config, self.options, self.out_dir = config, options, Path(out_dir)
        self.rank, self.world, local_rank = distributed_context()
        self.device = self._device(options.device, local_rank)
        family = family_class(config, source)
        self.params = family.train_params(config, source)
        self._check_out_dir()

        self.global_batch = int(options.batch_size or self.params.batch_size)
        if self.global_batch % self.world:
            raise MarionetError(f"--batch-size {self.global_batch}: must be divisible by the {self.world} processes")
        self.dataset = family.training_dataset(config, data_dir, self.params)
        self._schedule()
        self._build(source)
        self.start = self._restore() if options.resume else 0
        if self.start >= self.total:
            raise MarionetError(f"{self.out_dir / STATE_FILE}: the run is already at step {self.start} of "
                                f"{self.total}; raise --steps to continue")
        self.step_count = self.saved_step = self.start
        self.signalled = False        # Ctrl-C or SIGTERM seen by this process
        self.stop_requested = False   # agreed by every process after a step

    def _check_out_dir(self) -> None:
        """Before any work: the run directory can be written, and holds a run exactly when resuming."""
        state = self.out_dir / STATE_FILE
        if self.options.resume and not state.is_file():
            raise MarionetError(f"{state}: nothing to resume (no such file)")
        if self.rank == 0 and not self.options.resume and state.exists():
            raise MarionetError(f"{self.out_dir}: already holds a run ({STATE_FILE}); use --resume or another --out")
        check_writable(self.out_dir / STATE_FILE)

    @staticmethod
    def _device(device: str, local_rank: int) -> torch.device:
        if device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise MarionetError(f"device {device}: CUDA is not available on this machine")
            if int(os.environ.get("WORLD_SIZE", "1")) > 1:
                device = f"cuda:{local_rank}"
        return torch.device(device)

    def _schedule(self) -> None:
        """Run length, learning-rate milestones and checkpoint/visual intervals, in steps."""
        p, o = self.params, self.options
        steps_per_epoch = max(1, len(self.dataset) // self.global_batch)
        self.total = int(o.steps) if o.steps else p.num_epochs * steps_per_epoch
        self.milestones = [round(m / p.num_epochs * self.total) for m in p.epoch_milestones]
        # The config's interval (in epochs) can exceed a short run: at most a twentieth of the run is lost.
        self.checkpoint_every = int(o.checkpoint_every or min(p.checkpoint_epochs * steps_per_epoch,
                                                              max(1, math.ceil(self.total / 20))))
        self.visual_every = int(o.visual_every or self.checkpoint_every)

    def _build(self, source: str) -> None:
        """Model, objective (DDP-wrapped with more than one process), one Adam + schedule per network."""
        o = self.options
        if o.download_vgg19 and find_vgg19_weights(self.params.vgg19_weights) is None:
            download_vgg19()
        torch.manual_seed(self.params.seed)
        self.model = build_model(self.config, source).to(self.device, o.dtype)
        if o.init is not None and not o.resume:
            load_init(self.model, o.init)
        if self.world > 1:
            self.model = convert_sync_batchnorm(self.model)
        self.objective = self.model.objective(self.params).to(self.device, o.dtype)
        self.memory_format = torch.channels_last if o.channels_last else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        self.objective.to(memory_format=self.memory_format)
        self.gan = self.objective.trains_discriminator
        self.amp = self._autocast_dtype()
        if self.amp is not None:   # frozen VGG19s would be cast again at every call: keep their weights in bf16
            for m in self.objective.modules():
                if getattr(m, "frozen_features", False):
                    m.features.to(self.amp)
        # Adam as in the official code; fused (one pass over each tensor) where PyTorch has it for the device
        fused = self.device.type in ("cpu", "cuda") and o.dtype in (torch.float32, torch.float64)
        self.optimizers = {name: torch.optim.Adam(net.parameters(), lr=self.params.learning_rate(name),
                                                  betas=(0.5, 0.999), fused=fused or None)
                           for name, net in self.model.trained_networks().items()}
        self.schedulers = {k: torch.optim.lr_scheduler.MultiStepLR(opt, self.milestones, gamma=0.1)
                           for k, opt in self.optimizers.items()}
        self.runner, self.disc_runner = self.objective, self.model.discriminator
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.runner = DDP(self.objective, device_ids=ids)
            if self.gan:
                self.disc_runner = DDP(self.model.discriminator, device_ids=ids)

    def _autocast_dtype(self) -> torch.dtype | None:
        """bfloat16 autocast around the forward passes, or None for the run's own dtype."""
        o = self.options
        if o.precision not in ("auto", "fp32", "bf16"):
            raise MarionetError(f"--precision {o.precision}: choose from auto, fp32, bf16")
        cuda = self.device.type == "cuda" and o.dtype == torch.float32
        wanted = o.precision if o.precision != "auto" else ("bf16" if cuda else "fp32")
        if wanted == "fp32":
            return None
        if o.dtype != torch.float32:
            raise MarionetError(f"--precision bf16: autocast needs float32 weights, not {o.dtype}")
        if self.device.type == "cpu":
            from marionet.inference import unavailable

            why = unavailable("bf16")
            if why:
                if self.rank == 0:
                    print(f"note: --precision bf16: {why}; training in fp32", file=sys.stderr)
                return None
        return torch.bfloat16

    # ------------------------------------------------------------------------------------- one step

    def to_device(self, batch: dict) -> dict:
        dtype = self.options.dtype
        return {k: (v.to(self.device, dtype if v.is_floating_point() else None, non_blocking=True,
                         memory_format=self.memory_format if v.dim() == 4 else torch.preserve_format)
                    if torch.is_tensor(v) else v) for k, v in batch.items()}

    def step(self, batch: dict) -> tuple[dict[str, float], dict]:
        """One optimisation step of every trained network on a batch already on the device
        -> (losses averaged over processes, the objective's generated outputs)."""
        amp = torch.autocast(self.device.type, dtype=self.amp) if self.amp is not None else nullcontext()
        generator_side = {k: opt for k, opt in self.optimizers.items() if k != "discriminator"}
        with amp:
            losses, generated = self.runner(batch)
        for opt in generator_side.values():
            opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        for opt in generator_side.values():
            opt.step()
        if self.gan:
            self.optimizers["discriminator"].zero_grad(set_to_none=True)
            with amp:
                d_losses = self.objective.discriminator_loss(batch, generated, self.disc_runner)
            sum(d_losses.values()).backward()
            self.optimizers["discriminator"].step()
            losses.update(d_losses)
        for name, scheduler in self.schedulers.items():
            if name != "discriminator" or self.gan:
                scheduler.step()
        self.step_count += 1
        # The stop request rides along with the losses, so that every process stops after the same step.
        values = torch.stack([v.detach().double() for v in losses.values()] +
                             [torch.tensor(float(self.signalled), dtype=torch.float64, device=self.device)])
        if self.world > 1:  # the mean over processes, i.e. the loss of the whole batch
            dist.all_reduce(values)
            values /= self.world
        self.stop_requested = bool(values[-1] > 0)
        last = dict(zip(losses, values[:-1].tolist()))
        if not all(math.isfinite(v) for v in last.values()):
            raise MarionetError(f"{self.out_dir}: the loss became {last} at step {self.step_count}; "
                                "lower the learning rates")
        return last, generated

    # ------------------------------------------------------------------------------------- the loop

    def run(self) -> dict:
        """The loop. Ctrl-C or SIGTERM end it after the current step with a checkpoint (``Interrupted``)."""
        from tqdm import tqdm

        o = self.options
        loader = DataLoader(SampleIds(self.dataset), batch_size=self.global_batch // self.world,
                            sampler=StepSampler(len(self.dataset), self.global_batch, self.start, self.total,
                                                self.params.seed, self.rank, self.world),
                            num_workers=min(4, (os.cpu_count() or 2) // 2) if o.workers is None else o.workers)
        logger = RunLogger(self.out_dir, self.config, self.start, self.objective.visualize, enabled=self.rank == 0)
        if self.rank == 0 and o.progress:
            for line in self.objective.describe():
                print(line, file=sys.stderr)
        bar = tqdm(total=self.total, initial=self.start, unit="step",
                   disable=None if o.progress and self.rank == 0 else True)
        self.model.train()
        last, t0 = {}, time.perf_counter()
        with self._deferred_interrupts():
            for batch in self._batches(loader):
                batch = self.to_device(batch)
                last, generated = self.step(batch)
                step = self.step_count
                bar.update(1)
                bar.set_postfix_str(f"loss {sum(last.values()):.4g}", refresh=False)  # the terms: log.csv
                logger.scalars(step, {**last, "lr": self.schedulers["generator"].get_last_lr()[0],
                                      "seconds": time.perf_counter() - t0})
                if step % self.visual_every == 0 or step == self.total:
                    logger.visual(step, batch, generated)
                stopping = self.stop_requested or (o.stop_after is not None and step >= o.stop_after)
                if step % self.checkpoint_every == 0 or step == self.total or stopping:
                    self.save()
                if stopping:
                    break
        bar.close()
        logger.close()
        if self.stop_requested or self.signalled:
            if self.step_count == 0:
                raise Interrupted("stopped before the first step; nothing to save")
            if self.saved_step != self.step_count:
                self.save()  # stopped while waiting for data: the last finished step
            raise Interrupted(f"saved {self.out_dir} at step {self.step_count} of {self.total}; continue with --resume")
        return last

    def _batches(self, loader):
        """The loader's batches until a stop; one process may also stop while it waits for data (several
        stop together, after a step), and when the signal killed the loader's workers."""
        batches = iter(loader)
        while not (self.stop_requested or (self.signalled and self.world == 1)):
            try:
                batch = next(batches)
            except StopIteration:
                return
            except Exception:  # noqa: BLE001 -- e.g. workers that died of the same Ctrl-C
                if self.signalled:
                    return
                raise
            yield batch

    @contextmanager
    def _deferred_interrupts(self):
        """Ctrl-C and SIGTERM request a stop after the current step (a second one stops at once)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def request_stop(signum, frame):
            if self.signalled:
                raise KeyboardInterrupt
            self.signalled = True

        previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    # ------------------------------------------------------------------------------------- checkpoints

    def save(self) -> None:
        """train_state.pt (to resume) and model.safetensors, from rank 0; every process waits for them."""
        if self.rank == 0:
            state = {name: net.state_dict() for name, net in self.model.networks.items()}
            state.update({f"optimizer_{k}": o.state_dict() for k, o in self.optimizers.items()})
            state.update({f"scheduler_{k}": s.state_dict() for k, s in self.schedulers.items()})
            state.update(step=self.step_count, epoch=self.step_count, rng_torch=torch.get_rng_state())
            atomic_write(self.out_dir / STATE_FILE, lambda tmp: torch.save(state, tmp))
            save_checkpoint(self.out_dir / MODEL_FILE, self.model, self.config)
        self.saved_step = self.step_count
        if self.world > 1:
            dist.barrier()

    def _restore(self) -> int:
        path = self.out_dir / STATE_FILE
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:
            raise MarionetError(f"{path}: not a readable training state ({str(e).splitlines()[0][:150]})") from None
        try:
            for name, net in self.model.networks.items():
                net.load_state_dict(state[name])
            for k, optimizer in self.optimizers.items():
                optimizer.load_state_dict(state[f"optimizer_{k}"])
                self.schedulers[k].load_state_dict(state[f"scheduler_{k}"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise MarionetError(f"{path}: does not match the config ({str(e).splitlines()[0][:200]})") from None
        torch.set_rng_state(state["rng_torch"])
        return int(state["step"])


class RunLogger:
    """log.csv (rewritten up to the resumed step on resume), TensorBoard scalars and PNG visuals; rank 0 only."""

    def __init__(self, out_dir: Path, config: dict, start_step: int, visualize, enabled: bool = True):
        self.enabled = enabled
        if not enabled:
            return
        self.out_dir, self.visualize = out_dir, visualize
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))
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
        path = self.out_dir / "visuals" / f"step-{step:07d}.png"
        path.parent.mkdir(exist_ok=True)
        image = self.visualize(batch, generated)
        atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))

    def close(self) -> None:
        if self.enabled:
            self.tb.close()
