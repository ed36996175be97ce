"""FOMM against the official code's outputs (tests/fixtures/fomm/README.md says how they were made)."""
import warnings

import numpy as np
import pytest
import torch
import yaml

import marionet
from marionet.checkpoints import load_weights, read_checkpoint
from marionet.models import build_model

KP_TOL, FRAME_TOL, WARP_TOL = 1e-5, 2e-5, 1e-4


@pytest.fixture(scope="module")
def data(fixtures):
    d = fixtures / "fomm"
    return dict(np.load(d / "case.npz")), dict(np.load(d / "expected.npz"))


def config(fixtures, align_corners):
    cfg = yaml.safe_load(open(fixtures / "fomm" / "small.yaml"))
    cfg["model_params"]["common_params"]["align_corners"] = align_corners
    return cfg


@pytest.fixture(scope="module")
def official(fixtures):
    """The official code on a current PyTorch (grid_sample align_corners=False)."""
    return marionet.load(checkpoint=fixtures / "fomm" / "small-cpk.pth.tar", config=config(fixtures, False))


def test_keypoints(official, data):
    case, exp = data
    kp = official.detect(case["source"])
    assert kp["value"].shape == (10, 2) and kp["jacobian"].shape == (10, 2, 2)
    np.testing.assert_allclose(kp["value"], exp["kp_source_value"][0], atol=KP_TOL, rtol=0)
    np.testing.assert_allclose(kp["jacobian"], exp["kp_source_jacobian"][0], atol=KP_TOL, rtol=0)
    for t, frame in enumerate(case["driving"]):
        kp = official.detect(frame)
        np.testing.assert_allclose(kp["value"], exp["kp_driving_value"][t, 0], atol=KP_TOL, rtol=0)
        np.testing.assert_allclose(kp["jacobian"], exp["kp_driving_jacobian"][t, 0], atol=KP_TOL, rtol=0)


def test_read_only_frames_are_accepted_silently(official, data):
    case, _ = data
    frame = np.array(case["source"])
    frame.flags.writeable = False  # as np.asarray(PIL image) gives
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kp = official.detect(frame)
    np.testing.assert_array_equal(kp["value"], official.detect(np.array(case["source"]))["value"])


@pytest.mark.parametrize("mode", ["relative", "absolute"])
def test_frames(official, data, mode):
    case, exp = data
    relative = mode == "relative"
    out = official.animate(case["source"], case["driving"], relative=relative, adapt_scale=relative)
    assert out.shape == exp[f"pred_{mode}"].shape and out.dtype == np.float32
    np.testing.assert_allclose(out, exp[f"pred_{mode}"], atol=FRAME_TOL, rtol=0)


def test_default_align_corners_matches_training_convention(fixtures, data):
    case, exp = data
    model = marionet.load(checkpoint=fixtures / "fomm" / "small-cpk.pth.tar", config=fixtures / "fomm" / "small.yaml")
    assert model.model.align_corners is True  # the default, as the released weights were trained
    out = model.animate(case["source"], case["driving"])
    np.testing.assert_allclose(out, exp["variant_align_corners_true_pred_relative"], atol=FRAME_TOL, rtol=0)
    # The two conventions really differ here, so the test above tells them apart.
    assert np.abs(exp["variant_align_corners_true_pred_relative"] - exp["pred_relative"]).max() > 10 * FRAME_TOL


def test_batch_size_and_memory_layout_do_not_change_frames(fixtures, data):
    case, exp = data
    model = marionet.load(checkpoint=fixtures / "fomm" / "small-cpk.pth.tar", config=config(fixtures, False),
                          channels_last=False)
    out = model.animate(case["source"], case["driving"], batch_size=1)
    np.testing.assert_allclose(out, exp["pred_relative"], atol=FRAME_TOL, rtol=0)


@pytest.mark.parametrize("mode", ["relative", "absolute"])
def test_normalised_keypoints_and_intermediates(fixtures, data, mode):
    """Frame 0 through the networks directly: transferred keypoints, flow, masks, occlusion, warps."""
    from marionet.motion import movement_scale, transfer_keypoints

    case, exp = data
    model = marionet.load(checkpoint=fixtures / "fomm" / "small-cpk.pth.tar", config=config(fixtures, False),
                          channels_last=False).model
    src = torch.from_numpy(case["source"]).permute(2, 0, 1)[None]
    drv = torch.from_numpy(case["driving"]).permute(0, 3, 1, 2)
    with torch.no_grad():
        kp_s, kp_d = model.kp_detector(src), model.kp_detector(drv)
        kp_0 = {k: v[:1] for k, v in kp_d.items()}
        relative = mode == "relative"
        scale = movement_scale(kp_s, kp_0) if relative else 1.0
        if relative:
            assert scale == pytest.approx(float(exp["adapt_movement_scale"]), abs=1e-5)
        kp_n = transfer_keypoints(kp_s, kp_d, kp_0, relative=relative, scale=scale)
        np.testing.assert_allclose(kp_n["value"].numpy(), exp[f"kp_norm_{mode}_value"][:, 0], atol=KP_TOL, rtol=0)
        np.testing.assert_allclose(kp_n["jacobian"].numpy(), exp[f"kp_norm_{mode}_jacobian"][:, 0], atol=KP_TOL, rtol=0)
        kp_n0 = {k: v[:1] for k, v in kp_n.items()}
        out = model.generator(src, kp_driving=kp_n0, kp_source=kp_s)
    for key, tol in [("occlusion_map", FRAME_TOL), ("mask", FRAME_TOL), ("deformation", FRAME_TOL),
                     ("sparse_deformed", WARP_TOL), ("deformed", WARP_TOL)]:
        np.testing.assert_allclose(out[key].numpy(), exp[f"{mode}_f0_{key}"], atol=tol, rtol=0, err_msg=key)
    np.testing.assert_allclose(out["prediction"][0].permute(1, 2, 0).numpy(), exp[f"pred_{mode}"][0], atol=FRAME_TOL, rtol=0)


def test_discriminator(fixtures, data):
    case, exp = data
    path = fixtures / "fomm" / "small-cpk.pth.tar"
    cfg = config(fixtures, False)
    model = build_model(cfg).eval()
    states, _, official = read_checkpoint(path)
    load_weights(model, states, path, official, networks=("generator", "kp_detector", "discriminator"))
    src = torch.from_numpy(case["source"]).permute(2, 0, 1)[None]
    with torch.no_grad():
        kp = model.kp_detector(src)
        out = model.discriminator({"prediction_1": src}, kp=kp)
    np.testing.assert_allclose(out["prediction_map_1"].numpy(), exp["disc_source_prediction_map"], atol=FRAME_TOL, rtol=0)
    for i, fmap in enumerate(out["feature_maps_1"]):
        np.testing.assert_allclose(fmap.numpy(), exp[f"disc_source_feature_map_{i}"], atol=FRAME_TOL, rtol=0)
