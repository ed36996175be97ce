"""KP-mask against the official code's outputs (tests/fixtures/kpmask/README.md says how they were made).

The public API only (marionet.load / mask / animate), for the three mask variants, with the README's
tolerances; then the training-mode forward, and how official configs and checkpoints are recognised.
"""
import copy

import numpy as np
import pytest
import torch
import yaml

import marionet
from marionet.checkpoints import load_weights, read_checkpoint
from marionet.errors import MarionetError
from marionet.models import build_model, family_of
from marionet.models.fomm import KPDetector
from marionet.models.kpmask import KPMask, keypoint_mask

FRAME_TOL = 1e-4
MASK_TOL = {"heatmap": 1e-4, "softmax_no_kp": 2e-4, "circles": 1e-3}
SWITCHES = {"heatmap": {}, "circles": {"kp_after_softmax": True}, "softmax_no_kp": {"softmax_mask": True}}


@pytest.fixture(scope="module")
def data(fixtures):
    """(inputs, the official code's outputs)"""
    return tuple(dict(np.load(fixtures / "kpmask" / name)) for name in ("case.npz", "expected.npz"))


def variant_config(fixtures, variant):
    config = yaml.safe_load(open(fixtures / "kpmask" / "small.yaml"))
    config["model_params"]["kp_detector_params"].update(SWITCHES[variant])
    return config


def load(fixtures, variant, **kwargs):
    return marionet.load(config=variant_config(fixtures, variant), checkpoint=fixtures / "kpmask" / "small-cpk.pth.tar",
                         device="cpu", **kwargs)


@pytest.mark.parametrize("variant", list(SWITCHES))
def test_masks_and_absolute_frames(fixtures, data, variant):
    case, exp = data
    model = load(fixtures, variant)
    assert isinstance(model.model, KPMask) and "family" not in variant_config(fixtures, variant)
    mask = model.mask(case["source"])
    assert mask.shape == (32, 32) and mask.dtype == np.float32
    np.testing.assert_allclose(mask, exp[f"{variant}_mask_source"], atol=MASK_TOL[variant], rtol=0)
    for t, frame in enumerate(case["driving"]):
        np.testing.assert_allclose(model.mask(frame), exp[f"{variant}_mask_driving"][t], atol=MASK_TOL[variant], rtol=0)
    frames = model.animate(case["source"], case["driving"], relative=False, adapt_scale=False)
    assert frames.shape == (6, 64, 64, 3) and frames.dtype == np.float32
    np.testing.assert_allclose(frames, exp[f"{variant}_upscaled_prediction"], atol=FRAME_TOL, rtol=0)


def test_circles_relative_motion_as_the_official_loop_intends(fixtures, data):
    """FOMM-style relative keypoints, circles drawn on the unpadded S x S grid (the official loop
    crashes on the second frame; the fixture records what it computes with the bug removed)."""
    case, exp = data
    model = load(fixtures, "circles")
    frames = model.animate(case["source"], case["driving"], relative=True, adapt_scale=False)
    np.testing.assert_allclose(frames, exp["circles_relative_upscaled_prediction"], atol=FRAME_TOL, rtol=0)
    # relative and absolute really differ here, so the comparison above tells them apart
    difference = np.abs(exp["circles_relative_upscaled_prediction"] - exp["circles_upscaled_prediction"]).max()
    assert difference > 10 * FRAME_TOL


def test_relative_keypoints_masks_and_low_resolution_stage(fixtures, data):
    """The intermediate arrays of relative circles and of every variant's low-resolution stage."""
    case, exp = data
    model = load(fixtures, "circles", channels_last=False).model
    src = torch.from_numpy(case["source"]).permute(2, 0, 1)[None]
    drv = torch.from_numpy(case["driving"]).permute(0, 3, 1, 2)
    with torch.no_grad():
        kp_s, kp_d = model.detect(src), model.detect(drv)
        np.testing.assert_allclose(kp_s["value"][0].numpy(), exp["circles_kp_source"], atol=1e-4, rtol=0)
        np.testing.assert_allclose(kp_d["value"].numpy(), exp["circles_kp_driving"], atol=1e-4, rtol=0)
        moved = model.transfer_keypoints(kp_s, kp_d, {k: v[:1] for k, v in kp_d.items()}, relative=True)
    np.testing.assert_allclose(moved["value"].numpy(), exp["circles_relative_kp_norm"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(moved["source_mask"][0].numpy(), exp["circles_relative_mask_source"], atol=1e-3, rtol=0)
    np.testing.assert_allclose(moved["mask"].numpy(), exp["circles_relative_mask_driving"], atol=1e-3, rtol=0)
    for variant in SWITCHES:
        model = load(fixtures, variant, channels_last=False).model
        with torch.no_grad():
            raw = keypoint_mask(model.kp_detector, drv, model.mask_kind)["raw"]
            out = model.generate(src, model.detect(src), model.detect(drv))
        np.testing.assert_allclose(raw.numpy(), exp[f"{variant}_raw_driving"], atol=1e-3, rtol=0)
        np.testing.assert_allclose(out["low_res_prediction"].permute(0, 2, 3, 1).numpy(),
                                   exp[f"{variant}_low_res_prediction"], atol=FRAME_TOL, rtol=0)


def test_batch_size_and_memory_layout_do_not_change_frames(fixtures, data):
    case, exp = data
    model = load(fixtures, "heatmap", channels_last=False)
    frames = model.animate(case["source"], case["driving"], relative=False, batch_size=1)
    np.testing.assert_allclose(frames, exp["heatmap_upscaled_prediction"], atol=FRAME_TOL, rtol=0)


def test_training_forward(fixtures, data):
    """The official training forward: the generator in train mode (batch statistics) on the masks
    of the detector in train mode, as the official code leaves it. marionet keeps the detector in
    eval mode instead, and its masks then differ."""
    case, exp = data
    path = fixtures / "kpmask" / "small-cpk.pth.tar"
    states, _, official = read_checkpoint(path)
    config = variant_config(fixtures, "heatmap")
    model = build_model(config, states=states)
    load_weights(model, states, path, official)
    params = config["model_params"]
    drifting = KPDetector(**{k: v for k, v in params["kp_detector_params"].items() if k != "kp_after_softmax"},
                          **params["common_params"])
    drifting.load_state_dict(states["kp_detector"])
    to_tensor = lambda frames: torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)  # noqa: E731
    source = to_tensor([case["source"], case["driving"][0]])
    driving = to_tensor([case["driving"][3], case["driving"][5]])
    model.train()
    assert not model.kp_detector.training and model.generator.training
    with torch.no_grad():
        mask_source = keypoint_mask(drifting.train(), source, "heatmap")["mask"]
        mask_driving = keypoint_mask(drifting, driving, "heatmap")["mask"]
        out = model.generator(source, mask_source[:, None], mask_driving[:, None])
        frozen = model.mask(source)
    np.testing.assert_allclose(mask_source.numpy(), exp["train_heatmap_mask_source"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(mask_driving.numpy(), exp["train_heatmap_mask_driving"], atol=1e-4, rtol=0)
    for key, name in (("low_res_prediction", "low_res_prediction"), ("prediction", "upscaled_prediction")):
        np.testing.assert_allclose(out[key].permute(0, 2, 3, 1).numpy(), exp[f"train_heatmap_{name}"],
                                   atol=FRAME_TOL, rtol=0)
    assert (frozen - mask_source).abs().max() > 0.1


def test_recognised_from_official_configs_and_checkpoints(fixtures):
    config = variant_config(fixtures, "heatmap")
    assert family_of(config) == "kpmask"
    assert family_of(marionet.config.load_config("taichi-256-d")) == "kpmask"   # no kp_after_softmax
    for name in ("taichi-256-q", "taichi-256-softmax-q", "taichi-256-softmax-no-kp-q", "kpmask-puppets-64"):
        assert family_of(marionet.config.load_config(name)) == "kpmask", name
    for name in ("taichi-256", "puppets-64", "monkeynet-taichi"):
        assert family_of(marionet.config.load_config(name)) != "kpmask", name
    states, _, _ = read_checkpoint(fixtures / "kpmask" / "small-cpk.pth.tar")
    bare = copy.deepcopy(config)
    del bare["model_params"]["kp_detector_params"]["kp_after_softmax"]
    bare["model_params"]["common_params"].pop("scale_factor")
    assert family_of(bare) == "fomm" and family_of(bare, states) == "kpmask"


def test_official_checkpoint_loads_strictly(fixtures, tmp_path):
    """The unused down_blocks are part of the layout: a checkpoint without them does not load."""
    data = torch.load(fixtures / "kpmask" / "small-cpk.pth.tar", weights_only=True)
    data["generator"] = {k: v for k, v in data["generator"].items() if not k.startswith("down_blocks.")}
    torch.save(data, tmp_path / "cut.pth.tar")
    with pytest.raises(MarionetError, match=r"cut.pth.tar: does not match the config's generator: missing: "
                                            r"down_blocks.0.conv.weight") as e:
        marionet.load(config=variant_config(fixtures, "heatmap"), checkpoint=tmp_path / "cut.pth.tar")
    assert "\n" not in str(e.value)
