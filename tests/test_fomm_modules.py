"""Shapes, gradients and invariants of the FOMM building blocks (random weights, tiny sizes)."""
import numpy as np
import pytest
import torch

from marionet.geometry import hull_area, kp2gaussian, make_coordinate_grid
from marionet.models.fomm import (FOMM, BackgroundMotion, DenseMotionNetwork, KPDetector,
                                  OcclusionAwareGenerator, TranslationSearch)
from marionet.motion import movement_scale, transfer_keypoints
from marionet.nn.blocks import AntiAliasInterpolation2d, Hourglass

K = 4


def tiny_params(jacobian=True, occlusion=True):
    return {
        "common_params": {"num_kp": K, "num_channels": 3, "estimate_jacobian": jacobian},
        "kp_detector_params": {"temperature": 0.1, "block_expansion": 4, "max_features": 16, "num_blocks": 3,
                               "scale_factor": 0.5},
        "generator_params": {"block_expansion": 4, "max_features": 16, "num_down_blocks": 2,
                             "num_bottleneck_blocks": 1, "estimate_occlusion_map": occlusion,
                             "dense_motion_params": {"block_expansion": 4, "max_features": 16, "num_blocks": 3,
                                                     "scale_factor": 0.5}},
        "discriminator_params": {"scales": [1, 0.5], "block_expansion": 4, "max_features": 16, "num_blocks": 3,
                                 "sn": True, "use_kp": True},
    }


def test_coordinate_grid_convention():
    g = make_coordinate_grid(3, 5)
    assert g.shape == (3, 5, 2)
    assert g[0, 0].tolist() == [-1, -1] and g[-1, -1].tolist() == [1, 1]
    assert g[0, 2, 0] == 0 and g[1, 0, 1] == 0  # x runs along the width, y along the height


def test_gaussian_peaks_at_keypoint():
    heat = kp2gaussian(torch.tensor([[[0.0, 0.0], [1.0, -1.0]]]), (9, 9), 0.01)
    assert heat.shape == (1, 2, 9, 9)
    assert heat[0, 0, 4, 4] == 1 and heat[0, 1, 0, 8] == 1


def test_hull_area():
    square = [[0, 0], [1, 0], [1, 1], [0, 1], [0.5, 0.5]]
    assert hull_area(square) == pytest.approx(1.0)
    assert hull_area([[0, 0], [1, 1], [2, 2]]) == 0.0


def test_antialias_kernel_and_stride():
    down = AntiAliasInterpolation2d(3, 0.25)
    assert down.weight.shape == (3, 1, 13, 13)
    assert torch.allclose(down.weight.sum((1, 2, 3)), torch.ones(3))
    x = torch.ones(1, 3, 64, 64)
    y = down(x)
    assert y.shape == (1, 3, 16, 16)
    assert torch.allclose(y[..., 2:15, 2:15], torch.ones(1, 3, 13, 13), atol=1e-6)  # away from the zero padding
    assert y[0, 0, 0, 0] < 0.9  # the official border darkening (zero padding) is kept


def test_hourglass_output_channels():
    hg = Hourglass(block_expansion=4, in_features=5, num_blocks=3, max_features=16)
    assert hg(torch.rand(2, 5, 16, 16)).shape == (2, 4 + 5, 16, 16)


@pytest.mark.parametrize("jacobian", [True, False])
def test_kp_detector(jacobian):
    det = KPDetector(block_expansion=4, num_kp=K, num_channels=3, max_features=16, num_blocks=3, temperature=0.1,
                     estimate_jacobian=jacobian, scale_factor=0.5)
    out = det(torch.rand(2, 3, 32, 32))
    assert out["value"].shape == (2, K, 2)
    assert out["value"].abs().max() <= 1
    assert torch.allclose(out["heatmap"].sum((2, 3)), torch.ones(2, K))
    if jacobian:  # starts at the identity
        assert torch.allclose(out["jacobian"], torch.eye(2).expand(2, K, 2, 2), atol=1e-6)
    else:
        assert "jacobian" not in out


def random_kp(b, jacobian=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    kp = {"value": torch.rand(b, K, 2, generator=g) * 1.6 - 0.8}
    if jacobian:
        kp["jacobian"] = torch.eye(2) + 0.1 * torch.randn(b, K, 2, 2, generator=g)
    return kp


def test_dense_motion_identity_when_keypoints_agree():
    dm = DenseMotionNetwork(block_expansion=4, num_blocks=3, max_features=16, num_kp=K, num_channels=3,
                            estimate_occlusion_map=True).eval()
    kp = random_kp(2)
    out = dm(torch.rand(2, 3, 16, 16), kp, kp)
    assert out["mask"].shape == (2, K + 1, 16, 16)
    assert torch.allclose(out["mask"].sum(1), torch.ones(2, 16, 16), atol=1e-5)
    assert out["sparse_deformed"].shape == (2, K + 1, 3, 16, 16)
    assert out["occlusion_map"].shape == (2, 1, 16, 16)
    # Same keypoints on both sides: every sparse motion is the identity, so is their mixture.
    assert torch.allclose(out["deformation"], make_coordinate_grid(16, 16).expand(2, 16, 16, 2), atol=1e-5)


def test_dense_motion_follows_a_translation():
    dm = DenseMotionNetwork(block_expansion=4, num_blocks=3, max_features=16, num_kp=K, num_channels=3).eval()
    src = random_kp(1, jacobian=False)
    shift = torch.tensor([0.1, -0.05])
    drv = {"value": src["value"] + shift}
    motions = dm.sparse_motions(16, 16, drv, src)
    grid = make_coordinate_grid(16, 16)
    assert torch.allclose(motions[0, 1:], (grid - shift).expand(K, 16, 16, 2), atol=1e-6)


@pytest.mark.parametrize("occlusion", [True, False])
def test_generator_shapes_and_source_broadcast(occlusion):
    gen = OcclusionAwareGenerator(num_channels=3, num_kp=K, block_expansion=4, max_features=16, num_down_blocks=2,
                                  num_bottleneck_blocks=1, estimate_occlusion_map=occlusion,
                                  dense_motion_params={"block_expansion": 4, "max_features": 16, "num_blocks": 3,
                                                       "scale_factor": 0.5}).eval()
    source = torch.rand(1, 3, 32, 32)
    kp_s, kp_d = random_kp(1), random_kp(3, seed=1)
    out = gen(source, kp_driving=kp_d, kp_source=kp_s)
    assert out["prediction"].shape == (3, 3, 32, 32)
    assert ("occlusion_map" in out) == occlusion
    # One source for a batch of driving frames equals the source repeated; cached features change nothing.
    rep = gen(source.expand(3, -1, -1, -1), kp_driving=kp_d, kp_source={k: v.expand(3, *v.shape[1:]) for k, v in kp_s.items()})
    cached = gen(source, kp_driving=kp_d, kp_source=kp_s, source_features=gen.encode_source(source))
    assert torch.allclose(out["prediction"], rep["prediction"], atol=1e-6)
    assert torch.equal(out["prediction"], cached["prediction"])


def skip_generator(scale_factor):
    return OcclusionAwareGenerator(num_channels=3, num_kp=K, block_expansion=4, max_features=16, num_down_blocks=2,
                                   num_bottleneck_blocks=1, estimate_occlusion_map=True, skips=True,
                                   dense_motion_params={"block_expansion": 4, "max_features": 16, "num_blocks": 3,
                                                        "scale_factor": scale_factor}).eval()


def test_skip_generator_carries_visible_source_pixels_through():
    gen = skip_generator(scale_factor=1)
    source = torch.rand(1, 3, 32, 32)
    kp = random_kp(2)
    with torch.no_grad():  # make the occlusion map 1 everywhere: nothing occluded
        gen.dense_motion_network.occlusion.weight.zero_()
        gen.dense_motion_network.occlusion.bias.fill_(30.0)
        same = gen(source, kp_driving=kp, kp_source=kp)["prediction"]
        moved = gen(source, kp_driving=random_kp(2, seed=3), kp_source=kp)
    # identity motion at full resolution: the source itself, not a regenerated copy
    assert torch.allclose(same, source.expand(2, -1, -1, -1), atol=1e-5)
    assert torch.allclose(moved["prediction"], moved["deformed"], atol=1e-5)


def test_skip_generator_uses_the_decoder_where_occluded():
    gen = skip_generator(scale_factor=0.5)
    source, kp_s, kp_d = torch.rand(1, 3, 32, 32), random_kp(1), random_kp(2, seed=1)
    with torch.no_grad():
        gen.dense_motion_network.occlusion.weight.zero_()
        gen.dense_motion_network.occlusion.bias.fill_(-30.0)  # everything occluded
        out = gen(source, kp_driving=kp_d, kp_source=kp_s)
        plain = gen.final(gen.up_blocks[1](gen.up_blocks[0](gen.bottleneck(torch.zeros(2, 16, 8, 8)))))
    # with the warped features masked out everywhere, only the decoder's output of a zero bottleneck remains
    assert torch.allclose(out["prediction"], torch.sigmoid(plain), atol=1e-5)
    with pytest.raises(ValueError, match="occlusion"):
        OcclusionAwareGenerator(num_channels=3, num_kp=K, block_expansion=4, max_features=16, num_down_blocks=1,
                                num_bottleneck_blocks=1, estimate_occlusion_map=False, skips=True)


def test_background_motion_starts_as_the_identity():
    bg = BackgroundMotion(num_channels=3, block_expansion=4, max_features=16, num_blocks=3)
    out = bg(torch.rand(1, 3, 32, 32), torch.rand(2, 3, 32, 32))  # one source, two driving frames
    assert torch.equal(out, torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(2, 2, 3))


def _shifted(image, dx, dy):
    """image sampled at z + (dx, dy) pixels (bilinear, as the generator warps), edges replicated."""
    _, _, h, w = image.shape
    grid = make_coordinate_grid(h, w) + torch.tensor([2 * dx / (w - 1), 2 * dy / (h - 1)])
    return torch.nn.functional.grid_sample(image, grid[None], align_corners=True, padding_mode="border")


def _blob_texture(seed, size=64):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.interpolate(torch.rand(1, 3, 16, 16, generator=g), size=(size, size),
                                           mode="bicubic", align_corners=False).clamp(0, 1)


@pytest.mark.parametrize("dx, dy", [(3.25, -1.5), (-7.0, 4.6875), (0.0, 0.0)])
def test_translation_search_recovers_the_camera_pan(dx, dy):
    """A textured background panned by (dx, dy) px, with a 16x16 'subject' pasted at different places in
    the two frames: the estimate is the pan to 1/16 px, in the generator's [-1, 1] units."""
    background = _blob_texture(0)
    source, driving = background.clone(), _shifted(background, dx, dy)
    source[..., 8:24, 10:26] = 1.0
    driving[..., 30:46, 28:44] = 1.0
    out = TranslationSearch()(source, driving)
    assert out.shape == (1, 2, 3)
    assert torch.equal(out[:, :, :2], torch.eye(2)[None])
    assert torch.allclose(out[0, :, 2] * 63 / 2, torch.tensor([dx, dy]), atol=1 / 16 + 1e-4)


def test_translation_search_keeps_a_plain_background_still():
    """On a plain background only the subject moves; covering less than min_gain (5%) of the frame, it
    must not become the camera motion."""
    source, driving = torch.full((1, 3, 64, 64), 0.3), torch.full((2, 3, 64, 64), 0.3)
    source[..., 20:32, 20:30] = _blob_texture(1)[..., :12, :10]
    driving[0, :, 23:35, 25:35] = _blob_texture(1)[0, :, :12, :10]  # the subject moved by (5, 3) px
    driving[1] = source[0]
    out = TranslationSearch()(source, driving)
    assert torch.equal(out, torch.eye(2, 3).expand(2, 2, 3))


def test_translation_search_picks_the_smallest_equivalent_shift_of_a_periodic_background():
    """Stripes of period 8 px moved by 10 px look moved by 2 px: warping by either gives the same frame,
    and the smallest shift keeps the most of the frame inside the source."""
    def stripes(shift):
        return (0.5 + 0.4 * torch.sin(2 * torch.pi * (torch.arange(64.0) + shift) / 8)).expand(1, 3, 64, 64)

    out = TranslationSearch()(stripes(0.0), stripes(10.0))
    assert torch.allclose(out[0, :, 2] * 63 / 2, torch.tensor([2.0, 0.0]), atol=1 / 16 + 1e-4)


def test_translation_search_prefers_small_shifts_among_the_periods_of_a_lattice():
    """A checker or dot lattice (the puppets' backgrounds) panned by a sub-pixel amount fits almost as
    well at every lattice period; refining several candidates and keeping the smallest near-best one
    lands much nearer the true pan than refining the single best whole-pixel shift."""
    from marionet.data.puppets.render import CHECKER, DOTS, Background

    def mean_error(search):
        errors = []
        for pattern in (CHECKER, DOTS):
            for dx, dy in [(0.3, 0.5), (0.8, 1.5), (1.4, 2.6), (2.0, 3.6), (2.5, 4.6), (-1.2, 0.7)]:
                background = Background((0.2, 0.3, 0.4), (0.8, 0.7, 0.5), (0, 0, 0), pattern=pattern,
                                        period=7.4 / 64, angle=0.35, pan=(dx / 64, dy / 64))
                frames = torch.from_numpy(background.render(0, 2, 64)).permute(1, 0, 2, 3)  # (2, 3, 64, 64)
                source, driving = frames[:1].clone(), frames[1:].clone()
                source[..., 8:24, 10:26] = 1.0
                driving[..., 30:46, 28:44] = 1.0
                shift = search(source, driving)[0, :, 2] * 63 / 2
                errors.append(float((shift - torch.tensor([dx, dy])).abs().sum()))
        return sum(errors) / len(errors)

    assert mean_error(TranslationSearch()) < 0.6 * mean_error(TranslationSearch(candidates=1))


def test_generator_background_motion_methods():
    common = dict(num_channels=3, num_kp=K, block_expansion=4, max_features=16, num_down_blocks=1,
                  num_bottleneck_blocks=1, dense_motion_params={"block_expansion": 4, "max_features": 16,
                                                                "num_blocks": 2})
    search = OcclusionAwareGenerator(**common, background_motion={"method": "search", "max_shift": 0.25})
    assert isinstance(search.bg_motion, TranslationSearch) and search.bg_motion.max_shift == 0.25
    assert not any(k.startswith("bg_motion.") for k in search.state_dict())  # nothing to learn or save
    learned = OcclusionAwareGenerator(**common, background_motion={"block_expansion": 4, "max_features": 16,
                                                                   "num_blocks": 2})
    assert isinstance(learned.bg_motion, BackgroundMotion)
    with pytest.raises(ValueError, match="'learned' or 'search'"):
        OcclusionAwareGenerator(**common, background_motion={"method": "flow"})
    from marionet.errors import MarionetError
    from marionet.models import build_model
    params = tiny_params()
    params["generator_params"]["background_motion"] = {"method": "flow"}
    with pytest.raises(MarionetError, match="my.yaml: .*'learned' or 'search'"):  # one line for the CLI
        build_model({"model_params": params}, source="my.yaml")


def test_background_slot_follows_the_camera_motion():
    """With every pixel assigned to the background slot, the dense flow is the given affine motion and
    the generator's deformed source is the source shifted by it."""
    gen = OcclusionAwareGenerator(num_channels=3, num_kp=K, block_expansion=4, max_features=16, num_down_blocks=2,
                                  num_bottleneck_blocks=1, estimate_occlusion_map=True, skips=True,
                                  background_motion={"block_expansion": 4, "max_features": 16, "num_blocks": 3},
                                  dense_motion_params={"block_expansion": 4, "max_features": 16, "num_blocks": 3,
                                                       "scale_factor": 1}).eval()
    source = torch.rand(1, 3, 32, 32)
    kp_s, kp_d = random_kp(1), random_kp(2, seed=1)
    affine = torch.tensor([[[1.0, 0, 0.25], [0, 1, -0.125]], [[0.9, 0.1, 0], [-0.1, 0.9, 0.05]]])
    with torch.no_grad():
        mask = gen.dense_motion_network.mask
        mask.weight.zero_()
        mask.bias.copy_(torch.tensor([60.0] + [0.0] * K))  # background slot everywhere
        out = gen(source, kp_driving=kp_d, kp_source=kp_s, background=affine)
        still = gen(source, kp_driving=kp_d, kp_source=kp_s)
    grid = make_coordinate_grid(32, 32)
    expected = torch.einsum("bij,hwj->bhwi", affine[:, :, :2], grid) + affine[:, None, None, :, 2]
    assert torch.allclose(out["deformation"], expected, atol=1e-5)
    shifted = torch.nn.functional.grid_sample(source.expand(2, -1, -1, -1), expected, align_corners=True)
    assert torch.allclose(out["deformed"], shifted, atol=1e-5)
    assert torch.allclose(still["deformation"], grid.expand(2, 32, 32, 2), atol=1e-5)  # no background: still
    assert torch.equal(gen.background(source, torch.rand(2, 3, 32, 32)), torch.eye(2, 3).expand(2, 2, 3))
    with pytest.raises(ValueError, match="dense_motion_params"):
        OcclusionAwareGenerator(num_channels=3, num_kp=K, block_expansion=4, max_features=16, num_down_blocks=1,
                                num_bottleneck_blocks=1, background_motion=True)


def test_training_gradients_reach_every_network():
    params = tiny_params()
    params["generator_params"]["background_motion"] = {"block_expansion": 4, "max_features": 16, "num_blocks": 3}
    model = FOMM(params).train()
    x, y = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    kp_s, kp_d = model.kp_detector(x), model.kp_detector(y)
    out = model.generator(x, kp_driving=kp_d, kp_source=kp_s, background=model.generator.background(x, y))
    disc = model.discriminator({"prediction_1": out["prediction"], "prediction_0.5": out["prediction"][..., ::2, ::2]},
                               kp=kp_d)
    assert disc["prediction_map_1"].shape[1] == 1 and len(disc["feature_maps_0.5"]) == 3
    loss = (out["prediction"] - y).abs().mean() + sum(v.mean() for k, v in disc.items() if k.startswith("prediction_map"))
    loss.backward()
    for name in ("kp_detector", "generator", "discriminator"):
        grads = [p.grad for p in getattr(model, name).parameters() if p.requires_grad]
        assert all(g is not None for g in grads), name
        assert sum(g.abs().sum() for g in grads) > 0, name
    assert model.kp_detector.jacobian.weight.grad.abs().sum() > 0  # the Jacobians are trained too


def test_relative_transfer_semantics():
    src, init = random_kp(1, seed=2), random_kp(1, seed=3)
    drv = {"value": init["value"] + 0.1, "jacobian": init["jacobian"] @ torch.tensor([[1.2, 0.0], [0.0, 0.8]])}
    out = transfer_keypoints(src, drv, init, relative=True, scale=2.0)
    assert torch.allclose(out["value"], src["value"] + 0.2)
    # jacobian = J_d J_0^-1 J_s: the driving frame's change applied to the source's Jacobian
    assert torch.allclose(out["jacobian"], init["jacobian"] @ torch.tensor([[1.2, 0.0], [0.0, 0.8]])
                          @ torch.inverse(init["jacobian"]) @ src["jacobian"], atol=1e-5)
    # At the first driving frame relative motion is no motion.
    same = transfer_keypoints(src, init, init, relative=True, scale=2.0)
    assert torch.allclose(same["value"], src["value"]) and torch.allclose(same["jacobian"], src["jacobian"], atol=1e-5)
    absolute = transfer_keypoints(src, drv, init, relative=False)
    assert torch.equal(absolute["value"], drv["value"])


def test_movement_scale_is_ratio_of_cloud_sizes():
    src = {"value": torch.tensor([[[0.0, 0.0], [0.4, 0.0], [0.0, 0.4]]])}
    drv = {"value": torch.tensor([[[0.0, 0.0], [0.2, 0.0], [0.0, 0.2]]])}
    assert movement_scale(src, drv) == pytest.approx(2.0)
    flat = {"value": torch.tensor([[[0.0, 0.0], [0.1, 0.1], [0.2, 0.2]]])}
    assert movement_scale(src, flat) == 1.0  # degenerate hull: no rescaling rather than a crash


def test_zero_order_model_animates_relative():
    """Without Jacobians (the official code raises KeyError here) relative animation still works."""
    from marionet.pipeline import AnimationPipeline

    params = tiny_params(jacobian=False)
    pipe = AnimationPipeline(FOMM(params, with_discriminator=False), {"model_params": params,
                             "dataset_params": {"frame_shape": [32, 32, 3]}})
    out = pipe.animate(np.random.rand(40, 48, 3).astype(np.float32), np.random.rand(3, 32, 32, 3).astype(np.float32))
    assert out.shape == (3, 32, 32, 3) and np.isfinite(out).all()


@pytest.mark.parametrize("relative", [True, False])
def test_pipeline_background_motion_reference_frame(relative):
    """Relative animation moves the source's background by the camera motion since the first driving
    frame; absolute animation by the motion from the source to each driving frame."""
    from marionet.pipeline import AnimationPipeline

    params = tiny_params()
    params["generator_params"]["background_motion"] = {"block_expansion": 4, "max_features": 16, "num_blocks": 3}
    pipe = AnimationPipeline(FOMM(params, with_discriminator=False), {"model_params": params,
                             "dataset_params": {"frame_shape": [32, 32, 3]}}, channels_last=False)
    calls, original = [], pipe.generator.background
    pipe.generator.background = lambda a, b: calls.append((a.clone(), b.clone())) or original(a, b)
    source, driving = np.random.rand(32, 32, 3).astype(np.float32), np.random.rand(5, 32, 32, 3).astype(np.float32)
    out = pipe.animate(source, driving, relative=relative, batch_size=2)
    assert out.shape == (5, 32, 32, 3) and len(calls) == 3
    reference = pipe.to_tensor(driving[0] if relative else source)
    assert all(torch.equal(a, reference) for a, _ in calls)
    assert torch.equal(torch.cat([b for _, b in calls]), pipe.to_tensor(driving))


def test_still_background_keeps_the_source_background_out_of_the_camera_motion():
    """still_background: the camera motion is neither estimated nor applied; the frames are those of a
    model without background motion, and differ from the default when the camera moves."""
    from marionet.pipeline import AnimationPipeline

    params = tiny_params()
    params["generator_params"]["background_motion"] = {"block_expansion": 4, "max_features": 16, "num_blocks": 3}
    pipe = AnimationPipeline(FOMM(params, with_discriminator=False), {"model_params": params,
                             "dataset_params": {"frame_shape": [32, 32, 3]}}, channels_last=False)
    shift = torch.tensor([[1.0, 0.0, 0.3], [0.0, 1.0, -0.2]])
    calls = []
    pipe.generator.background = lambda a, b: calls.append(1) or shift.expand(len(b), 2, 3)
    source, driving = np.random.rand(32, 32, 3).astype(np.float32), np.random.rand(4, 32, 32, 3).astype(np.float32)
    moved = pipe.animate(source, driving, batch_size=2)
    assert len(calls) == 2
    still = pipe.animate(source, driving, batch_size=2, still_background=True)
    assert len(calls) == 2                      # not estimated
    pipe.generator.background = lambda a, b: None
    np.testing.assert_array_equal(still, pipe.animate(source, driving, batch_size=2))
    assert np.abs(moved - still).max() > 1e-5   # random weights: the background slot is one of several
