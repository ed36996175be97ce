"""Monkey-Net family: golden fixture from the official code, checkpoint errors, module behaviour,
and the keypoint-trajectory predictor."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import marionet
from marionet.checkpoints import load_weights, read_checkpoint
from marionet.config import load_config
from marionet.errors import MarionetError
from marionet.geometry import make_coordinate_grid
from marionet.models import FAMILIES, build_model, family_of
from marionet.models.monkeynet import (
    Discriminator, KPDetector, MonkeyNet, MovementEmbedding, clip_covariance, heatmap_to_gaussian,
    render_gaussians, smallest_singular_value)
from marionet.models.trajectory import KeypointPredictor, fit, make_windows, rollout

FIXTURE = Path(__file__).parent / "fixtures" / "monkey-net"
CHECKPOINT = FIXTURE / "small-cpk.pth.tar"
CONFIG = FIXTURE / "small.yaml"
CONFIG_DIR = Path(marionet.__file__).parent / "configs"

# Reachable max |diff| against the official float32 outputs (fixture README).
TOL_MEAN, TOL_COV, TOL_INTERNAL, TOL_IMAGE = 5e-5, 1e-3, 2e-4, 2e-3


def assert_close(got, expected, max_tol, mean_tol=1e-5, what=""):
    got = np.asarray(got, dtype=np.float32)
    assert got.shape == expected.shape, f"{what}: shape {got.shape} vs {expected.shape}"
    diff = np.abs(got - expected)
    assert diff.max() <= max_tol, f"{what}: max |diff| {diff.max():.3g} > {max_tol}"
    assert diff.mean() <= mean_tol, f"{what}: mean |diff| {diff.mean():.3g} > {mean_tol}"


# ----------------------------------------------------------------------------------------------
# Golden fixture, through the public API
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def case():
    return dict(np.load(FIXTURE / "case.npz"))


@pytest.fixture(scope="module")
def expected():
    return dict(np.load(FIXTURE / "expected.npz"))


@pytest.fixture(scope="module")
def pipe():
    return marionet.load(checkpoint=CHECKPOINT, config=CONFIG)


def test_fixture_config_uses_old_grid_sample_convention(pipe):
    # The official outputs were computed with align_corners=True (the pre-1.3 grid_sample).
    assert family_of(load_config(CONFIG)) == "monkeynet"
    assert isinstance(pipe.model, MonkeyNet) and pipe.model.align_corners is True
    assert pipe.frame_shape == (64, 64)   # from dataset_params.image_shape


def test_fixture_keypoints(pipe, case, expected):
    kp = pipe.detect(case["source"])
    assert set(kp) == {"value", "covariance"}
    assert kp["value"].shape == (10, 2) and kp["covariance"].shape == (10, 2, 2)
    assert_close(kp["value"], expected["kp_source_mean"], TOL_MEAN, 5e-6, "source means")
    assert_close(kp["covariance"], expected["kp_source_var"], TOL_COV, 1e-5, "source covariances")
    driving = [pipe.detect(frame) for frame in case["driving"]]
    assert_close(np.stack([k["value"] for k in driving]), expected["kp_driving_mean"], TOL_MEAN, 5e-6, "driving means")
    assert_close(np.stack([k["covariance"] for k in driving]), expected["kp_driving_var"], TOL_COV, 1e-5,
                 "driving covariances")


@pytest.mark.parametrize("mode", ["relative", "absolute"])
def test_fixture_transfer(pipe, case, expected, mode):
    # The config's normalization_params: move_location for relative, no movement_mult -> adapt_scale=False.
    frames = pipe.animate(case["source"], case["driving"], relative=mode == "relative", adapt_scale=False)
    assert frames.shape == (6, 64, 64, 3) and frames.dtype == np.float32
    assert_close(frames, expected[f"prediction_{mode}"], TOL_IMAGE, 1e-5, f"prediction_{mode}")


def test_fixture_reconstruction_streams_in_batches(pipe, case, expected):
    # Source = driving frame 0, every frame regenerated from its own keypoints; odd batch size on purpose.
    frames = np.stack(list(pipe.animate_stream(case["driving"][0], iter(case["driving"]), relative=False,
                                               batch_size=4)))
    assert_close(frames, expected["prediction_reconstruction"], TOL_IMAGE, 1e-5, "reconstruction")


def _keypoints(pipe, images):
    with torch.no_grad():
        kp = pipe.kp_detector(pipe.to_tensor(images))
    kp.pop("heatmap")
    return kp


def test_fixture_relative_keypoints_and_internals(pipe, case, expected):
    model = pipe.model
    source = pipe.to_tensor(case["source"])
    kp_source = _keypoints(pipe, case["source"])
    kp_driving = _keypoints(pipe, case["driving"])
    kp_initial = {k: v[:1] for k, v in kp_driving.items()}
    kp_norm = model.transfer_keypoints(kp_source, kp_driving, kp_initial, True, 1.0)
    assert_close(kp_norm["value"].numpy(), expected["kp_norm_relative_mean"], TOL_MEAN, 5e-6, "relative means")
    assert_close(kp_norm["covariance"].numpy(), expected["kp_norm_relative_var"], TOL_COV, 1e-5, "relative covariances")
    with torch.no_grad():
        out = model.generator(source, kp_driving={k: v[:1] for k, v in kp_norm.items()}, kp_source=kp_source)
    assert_close(out["deformation"][0].numpy(), expected["dm_relative_f0_deformation"], TOL_INTERNAL, 1e-5,
                 "relative deformation")


def test_fixture_absolute_internals(pipe, case, expected):
    model = pipe.model
    source = pipe.to_tensor(case["source"])
    kp_source = _keypoints(pipe, case["source"])
    kp_driving = _keypoints(pipe, case["driving"])
    with torch.no_grad():
        out = model.generator(source, kp_driving=kp_driving, kp_source=kp_source)
    assert_close(out["deformed"].permute(0, 2, 3, 1).numpy(), expected["deformed_absolute"], TOL_IMAGE, 1e-5,
                 "deformed source")
    assert_close(out["hourglass_out"][0].numpy(), expected["dm_absolute_f0_hourglass_out"], TOL_INTERNAL, 1e-5,
                 "dense-motion hourglass output")
    assert_close(out["deformation"][0].numpy(), expected["dm_absolute_f0_deformation"], TOL_INTERNAL, 1e-5,
                 "absolute deformation")
    assert_close(out["kp_embedding"][0].numpy(), expected["gen_absolute_f0_kp_embedding"], TOL_INTERNAL, 1e-5,
                 "keypoint embedding")
    assert_close(out["mask_embedding"][0, :18].numpy(), expected["dm_absolute_f0_mask_embedding_groups012"],
                 TOL_IMAGE, 1e-5, "mask embedding")
    # masks / residual flow are the softmax and the slice of the hourglass output
    logits = out["hourglass_out"][0]
    assert torch.allclose(out["mask"][0], torch.softmax(logits[:11], dim=0))
    assert torch.equal(out["residual_flow"][0], logits[11:].permute(1, 2, 0))


def test_fixture_discriminator(case, expected):
    config = load_config(CONFIG)
    model = build_model(config, str(CONFIG), with_discriminator=True).eval()
    states, _, official = read_checkpoint(CHECKPOINT)
    load_weights(model, states, CHECKPOINT, official, networks=("generator", "kp_detector", "discriminator"))
    frame = torch.from_numpy(case["driving"][:1]).permute(0, 3, 1, 2)
    with torch.no_grad():
        kp = model.kp_detector(frame)
        maps = model.discriminator(frame, kp_driving=kp, kp_source=kp)
    assert len(maps) == 6 and maps[0] is frame
    for i in range(1, 5):
        assert_close(maps[i][0].numpy(), expected[f"disc_f0_block{i}"], TOL_INTERNAL, 1e-5, f"block {i}")
    assert_close(maps[5][0].numpy(), expected["disc_f0_score"], TOL_INTERNAL, 1e-5, "score")


# ----------------------------------------------------------------------------------------------
# Checkpoint conversion and errors
# ----------------------------------------------------------------------------------------------

def test_registered_family():
    assert FAMILIES["monkeynet"] is MonkeyNet and MonkeyNet.family == "monkeynet"


def _one_line_error(excinfo):
    message = str(excinfo.value)
    assert "\n" not in message and str(CHECKPOINT) in message
    return message


def test_checkpoint_with_fomm_config_fails_cleanly():
    with pytest.raises(MarionetError) as excinfo:
        marionet.load(checkpoint=CHECKPOINT, config=CONFIG_DIR / "vox-256.yaml")
    message = _one_line_error(excinfo)
    assert "does not match" in message and "missing" in message


def test_checkpoint_with_wrong_num_kp_fails_cleanly():
    config = yaml.safe_load(CONFIG.read_text())
    config["model_params"]["common_params"]["num_kp"] = 5
    with pytest.raises(MarionetError) as excinfo:
        marionet.load(checkpoint=CHECKPOINT, config=config)
    assert "shape mismatch" in _one_line_error(excinfo)


def test_checkpoint_with_other_monkeynet_config_fails_cleanly():
    with pytest.raises(MarionetError) as excinfo:
        marionet.load(checkpoint=CHECKPOINT, config=CONFIG_DIR / "monkeynet-nemo.yaml")
    assert "shape mismatch" in _one_line_error(excinfo)


def test_convert_official_layout():
    states, _, official = read_checkpoint(CHECKPOINT)
    assert official
    generator = states["generator"]
    assert generator["refinement_module.conv-last.weight"].shape == (3, 21, 1, 1, 1)
    converted = MonkeyNet.convert_official("generator", generator)
    assert converted["refinement_module.conv_last.weight"].shape == (3, 21, 1, 1)
    assert not any(v.dim() == 5 for v in converted.values())
    assert len(converted) == len(generator) == 214
    # and back: the official layout is reproduced exactly
    back = MonkeyNet.to_official("generator", converted)
    assert set(back) == set(generator) and all(torch.equal(back[k], generator[k]) for k in generator)


def test_convert_official_fills_missing_batchnorm_counter_and_rejects_temporal_kernels():
    states, _, _ = read_checkpoint(CHECKPOINT)
    kp = {k: v for k, v in states["kp_detector"].items() if not k.endswith("num_batches_tracked")}
    converted = MonkeyNet.convert_official("kp_detector", kp)
    model = MonkeyNet(load_config(CONFIG)["model_params"], with_discriminator=False)
    model.kp_detector.load_state_dict(converted, strict=True)
    bad = dict(states["kp_detector"])
    bad["predictor.encoder.down_blocks.0.conv.weight"] = torch.zeros(16, 3, 3, 3, 3)
    with pytest.raises(MarionetError, match="depth-1"):
        MonkeyNet.convert_official("kp_detector", bad)


SHIPPED = {  # config -> (generator state-dict entries, a characteristic converted weight shape)
    "nemo": (214, ("video_decoder.up_blocks.0.conv.weight", (512, 522, 3, 3))),
    "taichi": (214, ("video_decoder.up_blocks.0.conv.weight", (512, 1034, 3, 3))),
    "bair": (214, ("dense_motion_module.group_blocks.0.conv.weight", (44, 4, 1, 1))),
    "moving-gif": (228, ("dense_motion_module.hourglass.decoder.conv.weight", (13, 98, 3, 3))),
    "vox": (242, ("video_decoder.up_blocks.0.conv.weight", (1024, 1034, 3, 3))),
}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_configs_build_the_official_layout(name):
    config = load_config(CONFIG_DIR / f"monkeynet-{name}.yaml")
    assert config["family"] == "monkeynet" and family_of(config) == "monkeynet"
    with torch.device("meta"):   # shapes only, no memory
        model = MonkeyNet.from_config(config)
    state = model.generator.state_dict()
    count, (key, shape) = SHIPPED[name]
    assert len(state) == count and tuple(state[key].shape) == shape
    assert len(model.kp_detector.state_dict()) == 72
    assert tuple(model.kp_detector.state_dict()["predictor.decoder.conv.weight"].shape)[0] == 10
    assert tuple(model.discriminator.state_dict()["down_blocks.0.conv.weight"].shape) == (64, 13, 4, 4)
    assert state["refinement_module.conv_last.weight"].shape == (3, 45, 1, 1)
    assert model.normalization_params.move_location == (name != "moving-gif")


# ----------------------------------------------------------------------------------------------
# Modules (tiny random models)
# ----------------------------------------------------------------------------------------------

K = 5


def tiny_params(**dense_motion):
    dm = dict(block_expansion=4, max_features=16, num_blocks=3, use_mask=True, use_correction=True,
              num_group_blocks=1,
              mask_embedding_params=dict(use_heatmap=True, use_deformed_source_image=True, use_difference=True,
                                         heatmap_type="difference", norm_const=100))
    dm.update(dense_motion)
    return {
        "common_params": {"num_kp": K, "kp_variance": "matrix", "num_channels": 3},
        "kp_detector_params": dict(temperature=0.1, block_expansion=4, max_features=16, num_blocks=3,
                                   clip_variance=0.001),
        "generator_params": dict(block_expansion=4, max_features=16, num_blocks=3, num_refinement_blocks=1,
                                 dense_motion_params=dm,
                                 kp_embedding_params=dict(use_heatmap=True, norm_const=100, heatmap_type="difference")),
        "discriminator_params": dict(kp_embedding_params=dict(norm_const=100), block_expansion=4, max_features=16,
                                     num_blocks=3),
    }


def random_kp(b, k=K, seed=0):
    g = torch.Generator().manual_seed(seed)
    factor = torch.randn(b, k, 2, 2, generator=g) * 0.2
    return {"value": torch.rand(b, k, 2, generator=g) * 1.6 - 0.8,
            "covariance": factor @ factor.transpose(-1, -2) + 0.01 * torch.eye(2)}


@pytest.mark.parametrize("kp_variance", ["matrix", "single", 0.05])
def test_kp_detector_variants(kp_variance):
    torch.manual_seed(0)
    detector = KPDetector(block_expansion=4, num_kp=K, num_channels=3, max_features=16, num_blocks=3,
                          temperature=0.1, kp_variance=kp_variance, clip_variance=0.001).eval()
    out = detector(torch.rand(2, 3, 32, 32))
    assert out["value"].shape == (2, K, 2) and out["covariance"].shape == (2, K, 2, 2)
    assert out["heatmap"].shape == (2, K, 32, 32)
    assert torch.allclose(out["heatmap"].sum(dim=(2, 3)), torch.ones(2, K))
    cov = out["covariance"]
    assert torch.allclose(cov, cov.transpose(-1, -2))
    if kp_variance == "matrix":
        assert (smallest_singular_value(cov) >= 0.001 * (1 - 1e-4)).all()
    else:
        assert torch.equal(cov[..., 0, 1], torch.zeros(2, K)) and torch.equal(cov[..., 0, 0], cov[..., 1, 1])
        if kp_variance == 0.05:
            assert torch.allclose(cov[..., 0, 0], torch.full((2, K), 0.05))


def test_gaussian_fit_recovers_a_rendered_gaussian():
    kp = {"value": torch.tensor([[[0.2, -0.1]]]),
          "covariance": torch.tensor([[[[0.02, 0.01], [0.01, 0.03]]]])}
    heat = render_gaussians(kp, (96, 96))
    assert heat.max() <= 1 and heat.max() > 0.99
    fitted = heatmap_to_gaussian(heat / heat.sum(dim=(2, 3), keepdim=True))
    assert torch.allclose(fitted["value"], kp["value"], atol=2e-3)
    assert torch.allclose(fitted["covariance"], kp["covariance"], atol=2e-3)


def test_covariance_clipping():
    g = torch.Generator().manual_seed(0)
    factor = torch.randn(500, 2, 2, generator=g) * torch.logspace(-4, 0, 500)[:, None, None]
    cov = factor @ factor.transpose(-1, -2)
    cov[:5] = torch.tensor([[1.0, 0.999999], [0.999999, 1.0]])   # nearly singular and strongly elongated
    exact = torch.linalg.svdvals(cov.double())[:, -1]
    assert torch.allclose(smallest_singular_value(cov.double()), exact, rtol=1e-6, atol=1e-12)
    # float64: exact for every matrix, however elongated
    assert (torch.linalg.svdvals(clip_covariance(cov.double(), 0.001))[:, -1] >= 0.001 * (1 - 1e-9)).all()
    # float32: a rescaled matrix with condition number c keeps its smallest singular value to ~c * 6e-8
    clipped = clip_covariance(cov, 0.001)
    assert torch.isfinite(clipped).all()
    smallest = torch.linalg.svdvals(clipped.double())[:, -1]
    moderate = torch.linalg.cond(cov.double()) < 1e3
    assert moderate.sum() > 100 and (smallest[moderate] >= 0.001 * (1 - 1e-4)).all()
    assert (smallest >= 0.001 * (1 - 0.1)).all()
    kept = exact > 0.001   # already wide enough: untouched
    assert kept.any() and torch.allclose(clipped[kept], cov[kept])
    # the clip rescales the whole matrix: orientation and aspect ratio are kept
    small = ~kept
    ratio = clipped[small] / cov[small]
    assert torch.allclose(ratio, ratio[:, :1, :1].expand_as(ratio), rtol=1e-4)


def test_movement_embedding_layout():
    embedding = MovementEmbedding(num_kp=K, kp_variance="matrix", num_channels=3, use_deformed_source_image=True,
                                  use_difference=True, add_bg_feature_map=True, heatmap_type="difference",
                                  norm_const=100)
    assert embedding.out_channels == (K + 1) * 6
    source = torch.rand(1, 3, 16, 16)
    kp_source, kp_driving = random_kp(1, seed=1), random_kp(3, seed=2)
    out = embedding(source, kp_driving, kp_source).reshape(3, K + 1, 6, 16, 16)
    assert torch.equal(out[:, 0, :3], torch.zeros(3, 3, 16, 16))                 # bg: no heatmap, no shift
    assert torch.allclose(out[:, 0, 3:], source.expand(3, 3, 16, 16), atol=1e-6)  # bg: the source itself
    shift = kp_source["value"] - kp_driving["value"]
    assert torch.allclose(out[:, 1:, 1:3], shift[..., None, None].expand(3, K, 2, 16, 16))
    expected_heat = (render_gaussians(kp_driving, (16, 16)) - render_gaussians(kp_source, (16, 16))) / 100
    assert torch.allclose(out[:, 1:, 0], expected_heat)
    # identical keypoints: zero heatmap and difference, untranslated source
    same = embedding(source, kp_source, kp_source).reshape(1, K + 1, 6, 16, 16)
    assert torch.equal(same[:, :, :3], torch.zeros(1, K + 1, 3, 16, 16))
    assert torch.allclose(same[:, :, 3:], source[:, None].expand(1, K + 1, 3, 16, 16), atol=1e-6)
    # per-map sum normalisation (BAIR)
    summed = MovementEmbedding(num_kp=K, kp_variance="matrix", num_channels=3, heatmap_type="gaussian")
    assert torch.allclose(summed(source, kp_driving).sum(dim=(2, 3)), torch.ones(3, K))


@pytest.mark.parametrize("option", [{}, {"use_mask": False}, {"use_correction": False},
                                    {"mask_embedding_params": {"use_heatmap": True, "heatmap_type": "difference",
                                                               "norm_const": 100}},
                                    {"num_group_blocks": 0, "scale_factor": 0.5}])
def test_generator_shapes_and_options(option):
    torch.manual_seed(0)
    model = MonkeyNet(tiny_params(**option)).eval()
    source = torch.rand(1, 3, 32, 32)
    kp_source, kp_driving = random_kp(1, seed=1), random_kp(3, seed=2)
    with torch.no_grad():
        features = model.generator.encode_source(source)
        out = model.generator(source, kp_driving=kp_driving, kp_source=kp_source, source_features=features)
        again = model.generator(source, kp_driving=kp_driving, kp_source=kp_source)
    assert out["prediction"].shape == (3, 3, 32, 32) and out["deformed"].shape == (3, 3, 32, 32)
    assert ((out["prediction"] > 0) & (out["prediction"] < 1)).all()
    assert torch.equal(out["prediction"], again["prediction"])
    size = 16 if option.get("scale_factor") else 32
    assert out["deformation"].shape == (3, size, size, 2) and out["kp_embedding"].shape == (3, K, 32, 32)
    assert ("mask" in out) == option.get("use_mask", True)
    assert ("residual_flow" in out) == option.get("use_correction", True)


def test_initial_flow_is_the_official_coarse_flow():
    # Zero-initialised output conv, background logit 2: every mask is constant, so the flow is
    # sum_k m_k (mu_source_k - mu_driving_k) with m_k = 1 / (e^2 + K), plus a zero residual.
    model = MonkeyNet(tiny_params()).eval()
    kp_source, kp_driving = random_kp(1, seed=1), random_kp(2, seed=2)
    with torch.no_grad():
        out = model.generator.dense_motion_module(torch.rand(1, 3, 32, 32), kp_driving, kp_source)
    flow = out["deformation"] - make_coordinate_grid(32, 32)
    expected = ((kp_source["value"] - kp_driving["value"]).sum(1) / (math.e ** 2 + K))[:, None, None, :]
    assert torch.allclose(flow, expected.expand_as(flow), atol=1e-6)


def test_discriminator_maps():
    disc = Discriminator(num_channels=3, num_kp=K, kp_variance="matrix", block_expansion=4, num_blocks=4,
                         max_features=16, kp_embedding_params={"norm_const": 100})
    x = torch.rand(2, 3, 64, 64)
    maps = disc(x, random_kp(2))
    assert [tuple(m.shape[1:]) for m in maps] == [(3, 64, 64), (8, 30, 30), (16, 13, 13), (16, 5, 5), (16, 1, 1),
                                                  (1, 1, 1)]
    assert disc.down_blocks[0].norm is None and disc.down_blocks[1].norm is not None


def test_gradients_reach_the_keypoint_detector_through_the_generator_loss():
    torch.manual_seed(0)
    model = MonkeyNet(tiny_params()).train()
    # the zero-initialised dense-motion output would hide part of the graph: perturb it
    torch.nn.init.normal_(model.generator.dense_motion_module.hourglass.decoder.conv.weight, std=0.01)
    source, driving = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    kp = model.kp_detector(torch.cat([source, driving]))
    kp_source = {k: v[:2] for k, v in kp.items()}
    kp_driving = {k: v[2:] for k, v in kp.items()}
    out = model.generator(source, kp_driving=kp_driving, kp_source=kp_source)
    maps_real = model.discriminator(driving, kp_driving, kp_source)
    maps_fake = model.discriminator(out["prediction"], kp_driving, kp_source)
    # The official generator objective: feature matching over [image, block 1..n] (item 0 = pixel L1,
    # weights [10, 10, 10, 1] for 3 blocks), LSGAN on the scores, L1 of the warped source (BAIR).
    loss = sum(w * (fake - real).abs().mean() for w, real, fake in zip((10, 10, 10, 1), maps_real, maps_fake))
    loss = loss + ((1 - maps_fake[-1]) ** 2).mean() + 10 * (driving - out["deformed"]).abs().mean()
    loss.backward()
    for name in ("kp_detector", "generator"):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), name
        assert sum(g.abs().sum() for g in grads) > 0, name
    assert model.kp_detector.predictor.decoder.conv.weight.grad.abs().sum() > 0


def test_transfer_keypoints_options():
    model = MonkeyNet(tiny_params(), with_discriminator=False)
    kp_source, kp_driving = random_kp(1, seed=1), random_kp(4, seed=2)
    kp_initial = {k: v[:1] for k, v in kp_driving.items()}
    absolute = model.transfer_keypoints(kp_source, kp_driving, kp_initial, relative=False)
    assert torch.equal(absolute["value"], kp_driving["value"])
    assert torch.equal(absolute["covariance"], kp_driving["covariance"])
    relative = model.transfer_keypoints(kp_source, kp_driving, kp_initial, relative=True, scale=2.0)
    assert torch.allclose(relative["value"], (kp_driving["value"] - kp_initial["value"]) * 2 + kp_source["value"])
    assert torch.allclose(relative["value"][:1], kp_source["value"])
    assert torch.equal(relative["covariance"], kp_driving["covariance"])

    adapted = MonkeyNet(tiny_params(), False, {"move_location": True, "adapt_variance": True, "clip_mean": True})
    out = adapted.transfer_keypoints(kp_source, kp_driving, kp_initial, relative=True, scale=3.0)
    assert out["value"].abs().max() <= 1
    # frame 0: Sigma_0 Sigma_0^-1 Sigma_source = Sigma_source
    assert torch.allclose(out["covariance"][0], kp_source["covariance"][0], atol=1e-5)
    assert torch.allclose(out["covariance"], out["covariance"].transpose(-1, -2))
    assert (torch.linalg.eigvalsh(out["covariance"]) > 0).all()
    with pytest.raises(MarionetError, match="unknown"):
        MonkeyNet(tiny_params(), False, {"move_locaton": True})


def test_load_untrained_and_detect_from_a_shipped_config(tmp_path):
    config = yaml.safe_load((CONFIG_DIR / "monkeynet-nemo.yaml").read_text())
    params = config["model_params"]
    for section in (params["kp_detector_params"], params["generator_params"],
                    params["generator_params"]["dense_motion_params"], params["discriminator_params"]):
        section.update(block_expansion=4, max_features=16)
    path = tmp_path / "narrow.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.warns(UserWarning, match="untrained"):
        pipe = marionet.load(config=path)
    image = np.random.default_rng(0).random((80, 80, 3), dtype=np.float32)   # resized to 64x64
    kp = pipe.detect(image)
    assert set(kp) == {"value", "covariance"} and kp["covariance"].shape == (10, 2, 2)
    frames = pipe.animate(image, np.stack([image, image[::-1]]))
    assert frames.shape == (2, 64, 64, 3)


# ----------------------------------------------------------------------------------------------
# Keypoint-trajectory predictor
# ----------------------------------------------------------------------------------------------

@pytest.fixture
def one_thread():
    # Tiny recurrent steps are dominated by thread synchronisation; one thread is much faster.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def circular_sequences(count, length, seed):
    """3 keypoints on fixed circles at fixed angular speeds; the covariance turns with the phase."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.tensor([[-0.4, -0.3], [0.3, 0.2], [0.0, 0.5]])
    radius = torch.tensor([0.3, 0.25, 0.2])[:, None]
    speed = torch.tensor([0.4, -0.3, 0.5])
    t = torch.arange(length, dtype=torch.float32)[:, None]
    base = torch.diag(torch.tensor([0.02, 0.005]))
    sequences = []
    for _ in range(count):
        angle = speed * t + torch.rand(3, generator=g) * 2 * math.pi           # (T, 3)
        c, s = angle.cos(), angle.sin()
        rotation = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
        sequences.append({"value": centers + radius * torch.stack([c, s], -1),
                          "covariance": rotation @ base @ rotation.transpose(-1, -2)})
    return sequences


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_trajectory_predictor_learns_circular_motion(cell, one_thread):
    torch.manual_seed(0)
    model = KeypointPredictor(num_kp=3, num_features=64, cell=cell)
    history = fit(model, circular_sequences(32, 16, seed=1), num_frames=12, epochs=150, lr=1e-2,
                  batch_size=256, stride=2)
    assert history[0] / history[-1] > 10, history[::25]
    test = circular_sequences(4, 12, seed=2)
    first = {k: torch.stack([s[k][0] for s in test]) for k in ("value", "covariance")}
    frames = rollout(model, first, steps=11)
    assert len(frames) == 11 and frames[0]["value"].shape == (4, 3, 2)
    predicted = torch.stack([f["value"] for f in frames], 1)
    truth = torch.stack([s["value"][1:] for s in test])
    untrained_error = (truth - first["value"][:, None]).abs().mean()   # "nothing moves" baseline
    assert (predicted - truth).abs().mean() < untrained_error / 4


def test_trajectory_outputs_and_windows():
    model = KeypointPredictor(num_kp=2, num_features=8, cell="lstm")
    kp = random_kp(3, k=2)
    frames = rollout(model, kp, steps=5)
    assert len(frames) == 5
    for frame in frames:
        assert frame["value"].abs().max() < 1
        cov = frame["covariance"]
        assert torch.allclose(cov, cov.transpose(-1, -2), atol=1e-6)
        assert (torch.linalg.eigvalsh(cov) >= -1e-6).all()
    fixed = rollout(model, {k: v[0] for k, v in kp.items()}, steps=2, predict_covariance=False)
    assert fixed[0]["value"].shape == (2, 2) and torch.equal(fixed[1]["covariance"], kp["covariance"][0])
    sequences = circular_sequences(2, 10, seed=0)
    value, covariance = make_windows(sequences, num_frames=4, stride=3)
    assert value.shape == (6, 4, 3, 2) and covariance.shape == (6, 4, 3, 2, 2)
    assert torch.equal(value[1], sequences[0]["value"][3:7])
    with pytest.raises(ValueError, match="frames"):
        make_windows(sequences, num_frames=11)
    with pytest.raises(ValueError, match="cell"):
        KeypointPredictor(cell="rnn")
