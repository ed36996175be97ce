"""KP-mask: masks on known maps, the refiner's detach, the frozen detector through training (weights
and batch-norm statistics), resume and DDP, --init rules, the CLI end to end and its bad input."""
import copy
import json

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import yaml
from safetensors.torch import load_file

import marionet
from marionet.checkpoints import load_init, read_checkpoint, save_checkpoint
from marionet.config import load_config
from marionet.data.puppets import synthesize
from marionet.errors import MarionetError
from marionet.models import build_model
from marionet.models.kpmask import CIRCLE_VARIANCE, KPMask, masks_from_logits, normalise_and_pad
from marionet.train import Trainer, RunOptions, train
from test_bad_input import run_cli, snapshot
from test_train import _ddp_worker, assert_training_moved, free_port


@pytest.fixture(scope="module")
def paths(fixtures):
    return {"config": fixtures / "kpmask" / "small.yaml", "official": fixtures / "kpmask" / "small-cpk.pth.tar",
            "fomm": fixtures / "fomm" / "small-cpk.pth.tar", "monkeynet": fixtures / "monkey-net" / "small-cpk.pth.tar"}


@pytest.fixture()
def config(paths):
    config = yaml.safe_load(paths["config"].read_text())
    config["dataset_params"]["augmentation_params"] = {"flip_param": {"horizontal_flip": True, "time_flip": True}}
    return config


@pytest.fixture(scope="module")
def puppets(tmp_path_factory):
    root = tmp_path_factory.mktemp("kpmask") / "puppets"
    synthesize(root, videos=4, frames=6, size=64, kind="humanoid", seed=3, pairs=2, test_fraction=0.5)
    return root


def write(path, config):
    path.write_text(yaml.safe_dump(config))
    return path


# ---------------------------------------------------------------------------------------------- masks

def test_mask_variants_on_known_maps():
    """Two keypoint maps of 10 x 10, each peaked at a known pixel, padded to 16 x 16."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(1, 2, 10, 10))
    peaks = [(2, 7), (6, 1)]                                       # (row, column)
    for k, (r, c) in enumerate(peaks):
        logits[0, k, r, c] += 20.0                                 # softmax at temperature 0.1 is then one-hot
    t = torch.from_numpy(logits).float()

    heatmap = masks_from_logits(t, 0.1, "heatmap", (16, 16))["mask"][0].numpy()
    raw = logits[0].sum(0)
    assert np.all(heatmap[:3] == 0) and np.all(heatmap[-3:] == 0) and np.all(heatmap[:, :3] == 0)
    np.testing.assert_allclose(heatmap[3:13, 3:13], (raw - raw.min()) / (raw.max() - raw.min()), atol=1e-6)

    softmax = masks_from_logits(t, 0.1, "softmax", (16, 16))
    hot = np.zeros((10, 10))
    for r, c in peaks:
        hot[r, c] = 1
    np.testing.assert_allclose(softmax["mask"][0, 3:13, 3:13].numpy(), hot, atol=1e-6)
    grid = np.linspace(-1, 1, 10)
    np.testing.assert_allclose(softmax["value"][0].numpy(), [[grid[c], grid[r]] for r, c in peaks], atol=1e-6)

    circles = masks_from_logits(t, 0.1, "circles", (16, 16))["mask"][0].numpy()
    xs, ys = np.meshgrid(grid, grid)
    drawn = sum(np.exp(-0.5 * ((xs - grid[c]) ** 2 + (ys - grid[r]) ** 2) / CIRCLE_VARIANCE) for r, c in peaks)
    np.testing.assert_allclose(circles[3:13, 3:13], (drawn - drawn.min()) / (drawn.max() - drawn.min()), atol=1e-5)
    brightest = {np.unravel_index(i, (16, 16)) for i in np.argsort(circles, axis=None)[-2:]}
    assert brightest == {(r + 3, c + 3) for r, c in peaks}


def test_normalisation_is_per_sample_and_safe_on_constant_maps():
    raw = torch.stack([torch.arange(16.0).reshape(4, 4), 100 * torch.arange(16.0).reshape(4, 4) - 7,
                       torch.full((4, 4), 3.0)])
    mask = normalise_and_pad(raw, (6, 8))
    assert mask.shape == (3, 6, 8) and torch.isfinite(mask).all()
    assert torch.equal(mask[0], mask[1]) and mask[0].max() == 1 and mask[0, 1:5, 2:6].min() == 0
    assert mask[2].abs().max() == 0 and mask[:, 0].abs().max() == 0 and mask[:, :, :2].abs().max() == 0


def test_relative_motion_only_for_circles(config):
    model = build_model(config)
    kp = model.detect(torch.rand(2, 3, 64, 64))
    with pytest.raises(MarionetError, match="heatmap mask .* cannot be moved; use absolute motion"):
        model.transfer_keypoints(kp, kp, kp, relative=True)
    assert model.transfer_keypoints(kp, kp, kp, relative=False)["mask"] is kp["mask"]


# ---------------------------------------------------------------------------------------------- generator

def test_refiner_loss_sends_no_gradient_into_the_low_resolution_stage(config):
    torch.manual_seed(0)
    generator = build_model(config).generator.train()
    refiner = [p for name, p in generator.named_parameters() if name.startswith(("hourglass", "final_hourglass"))]
    low_res_stage = [p for name, p in generator.named_parameters()
                     if not name.startswith(("hourglass", "final_hourglass", "down_blocks"))]
    source = torch.rand(2, 3, 64, 64)
    masks = [torch.rand(2, 1, 32, 32, requires_grad=True) for _ in range(2)]
    out = generator(source, *masks)
    out["prediction"].square().mean().backward(retain_graph=True)
    assert all(p.grad is None for p in low_res_stage) and all(m.grad is None for m in masks)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in refiner)
    generator.zero_grad(set_to_none=True)
    out["low_res_prediction"].square().mean().backward()
    assert all(p.grad is None for p in refiner)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in low_res_stage)
    assert not any(p.requires_grad for p in generator.down_blocks.parameters())   # built, never called


# ---------------------------------------------------------------------------------------------- training

def test_training_keeps_the_detector_frozen_in_eval_mode(paths, config, puppets, tmp_path):
    """The detector of --init (a FOMM checkpoint) is left exactly as loaded by two steps: weights and
    batch-norm statistics; the generator, from random weights, is the only network trained."""
    run = tmp_path / "run"
    losses = train(copy.deepcopy(config), puppets, run, steps=2, batch_size=2, workers=0, progress=False,
                   init=paths["fomm"])
    assert set(losses) == {"perceptual_low_res", "perceptual"} and all(np.isfinite(v) for v in losses.values())
    detector = torch.load(paths["fomm"], weights_only=True)["kp_detector"]
    saved = load_file(run / "model.safetensors")
    assert any("running_mean" in k for k in detector)
    for key, value in detector.items():
        assert torch.equal(saved[f"kp_detector.{key}"], value), key
    state = torch.load(run / "train_state.pt", weights_only=True)
    assert [k for k in state if k.startswith("optimizer_")] == ["optimizer_generator"]
    torch.manual_seed(0)
    fresh = build_model(config).generator.state_dict()
    assert any(not torch.equal(saved[f"generator.{k}"], v) for k, v in fresh.items() if v.is_floating_point())


def test_resume_equals_uninterrupted(paths, config, puppets, tmp_path):
    options = dict(steps=3, checkpoint_every=2, batch_size=2, workers=0, progress=False, init=paths["fomm"])
    train(copy.deepcopy(config), puppets, tmp_path / "full", **options)
    train(copy.deepcopy(config), puppets, tmp_path / "split", **options, stop_after=2)
    train(copy.deepcopy(config), puppets, tmp_path / "split", **{**options, "init": None}, resume=True)
    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(tmp_path / "split" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_ddp_two_processes_equal_one_process(config, puppets, tmp_path):
    """Also checks that the unused (frozen) down_blocks do not stall DDP's gradient reduction."""
    torch.set_num_threads(1)
    config["train_params"]["seed"] = 1
    train(copy.deepcopy(config), puppets, tmp_path / "single", steps=2, checkpoint_every=2, batch_size=4, workers=0,
          progress=False, dtype=torch.float64)
    mp.spawn(_ddp_worker, args=(2, free_port(), copy.deepcopy(config), str(puppets), str(tmp_path / "ddp")), nprocs=2,
             join=True)
    a, b = load_file(tmp_path / "single" / "model.safetensors"), load_file(tmp_path / "ddp" / "model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a if a[k].is_floating_point()) < 1e-7
    assert_training_moved(config, tmp_path, a)                           # ...and it trained


def test_init_rules(paths, config):
    """A FOMM checkpoint gives the detector only; a KP-mask checkpoint gives both networks."""
    model = build_model(config)
    fomm, _, _ = read_checkpoint(paths["fomm"])
    states, optional = model.adapt_init(fomm)
    assert set(states) == {"kp_detector", "generator"} and states["generator"] == {} and optional == ("generator.",)
    official, _, _ = read_checkpoint(paths["official"])
    assert model.adapt_init(official) == (official, ())


def test_init_from_the_builtin_puppets_and_a_fomm_run_directory(tmp_path):
    """kpmask-puppets-64's detector is the built-in puppets FOMM's: --init by name or from a run directory
    copies that detector exactly (batch-norm statistics included) and leaves the generator as built."""
    puppets = marionet.load("puppets").model
    save_checkpoint(tmp_path / "fomm-run" / "model.safetensors", puppets, marionet.load("puppets").config)
    expected = puppets.kp_detector.state_dict()
    for init in ("puppets", tmp_path / "fomm-run"):
        torch.manual_seed(0)
        model = build_model(load_config("kpmask-puppets-64"))
        fresh = copy.deepcopy(model.generator.state_dict())
        load_init(model, init)
        got = model.kp_detector.state_dict()
        assert model.kp_detector.loaded and got.keys() == expected.keys()
        assert all(torch.equal(got[k], expected[k].to(got[k].dtype)) for k in got), init
        assert all(torch.equal(v, fresh[k]) for k, v in model.generator.state_dict().items())
        model.train()
        assert not model.kp_detector.training and model.generator.training


def test_training_without_init_warns_about_the_random_detector(config, puppets, tmp_path):
    trainer = Trainer(copy.deepcopy(config), puppets, tmp_path / "run", RunOptions(steps=1, workers=0))
    lines = trainer.objective.describe()
    assert any("random weights; give a FOMM checkpoint with --init" in line for line in lines)
    assert any("equivariance_value" in line for line in lines)   # official keys the objective does not use


# ---------------------------------------------------------------------------------------------- CLI

def test_cli_train_animate_reconstruct(paths, config, puppets, tmp_path):
    source = puppets / "test" / sorted(p.name for p in (puppets / "test").iterdir())[0]
    code, err = run_cli(["train", "--config", write(tmp_path / "kp.yaml", config), "--data", puppets,
                         "--out", tmp_path / "run", "--steps", "1", "--batch-size", "2", "--workers", "0",
                         "--init", paths["fomm"]])
    assert code == 0 and "random weights" not in err
    frame = sorted(source.glob("*.png"))[0]
    code, _ = run_cli(["animate", "--checkpoint", tmp_path / "run", "--source", frame, "--driving", source,
                       "--output", tmp_path / "out", "--absolute"])
    assert code == 0 and len(list((tmp_path / "out").glob("*.png"))) == 6
    before = snapshot(tmp_path)
    code, err = run_cli(["animate", "--checkpoint", tmp_path / "run", "--source", frame, "--driving", source,
                         "--output", tmp_path / "relative.gif"])
    assert code == 2 and "cannot be moved; use absolute motion (--absolute" in err
    assert len(err.strip().splitlines()) == 1
    assert snapshot(tmp_path) == before
    for extra in ([], ["--pairs"]):
        out = tmp_path / f"rec{len(extra)}"
        code, _ = run_cli(["reconstruct", "--checkpoint", tmp_path / "run", "--data", puppets, "--out", out, *extra])
        assert code == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["videos"] == 2 and 0 < metrics["l1"] < 1 and "akd" in metrics
    # an official checkpoint with its config, circles: relative motion works
    circles = copy.deepcopy(config)
    circles["model_params"]["kp_detector_params"]["kp_after_softmax"] = True
    code, _ = run_cli(["animate", "--config", write(tmp_path / "circles.yaml", circles), "--checkpoint",
                       paths["official"], "--source", frame, "--driving", source, "--output", tmp_path / "circles.gif"])
    assert code == 0 and (tmp_path / "circles.gif").stat().st_size > 0


def test_builtin_model_by_name():
    model = marionet.load("kpmask-puppets")
    assert isinstance(model.model, KPMask) and model.model.mask_kind == "heatmap"
    assert model.mask(np.random.rand(64, 64, 3).astype(np.float32)).shape == (32, 32)
    frames = model.animate(np.random.rand(64, 64, 3), np.random.rand(2, 64, 64, 3), relative=False)
    assert frames.shape == (2, 64, 64, 3)


@pytest.mark.parametrize("change, message", [
    ({"generator_params": {"num_down_blocks": 2}}, "num_down_blocks: 2 up blocks must bring the scale_factor 0.5"),
    ({"generator_params": {"max_features": 8}}, "max_features: 8 is less than block_expansion * 2**num_down_blocks"),
    ({"kp_detector_params": {"kp_after_softmax": True, "softmax_mask": True}}, "softmax_mask applies to"),
    ({"kp_detector_params": {"kp_after_softmax": "yes"}}, "kp_after_softmax: must be true or false"),
    ({"kp_detector_params": {"tempreture": 0.1}}, "kp_detector_params: got an unexpected keyword argument"),
    ({"common_params": {"scale_factor": 2}}, "common_params.scale_factor: must be a number in (0, 1]"),
    ({"generator_params": {"hourglass_max_features": 0}}, "hourglass_max_features: must be a whole number >= 1"),
    ({"train_params": {"loss_weights": {"perceptual": [0, 0]}}}, "KP-mask trains with the perceptual loss only"),
])
def test_bad_configs_are_one_line_errors(config, puppets, tmp_path, change, message):
    for section, values in change.items():
        target = config if section == "train_params" else config["model_params"]
        target[section].update(values)
    path = write(tmp_path / "bad.yaml", config)
    before = snapshot(tmp_path)
    code, err = run_cli(["train", "--config", path, "--data", puppets, "--out", tmp_path / "run", "--steps", "1"])
    assert code == 2 and message in err and str(path) in err and len(err.strip().splitlines()) == 1, err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("init, message", [
    ("monkeynet", "does not match the config's kp_detector"),
    ("no-detector", "the checkpoint has no 'kp_detector' weights"),
])
def test_bad_init_is_a_one_line_error(paths, config, puppets, tmp_path, init, message):
    if init == "no-detector":
        torch.save({"generator": torch.load(paths["fomm"], weights_only=True)["generator"]}, tmp_path / "g.pth.tar")
        checkpoint = tmp_path / "g.pth.tar"
    else:
        checkpoint = paths[init]
    path = write(tmp_path / "kp.yaml", config)
    before = snapshot(tmp_path)
    code, err = run_cli(["train", "--config", path, "--data", puppets, "--out", tmp_path / "run", "--steps", "1",
                         "--init", checkpoint])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert snapshot(tmp_path) == before
