"""Monkey-Net training (the official losses through marionet's trainer) and image-to-video
(`marionet train-predictor`, then `marionet predict`), on tiny models and tiny puppet data."""
from __future__ import annotations

import copy
import csv
import math
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open

from marionet.cli import main
from marionet.config import load_config
from marionet.data.datasets import FramesDataset
from marionet.data.puppets import synthesize
from marionet.data.video import open_video
from marionet.errors import MarionetError
from marionet.models import build_model
from marionet.train import train

CONFIG = Path(__file__).parent / "configs" / "tiny-monkeynet.yaml"


@pytest.fixture(scope="module")
def config():
    with open(CONFIG) as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def puppets(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "puppets"
    synthesize(root, videos=6, frames=12, size=64, kind="humanoid", seed=3)
    return root


@pytest.fixture(scope="module")
def run(config, puppets, tmp_path_factory):
    """A 3-step Monkey-Net run through the trainer: (run folder, last losses)."""
    out = tmp_path_factory.mktemp("runs") / "run"
    last = train(copy.deepcopy(config), puppets, out, steps=3, checkpoint_every=3, batch_size=2, workers=0,
                 progress=False)
    return out, last


def test_trainer_runs_the_monkeynet_objective(run):
    out, last = run
    assert {"reconstruction", "feature_matching", "reconstruction_deformed", "gen_gan", "disc_gan"} <= set(last)
    with open(out / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows] == ["1", "2", "3"]
    for row in rows:
        for key in ("reconstruction", "feature_matching", "gen_gan", "disc_gan"):
            assert math.isfinite(float(row[key])) and float(row[key]) > 0, (row["step"], key)
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        keys = list(f.keys())
    assert any(k.startswith("discriminator.") for k in keys) and any(k.startswith("kp_detector.") for k in keys)
    assert (out / "visuals" / "step-0000003.png").is_file()


def _batch(puppets, config, n=2):
    dataset = FramesDataset(root_dir=puppets, image_shape=config["dataset_params"]["image_shape"], is_train=True)
    items = [dataset[i] for i in range(n)]
    return {"source": torch.stack([it["source"] for it in items]),
            "driving": torch.stack([it["driving"] for it in items]), "seed": torch.arange(n)}


def test_gradients_follow_the_official_paths(config, puppets):
    torch.manual_seed(0)
    model = build_model(config)
    objective = model.objective(model.train_params(config))
    disc = set(map(id, model.discriminator.parameters()))
    assert not disc & set(map(id, objective.parameters()))   # the discriminator is trained on its own
    batch = _batch(puppets, config)

    losses, generated = objective(batch)
    sum(losses.values()).backward()
    kp_grads = [p.grad for p in model.kp_detector.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in kp_grads)
    assert sum(g.abs().sum().item() for g in kp_grads) > 0      # keypoints learn from the generator loss
    assert all(p.grad is None for p in model.discriminator.parameters())

    model.zero_grad(set_to_none=True)
    d_losses = objective.discriminator_loss(batch, generated)
    sum(d_losses.values()).backward()
    assert all(p.grad is None for p in model.kp_detector.parameters())  # detached keypoints...
    assert all(p.grad is None for p in model.generator.parameters())    # ...and prediction
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.discriminator.parameters())

    # Feature matching alone, with the generator fed detached keypoints: the detector still learns
    # through the discriminator's keypoint embedding (real and fake branches), as in the official code.
    cfg = copy.deepcopy(config)
    tp = cfg["train_params"]
    tp["detach_kp_generator"] = True
    tp["loss_weights"].update(reconstruction=[0, 10, 10, 10, 1], reconstruction_deformed=0, generator_gan=0)
    model.zero_grad(set_to_none=True)
    losses, _ = model.objective(model.train_params(cfg))(batch)
    assert set(losses) == {"feature_matching"}
    losses["feature_matching"].backward()
    assert sum(p.grad.abs().sum().item() for p in model.kp_detector.parameters() if p.grad is not None) > 0


def test_build_model_passes_normalization_params(config):
    cfg = copy.deepcopy(config)
    assert build_model(cfg).normalization_params.move_location is True
    cfg["animate_params"] = {"normalization_params": {"clip_mean": True, "move_location": False}}
    params = build_model(cfg).normalization_params
    assert params.clip_mean and not params.move_location                 # animate_params first
    cfg["animate_params"]["normalization_params"] = {"use_relative_movement": True}
    with pytest.raises(MarionetError, match="my.yaml: .*use_relative_movement"):
        build_model(cfg, "my.yaml")
    fomm = load_config("puppets-64")   # FOMM ignores the (FOMM-style) keys it is handed
    assert build_model(fomm, with_discriminator=False).family == "fomm"


def test_shipped_puppet_config_builds_and_steps():
    cfg = load_config("monkeynet-puppets-64")
    model = build_model(cfg)
    objective = model.objective(model.train_params(cfg))
    batch = {"source": torch.rand(1, 3, 64, 64), "driving": torch.rand(1, 3, 64, 64), "seed": torch.arange(1)}
    losses, generated = objective(batch)
    assert generated["prediction"].shape == (1, 3, 64, 64)
    assert set(losses) == {"reconstruction", "feature_matching", "gen_gan"}


def test_train_predictor_then_predict(run, puppets, tmp_path, capsys):
    out, _ = run
    assert main(["train-predictor", "--checkpoint", str(out), "--data", str(puppets), "--steps", "10",
                 "--window", "8"]) == 0
    assert "wrote" in capsys.readouterr().out
    with safe_open(str(out / "predictor.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == "marionet-predictor/1"
    assert (meta["cell"], meta["num_kp"], meta["num_frames"], meta["num_features"]) == ('"gru"', "5", "8", "32")

    source = sorted((puppets / "train").rglob("*.png"))[0]
    video = tmp_path / "predicted.mp4"
    assert main(["predict", "--checkpoint", str(out), "--source", str(source), "--frames", "6",
                 "--output", str(video)]) == 0
    printed = capsys.readouterr().out
    with open_video(video) as reader:
        frames = list(reader)
    assert len(frames) == 6 and frames[0].shape == (64, 64, 3)
    displacement = float(re.search(r"mean keypoint displacement: ([0-9.]+)", printed).group(1))
    assert displacement > 0, printed


def test_missing_predictor_is_a_one_line_error(run, tmp_path, capsys):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run[0] / "model.safetensors", bare / "model.safetensors")
    source = tmp_path / "source.png"
    from PIL import Image
    Image.new("RGB", (64, 64), (200, 100, 50)).save(source)
    assert main(["predict", "--checkpoint", str(bare), "--source", str(source), "--frames", "4",
                 "--output", str(tmp_path / "out.mp4")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(bare / "predictor.safetensors") in err, err
    assert not (tmp_path / "out.mp4").exists()
