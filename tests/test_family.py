"""The family interface: a toy family registered here runs through train, animate and reconstruct;
typed train_params; build_model's error translation."""
import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

import marionet
from marionet.cli import main
from marionet.config import TrainParams, load_config, parse_section
from marionet.data.puppets import synthesize
from marionet.errors import MarionetError
from marionet.losses import Objective
from marionet.models import FAMILIES, ModelFamily, build_model, register
from marionet.train import train


# ---------------------------------------------------------------------------------------------- a toy family

class ToyDetector(nn.Module):
    """K keypoints at the soft-argmax of K learned 1x1-conv maps."""

    def __init__(self, num_kp):
        super().__init__()
        self.maps = nn.Conv2d(3, num_kp, 1)

    def forward(self, x):
        b, _, h, w = x.shape
        heat = self.maps(x).flatten(2).softmax(-1).reshape(b, -1, h, w)
        ys, xs = torch.linspace(-1, 1, h), torch.linspace(-1, 1, w)
        return {"value": torch.stack([(heat.sum(2) * xs).sum(-1), (heat.sum(3) * ys).sum(-1)], -1)}


class ToyGenerator(nn.Module):
    """The source, recoloured by a 1x1 conv, shifted by the mean keypoint motion."""

    def __init__(self):
        super().__init__()
        self.colour = nn.Conv2d(3, 3, 1)

    def encode_source(self, source):
        return self.colour(source)

    def forward(self, source, kp_driving, kp_source, source_features=None):
        features = self.colour(source) if source_features is None else source_features
        shift = (kp_driving["value"] - kp_source["value"]).mean(1)                    # (B, 2)
        b, (h, w) = kp_driving["value"].shape[0], features.shape[2:]
        theta = torch.eye(2, 3).repeat(b, 1, 1)
        theta[:, :, 2] = -shift
        grid = nn.functional.affine_grid(theta, (b, 3, h, w), align_corners=True)
        return {"prediction": torch.sigmoid(nn.functional.grid_sample(features.expand(b, -1, -1, -1), grid,
                                                                        align_corners=True))}


class ToyObjective(Objective):
    def generator_loss(self, batch):
        kp_s, kp_d = self.kp_detector(batch["source"]), self.kp_detector(batch["driving"])
        generated = self.generator(batch["source"], kp_d, kp_s)
        generated.update(kp_source=kp_s, kp_driving=kp_d)
        return {"l1": (generated["prediction"] - batch["driving"]).abs().mean()}, generated


class Toy(ModelFamily):
    family = "toy"

    def __init__(self, model_params, with_discriminator=True):
        super().__init__()
        self.kp_detector = ToyDetector(model_params["num_kp"])
        self.generator = ToyGenerator()
        self.discriminator = None

    def objective(self, train_params):
        return ToyObjective(self)


TOY = {"family": "toy", "model_params": {"num_kp": 4}, "dataset_params": {"frame_shape": [32, 32, 3]},
       "train_params": {"batch_size": 2, "lr": 1e-2}}


@pytest.fixture()
def toy_family():
    register(Toy)
    yield Toy
    FAMILIES.pop("toy")


@pytest.fixture(scope="module")
def puppets(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "puppets"
    synthesize(root, videos=4, frames=6, size=32, kind="humanoid", seed=5)
    return root


def test_a_registered_family_trains_animates_and_reconstructs(toy_family, puppets, tmp_path, capsys):
    config = copy.deepcopy(TOY)
    last = train(config, puppets, tmp_path / "run", steps=3, workers=0, progress=False)
    assert config == TOY                                            # the caller's config is not changed
    assert set(last) == {"l1"} and np.isfinite(last["l1"])
    pipe = marionet.load(tmp_path / "run")
    assert isinstance(pipe.model, Toy)
    frames = pipe.animate(np.random.rand(40, 40, 3), np.random.rand(3, 32, 32, 3))
    assert frames.shape == (3, 32, 32, 3) and frames.min() >= 0 and frames.max() <= 1
    assert main(["reconstruct", "--checkpoint", str(tmp_path / "run"), "--data", str(puppets),
                 "--out", str(tmp_path / "rec")]) == 0
    metrics = json.loads((tmp_path / "rec" / "metrics.json").read_text())
    assert metrics["videos"] == 1 and 0 <= metrics["l1"] < 1
    assert main(["train", "--config", str(_write(tmp_path / "toy.yaml", TOY)), "--data", str(puppets),
                 "--out", str(tmp_path / "cli-run"), "--steps", "1", "--workers", "0"]) == 0
    assert "finished" in capsys.readouterr().out


def _write(path, config):
    import yaml
    path.write_text(yaml.safe_dump(config))
    return path


# ---------------------------------------------------------------------------------------------- typed params

def test_train_params_parse_with_their_family_defaults():
    fomm = build_model(load_config("vox-256"), with_discriminator=False)
    params = fomm.train_params(load_config("vox-256"))
    assert params.loss_weights.perceptual == (10, 10, 10, 10, 10) and params.transform_params.points_tps == 5
    assert params.learning_rate("generator") == 2e-4 and params.checkpoint_epochs == 50
    monkey = build_model(load_config("monkeynet-puppets-64"), with_discriminator=False)
    default = monkey.train_params({"model_params": {}})
    assert default.loss_weights.reconstruction_list == [10, 10, 10, 10, 1] and default.batch_size == 4


@pytest.mark.parametrize("section, key, value, message", [
    ("train_params", "num_epoch", 3, "unknown key 'num_epoch'"),
    ("train_params", "batch_size", "four", "train_params.batch_size: expected a whole number"),
    ("train_params", "batch_size", 0, "train_params.batch_size: must be at least 1"),
    ("loss_weights", "perceptual", 10, "loss_weights.perceptual: expected a list"),
    ("loss_weights", "perceptul", [1], "unknown key 'perceptul'"),
])
def test_bad_train_params_are_one_line_errors_naming_key_and_file(tmp_path, section, key, value, message):
    config = load_config("puppets-64")
    target = config["train_params"] if section == "train_params" else config["train_params"]["loss_weights"]
    target[key] = value
    path = _write(tmp_path / "bad.yaml", config)
    with pytest.raises(MarionetError) as excinfo:
        train(str(path), tmp_path, tmp_path / "run")
    assert str(path) in str(excinfo.value) and message in str(excinfo.value) and "\n" not in str(excinfo.value)


def test_numbers_written_as_yaml_strings_are_read():
    params = parse_section(TrainParams, {"lr": "2e-4", "scales": [1, 0.5]}, "train_params")
    assert params.lr == 2e-4 and params.scales == (1, 0.5)


def test_build_model_reports_config_problems_but_not_bugs(monkeypatch):
    config = load_config("puppets-64")
    config["model_params"]["kp_detector_params"]["tempreature"] = 0.1
    with pytest.raises(MarionetError, match="my.yaml: model_params.kp_detector_params: .*'tempreature'"):
        build_model(config, "my.yaml")

    def broken(self, *args, **kwargs):
        raise TypeError("a bug inside a constructor")

    from marionet.models import fomm
    monkeypatch.setattr(fomm.KPDetector, "__init__", broken)
    with pytest.raises(TypeError, match="a bug inside"):     # not turned into "model_params do not fit"
        build_model(load_config("puppets-64"), "my.yaml")
