"""The perceptual pyramid loss (its backbones, the small-level rule, VGG19 weight loading) and the
keypoint separation prior."""
import pytest
import torch

from marionet.errors import MarionetError
from marionet.losses import ImagePyramid, PerceptualPyramidLoss, Vgg19, keypoint_separation_loss

WEIGHTS = [10, 10, 10, 10, 10]


def pyramids(seed=0, size=32):
    g = torch.Generator().manual_seed(seed)
    pyramid = ImagePyramid([1, 0.25])
    a, b = torch.rand(2, 3, size, size, generator=g), torch.rand(2, 3, size, size, generator=g)
    return pyramid(a), pyramid(b)


def test_pixel_backbone_is_weighted_l1_per_level():
    fake, real = pyramids()
    loss = PerceptualPyramidLoss(WEIGHTS, "pixels")(fake, real)
    expected = sum(50 * (fake[k] - real[k]).abs().mean() for k in fake)
    assert torch.allclose(loss, expected)
    assert float(PerceptualPyramidLoss(WEIGHTS, "pixels")(real, real)) == 0.0


def test_vgg_levels_too_small_for_vgg19_are_compared_in_pixels():
    torch.manual_seed(0)
    fake, real = pyramids(size=32)  # levels 32x32 and 8x8: VGG19 cannot pool 8x8 four times
    loss = PerceptualPyramidLoss(WEIGHTS, "random-vgg19")
    small = {"prediction_0.25": fake["prediction_0.25"]}, {"prediction_0.25": real["prediction_0.25"]}
    assert torch.allclose(loss(*small), 50 * (small[0]["prediction_0.25"] - small[1]["prediction_0.25"]).abs().mean())
    large = {"prediction_1": fake["prediction_1"]}, {"prediction_1": real["prediction_1"]}
    features = [(x - y).abs().mean() for x, y in zip(loss.vgg(large[0]["prediction_1"]), loss.vgg(large[1]["prediction_1"]))]
    assert torch.allclose(loss(*large), 10 * sum(features))
    fake["prediction_1"].requires_grad_(True)
    loss(fake, real).backward()
    assert fake["prediction_1"].grad.abs().sum() > 0


def test_vgg19_weights_in_torchvision_layout_load(tmp_path, monkeypatch):
    torch.manual_seed(1)
    source = Vgg19()
    path = tmp_path / "vgg19.pth"
    # torchvision's vgg19 also has a classifier, which is ignored
    torch.save({**{k: v for k, v in source.state_dict().items() if k.startswith("features.")},
                "classifier.0.weight": torch.zeros(4, 4)}, path)
    loss = PerceptualPyramidLoss(WEIGHTS, "vgg19", vgg_path=str(path))
    assert loss.backbone == "vgg19"
    assert all(torch.equal(a, b) for a, b in zip(loss.vgg.state_dict().values(), source.state_dict().values()))
    monkeypatch.setenv("MARIONET_VGG19_WEIGHTS", str(path))
    assert PerceptualPyramidLoss(WEIGHTS, "vgg19").backbone == "vgg19"


def test_bad_vgg19_weights_are_one_line_errors(tmp_path):
    bad = tmp_path / "vgg.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(MarionetError, match="vgg.pth: not a readable VGG19 state dict"):
        PerceptualPyramidLoss(WEIGHTS, "vgg19", vgg_path=str(bad))
    torch.save({"features.0.weight": torch.zeros(3, 3, 3, 3)}, bad)
    with pytest.raises(MarionetError, match="vgg.pth: not torchvision's vgg19 layout"):
        PerceptualPyramidLoss(WEIGHTS, "vgg19", vgg_path=str(bad))
    with pytest.raises(MarionetError, match="missing.pth: VGG19 weights file not found"):
        PerceptualPyramidLoss(WEIGHTS, "vgg19", vgg_path=str(tmp_path / "missing.pth"))


def test_without_weights_it_falls_back_to_pixels_and_says_why(monkeypatch, tmp_path):
    monkeypatch.delenv("MARIONET_VGG19_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    loss = PerceptualPyramidLoss(WEIGHTS, "vgg19")
    assert loss.backbone == "pixels" and loss.vgg is None
    assert "no VGG19 weights found" in loss.description and "falls back to a pixel-space L1 pyramid" in loss.description
    (tmp_path / "checkpoints").mkdir()
    torch.save({f"features.{k}": v for k, v in Vgg19().features.state_dict().items()},
               tmp_path / "checkpoints" / "vgg19-dcbb9e9d.pth")
    found = PerceptualPyramidLoss(WEIGHTS, "vgg19")                  # torch.hub's cache is looked at
    assert found.backbone == "vgg19" and "vgg19-dcbb9e9d.pth" in found.description


def test_keypoint_separation_pushes_only_close_keypoints_apart():
    apart = torch.tensor([[[-0.5, 0.0], [0.5, 0.0], [0.0, 0.5]]])
    assert float(keypoint_separation_loss(apart, 0.2)) == 0.0
    close = torch.tensor([[[0.0, 0.0], [0.05, 0.0], [0.9, 0.9]]], requires_grad=True)
    loss = keypoint_separation_loss(close, 0.2)
    assert float(loss.detach()) == pytest.approx(2 * 0.15 / 6)  # one close pair, counted both ways, over 6 ordered pairs
    loss.backward()
    assert close.grad[0, 0, 0] > 0 and close.grad[0, 1, 0] < 0  # descending moves them apart along x
    assert float(close.grad[0, 2].abs().sum()) == 0.0
    same = torch.zeros(1, 2, 2, requires_grad=True)  # coincident keypoints: finite loss and gradient
    keypoint_separation_loss(same, 0.2).backward()
    assert torch.isfinite(same.grad).all()


def test_fomm_objective_adds_the_separation_term_when_weighted(monkeypatch):
    import os
    import warnings

    import yaml

    from marionet.models import build_model

    with open(os.path.join(os.path.dirname(__file__), "configs", "tiny-fomm.yaml")) as f:
        config = yaml.safe_load(f)
    tp = config["train_params"]
    torch.manual_seed(0)
    model = build_model(config)
    batch = {"source": torch.rand(2, 3, 64, 64), "driving": torch.rand(2, 3, 64, 64), "seed": torch.arange(2)}
    with warnings.catch_warnings():  # no VGG19 weights here: the pixel fallback, said once per process
        warnings.simplefilter("ignore")
        assert "keypoint_separation" not in model.objective(model.train_params(config)).generator_loss(batch)[0]
    tp["loss_weights"]["keypoint_separation"] = 10
    tp["keypoint_separation_distance"] = 5.0  # wider than the image: every pair is too close
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        losses, generated = model.objective(model.train_params(config)).generator_loss(batch)
    kp = torch.cat([generated["kp_source"]["value"], generated["kp_driving"]["value"]])
    assert torch.allclose(losses["keypoint_separation"], 10 * keypoint_separation_loss(kp, 5.0))
    assert float(losses["keypoint_separation"]) > 10
