"""Training: the loss goes down, resume continues bit for bit, DDP equals one process, bad data is skipped."""
import copy
import csv
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import yaml
from safetensors.torch import load_file

from marionet.cli import main
from marionet.data.puppets import synthesize
from marionet.train import train

HERE = os.path.dirname(__file__)


@pytest.fixture(scope="module")
def puppets(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "puppets"
    synthesize(root, videos=6, frames=12, size=64, kind="humanoid", seed=3)
    return root


@pytest.fixture()
def config():
    with open(os.path.join(HERE, "configs", "tiny-fomm.yaml")) as f:
        return yaml.safe_load(f)


def log_rows(run):
    with open(run / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_loss_decreases(puppets, config, tmp_path):
    """Overfit a fixed pair of frames: the reconstruction (perceptual) loss must fall clearly."""
    config["train_params"]["loss_weights"].update(generator_gan=0, equivariance_value=0, equivariance_jacobian=0)
    config["dataset_params"]["augmentation_params"] = {}
    config["train_params"]["lr_generator"] = config["train_params"]["lr_kp_detector"] = 1e-3
    config["train_params"]["epoch_milestones"] = []
    train(config, puppets, tmp_path / "run", steps=30, checkpoint_every=100, batch_size=4, workers=0, progress=False)
    losses = [float(r["perceptual"]) for r in log_rows(tmp_path / "run")]
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5]), losses


def test_resume_equals_uninterrupted(puppets, config, tmp_path):
    full, split = tmp_path / "full", tmp_path / "split"
    train(copy.deepcopy(config), puppets, full, steps=4, checkpoint_every=2, batch_size=2, workers=0, progress=False)
    train(copy.deepcopy(config), puppets, split, steps=4, checkpoint_every=2, batch_size=2, workers=0, progress=False,
          stop_after=3)
    assert [r["step"] for r in log_rows(split)] == ["1", "2", "3"]
    # The run stopped at step 3 (checkpointing there); resuming must replay steps 4.. exactly.
    assert main(["train", "--config", os.path.join(HERE, "configs", "tiny-fomm.yaml"), "--data", str(puppets),
                 "--out", str(split), "--resume", "--steps", "4", "--checkpoint-every", "2", "--batch-size", "2",
                 "--workers", "0"]) == 0
    a, b = log_rows(full), log_rows(split)
    assert [r["step"] for r in b] == ["1", "2", "3", "4"]
    for ra, rb in zip(a, b):
        for key in ra:
            if key != "seconds":
                assert ra[key] == rb[key], (ra["step"], key)
    wa, wb = load_file(full / "model.safetensors"), load_file(split / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    state = torch.load(split / "train_state.pt", weights_only=True)
    assert state["step"] == 4 and {"optimizer_generator", "scheduler_kp_detector", "rng_torch"} <= set(state)


def test_existing_run_is_not_overwritten(puppets, config, tmp_path, capsys):
    train(config, puppets, tmp_path / "run", steps=1, batch_size=2, workers=0, progress=False)
    assert main(["train", "--config", os.path.join(HERE, "configs", "tiny-fomm.yaml"), "--data", str(puppets),
                 "--out", str(tmp_path / "run"), "--steps", "2"]) == 2
    assert "already holds a run" in capsys.readouterr().err


def _ddp_worker(rank, world, port, config, data, out, options=None):
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    train(config, data, out, steps=2, checkpoint_every=2, batch_size=4, workers=0, progress=False,
          **(options or {"dtype": torch.float64}))
    torch.distributed.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_equal_one_process_on_the_whole_batch(puppets, config, tmp_path):
    """In float64, so that the comparison is not drowned by float32 rounding (which Adam amplifies
    into full-size steps for parameters whose true gradient is zero, like conv biases before BatchNorm)."""
    torch.set_num_threads(1)
    single = tmp_path / "single"
    train(copy.deepcopy(config), puppets, single, steps=2, checkpoint_every=2, batch_size=4, workers=0, progress=False,
          dtype=torch.float64)
    ddp = tmp_path / "ddp"
    mp.spawn(_ddp_worker, args=(2, free_port(), copy.deepcopy(config), str(puppets), str(ddp)), nprocs=2, join=True)
    a, b = load_file(single / "model.safetensors"), load_file(ddp / "model.safetensors")
    init = load_file(_initial_weights(config, tmp_path))
    moved = max((a[k] - init[k]).abs().max().item() for k in a if a[k].is_floating_point())
    diff = max((a[k] - b[k]).abs().max().item() for k in a if a[k].is_floating_point())
    assert moved > 1e-4  # training changed the weights...
    assert diff < 1e-7, diff  # ...and both runs changed them the same way (BatchNorm synchronised too)
    la, lb = log_rows(single), log_rows(ddp)
    for ra, rb in zip(la, lb):  # logged losses are the means over all processes
        for key in ra:
            if key != "seconds":
                assert float(ra[key]) == pytest.approx(float(rb[key]), rel=1e-7), key


def assert_training_moved(config, tmp_path, weights: dict) -> None:
    """``weights`` (a run's, float) are not the initial ones of ``config``: a DDP comparison is not vacuous."""
    init = load_file(_initial_weights(config, tmp_path))
    assert max((weights[k] - init[k].to(weights[k].dtype)).abs().max().item()
               for k in weights if weights[k].is_floating_point()) > 1e-4


def _initial_weights(config, tmp_path):
    from marionet.checkpoints import save_checkpoint
    from marionet.models import build_model

    torch.manual_seed(config["train_params"].get("seed", 0))
    path = tmp_path / "init.safetensors"
    save_checkpoint(path, build_model(config), config)
    return path


def test_corrupt_video_is_skipped(puppets, config, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(puppets, data)
    (data / "train" / "broken.mp4").write_bytes(os.urandom(4000))
    with pytest.warns(UserWarning, match="broken.mp4"):
        train(config, data, tmp_path / "run", steps=6, batch_size=4, workers=0, progress=False)
    assert len(log_rows(tmp_path / "run")) == 6


def test_init_fine_tunes_from_a_checkpoint(puppets, config, tmp_path):
    """--init: training starts from the given weights (here a finished run's), not from random ones."""
    train(copy.deepcopy(config), puppets, tmp_path / "first", steps=2, batch_size=2, workers=0, progress=False)
    config["train_params"]["seed"] = 1  # its own random initialisation differs from the first run's
    train(copy.deepcopy(config), puppets, tmp_path / "tuned", steps=1, batch_size=2, workers=0, progress=False,
          init=tmp_path / "first")
    first, tuned = load_file(tmp_path / "first" / "model.safetensors"), load_file(tmp_path / "tuned" / "model.safetensors")
    own_init = load_file(_initial_weights(config, tmp_path))
    key = "generator.final.weight"
    assert (tuned[key] - first[key]).abs().max() < 1e-3  # one Adam step away from the first run's weights
    assert (tuned[key] - own_init[key]).abs().max() > 1e-2  # far from where seed 1 alone would start


def test_init_adds_a_background_motion_network_as_the_identity(puppets, config, tmp_path):
    """A model trained without background motion fine-tunes with it, its dense motion moved to full
    resolution: the new network starts as the identity and is trained, the learned weights carry over
    (the anti-aliasing kernel is not learned); any other missing weight is still an error."""
    import marionet
    from marionet.errors import MarionetError

    train(copy.deepcopy(config), puppets, tmp_path / "first", steps=1, batch_size=2, workers=0, progress=False)
    with_bg = copy.deepcopy(config)
    with_bg["model_params"]["generator_params"]["background_motion"] = {"block_expansion": 4, "max_features": 16,
                                                                        "num_blocks": 3}
    with_bg["model_params"]["generator_params"]["dense_motion_params"]["scale_factor"] = 1
    train(copy.deepcopy(with_bg), puppets, tmp_path / "bg", steps=3, batch_size=2, workers=0, progress=False,
          init=tmp_path / "first")
    tuned = marionet.load(tmp_path / "bg").model.generator
    first = load_file(tmp_path / "first" / "model.safetensors")
    key = "dense_motion_network.mask.weight"
    assert (tuned.state_dict()[key] - first[f"generator.{key}"]).abs().max() < 1e-3  # 3 Adam steps away
    assert tuned.bg_motion.affine.weight.abs().sum() > 0  # trained
    frames = torch.rand(2, 3, 64, 64)
    assert (tuned.background(frames[:1], frames[1:]) - torch.eye(2, 3)).abs().max() < 0.1  # from the identity
    # ... and replacing the learned network by the weight-free search drops its weights only
    search = copy.deepcopy(with_bg)
    search["model_params"]["generator_params"]["background_motion"] = {"method": "search"}
    train(search, puppets, tmp_path / "search", steps=1, batch_size=2, workers=0, progress=False,
          init=tmp_path / "bg")
    searched = load_file(tmp_path / "search" / "model.safetensors")
    assert not any(k.startswith("generator.bg_motion.") for k in searched)
    bg_run = load_file(tmp_path / "bg" / "model.safetensors")
    assert (searched[f"generator.{key}"] - bg_run[f"generator.{key}"]).abs().max() < 1e-3
    bigger = copy.deepcopy(config)
    bigger["model_params"]["generator_params"]["num_bottleneck_blocks"] = 2
    with pytest.raises(MarionetError, match="missing: bottleneck.r1"):
        train(bigger, puppets, tmp_path / "bad", steps=1, batch_size=2, workers=0, progress=False, init=tmp_path / "first")


def test_default_checkpoint_interval_bounds_the_work_lost(puppets, config, tmp_path):
    """The config's interval (here 50 epochs) would save nothing before the end of a 100-step run."""
    from marionet.train import RunOptions, Trainer

    config["train_params"]["checkpoint_freq"] = 50
    trainer = Trainer(config, puppets, tmp_path / "run", RunOptions(steps=100, workers=0, progress=False))
    assert trainer.checkpoint_every == 5
    assert not (tmp_path / "run").exists()            # nothing is written before the run starts
    explicit = Trainer(config, puppets, tmp_path / "run", RunOptions(steps=100, checkpoint_every=30))
    assert explicit.checkpoint_every == 30


def test_bf16_training_matches_float32_to_bf16_rounding(puppets, config, tmp_path, capsys):
    """--precision bf16: autocast where the CPU has bfloat16 dot products (the same losses to bf16
    rounding, weights and optimiser still float32); elsewhere a note and float32, the same run."""
    from marionet.errors import MarionetError
    from marionet.inference import unavailable

    options = dict(steps=2, checkpoint_every=100, batch_size=2, workers=0, progress=False)
    train(copy.deepcopy(config), puppets, tmp_path / "fp32", **options)
    train(copy.deepcopy(config), puppets, tmp_path / "bf16", precision="bf16", **options)
    a, b = log_rows(tmp_path / "fp32"), log_rows(tmp_path / "bf16")
    weights = load_file(tmp_path / "bf16" / "model.safetensors")
    assert all(v.dtype == torch.float32 for v in weights.values() if v.is_floating_point())
    if unavailable("bf16"):
        assert "training in fp32" in capsys.readouterr().err
        assert [r["perceptual"] for r in a] == [r["perceptual"] for r in b]
    else:
        for ra, rb in zip(a, b):
            for key in ("perceptual", "equivariance_value"):
                assert float(rb[key]) == pytest.approx(float(ra[key]), rel=0.05), (key, ra[key], rb[key])
            assert ra["perceptual"] != rb["perceptual"]           # bf16 did run
    with pytest.raises(MarionetError, match="float32 weights"):
        train(copy.deepcopy(config), puppets, tmp_path / "f64", precision="bf16", dtype=torch.float64, **options)


def test_bf16_training_under_ddp(puppets, config, tmp_path):
    """Two processes with --precision bf16: the synchronised batch norm takes bf16 activations
    (statistics in float32) and the run ends with finite losses and float32 weights."""
    mp.spawn(_ddp_worker, args=(2, free_port(), copy.deepcopy(config), str(puppets), str(tmp_path / "ddp"),
                                {"precision": "bf16"}), nprocs=2, join=True)
    rows = log_rows(tmp_path / "ddp")
    assert len(rows) == 2 and all(np.isfinite(float(v)) for r in rows for k, v in r.items() if k != "step")
    weights = load_file(tmp_path / "ddp" / "model.safetensors")
    assert all(v.dtype == torch.float32 for v in weights.values() if v.is_floating_point())


def test_anti_aliasing_runs_in_float32_under_autocast():
    """The image pyramid's blur leaves bf16 autocast (oneDNN's bf16 depthwise path with 29x29 kernels
    takes minutes): the same values as float32, in the input's dtype."""
    from marionet.nn.blocks import AntiAliasInterpolation2d

    blur = AntiAliasInterpolation2d(3, 0.125)
    x = torch.rand(1, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = blur(x)
    assert y.dtype == torch.float32 and torch.equal(y, blur(x))
    assert blur(x.double()).dtype == torch.float64
