"""`marionet reconstruct`: frames written per test video, metrics computed as documented."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from marionet.checkpoints import save_checkpoint
from marionet.cli import main
from marionet.data.puppets import synthesize
from marionet.models import build_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import yaml

    root = tmp_path_factory.mktemp("rec")
    data = root / "data"
    synthesize(data, videos=4, frames=6, size=64, kind="humanoid", seed=11, test_fraction=0.5)
    with open(os.path.join(os.path.dirname(__file__), "configs", "tiny-fomm.yaml")) as f:
        config = yaml.safe_load(f)
    torch.manual_seed(0)
    save_checkpoint(root / "model.safetensors", build_model(config), config)
    return root, data


def load_frames(folder):
    return np.stack([np.asarray(Image.open(folder / f)) for f in sorted(os.listdir(folder))]).astype(np.float64) / 255


def test_reconstruct_writes_frames_and_metrics(setup, tmp_path):
    root, data = setup
    out = tmp_path / "out"
    assert main(["reconstruct", "--checkpoint", str(root / "model.safetensors"), "--data", str(data),
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    videos = sorted(os.listdir(data / "test"))
    assert metrics["videos"] == len(videos) == 2 and metrics["frames"] == 12
    assert {"l1", "baseline_l1", "akd", "baseline_akd", "mkr", "baseline_mkr"} <= set(metrics)
    l1, base = [], []
    for v in videos:
        fake, real = load_frames(out / v), load_frames(data / "test" / v)
        assert fake.shape == real.shape == (6, 64, 64, 3)
        l1.append(np.abs(fake - real).mean(axis=(1, 2, 3)))
        base.append(np.abs(real[:1] - real).mean(axis=(1, 2, 3)))
    assert metrics["baseline_l1"] == pytest.approx(np.concatenate(base).mean(), abs=1e-6)
    assert metrics["l1"] == pytest.approx(np.concatenate(l1).mean(), abs=2e-3)  # PNGs are rounded to 1/255
    assert metrics["akd"] > 0 and metrics["baseline_akd"] >= 0


def test_reconstruct_needs_one_model(setup, tmp_path, capsys):
    _, data = setup
    assert main(["reconstruct", "--data", str(data), "--out", str(tmp_path / "o")]) == 2
    assert "give --model NAME or --checkpoint FILE" in capsys.readouterr().err


def test_cross_identity_pairs(tmp_path, capsys):
    """--pairs: every ordered pair of a test group; A's frames are the ground truth of A in B's motion."""
    data = tmp_path / "pairs"
    synthesize(data, videos=6, frames=5, size=64, kind="humanoid", seed=4, pairs=3, test_fraction=0.5)
    out = tmp_path / "out"
    assert main(["reconstruct", "--model", "puppets", "--data", str(data), "--out", str(out), "--pairs"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"] == "cross-identity" and metrics["videos"] == 6 and metrics["frames"] == 30
    names = sorted(os.listdir(out))
    assert len([n for n in names if "~" in n]) == 6
    a, b = names[0].split("~")
    assert a != b and load_frames(out / names[0]).shape == (5, 64, 64, 3)
    assert 0 < metrics["l1"] and metrics["baseline_l1"] > 0 and "akd" in metrics
    assert main(["reconstruct", "--model", "puppets", "--data", str(data), "--out", str(tmp_path / "rel"),
                 "--pairs", "--relative", "--max-videos", "2"]) == 0
    relative = json.loads((tmp_path / "rel" / "metrics.json").read_text())
    assert relative["motion"] == "relative" and relative["videos"] == 2
    setup_data = tmp_path / "unpaired"
    synthesize(setup_data, videos=2, frames=2, size=64, kind="humanoid", seed=4)
    assert main(["reconstruct", "--model", "puppets", "--data", str(setup_data), "--out", str(tmp_path / "x"),
                 "--pairs"]) == 2
    assert "pairs.csv: no such file" in capsys.readouterr().err
