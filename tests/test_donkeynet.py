"""Donkey-Net: the public code's checkpoint through the public API and its internals (golden fixture,
tests/fixtures/donkey-net/README.md), loading rules, the attention gates at any width, and the
dual-reconstruction objective (both passes' gradients, the public code's pass-1-only switch, the
multi-scale loss at batch 1)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import marionet
from marionet.checkpoints import load_weights, read_checkpoint
from marionet.config import load_config
from marionet.errors import ConfigError, MarionetError
from marionet.models import FAMILIES, build_model, family_of
from marionet.models.donkeynet import DonkeyNet, discriminator_fits, public_attention
from marionet.nn.attention import (ECA, DecoderAttention, DecoderGate, DiscriminatorAttention, discriminator_gates,
                                   eca_kernel_size, parse_attention)
from marionet.nn.blocks import Hourglass

FIXTURE = Path(__file__).parent / "fixtures" / "donkey-net"
CHECKPOINT, CONFIG = FIXTURE / "small-cpk.pth.tar", FIXTURE / "small.yaml"
# The fixture README's limits (max |diff|)
TOL_MEAN, TOL_COV, TOL_PASS1, TOL_PASS2, TOL_INTERNAL, TOL_LOSS = 1e-4, 1e-3, 2e-3, 5e-3, 5e-4, 1e-3


def close(got, expected, limit, what, mean_limit=None):
    got, expected = np.asarray(got, dtype=np.float32), np.asarray(expected, dtype=np.float32)
    assert got.shape == expected.shape, f"{what}: shape {got.shape} vs {expected.shape}"
    diff = np.abs(got - expected)
    assert diff.max() <= limit, f"{what}: max |diff| {diff.max():.3g} > {limit}"
    assert mean_limit is None or diff.mean() <= mean_limit, f"{what}: mean |diff| {diff.mean():.3g} > {mean_limit}"


def _arrays(name):
    return pytest.fixture(scope="module", name=name)(lambda: dict(np.load(FIXTURE / f"{name}.npz")))


case, expected = _arrays("case"), _arrays("expected")


@pytest.fixture(scope="module")
def pipe():
    return marionet.load(checkpoint=CHECKPOINT, config=CONFIG)


@pytest.fixture(scope="module")
def full_model():
    """All three networks of the fixture, loaded strictly, in eval mode."""
    states, _, official = read_checkpoint(CHECKPOINT)
    model = build_model(load_config(CONFIG), str(CONFIG), states=states)
    load_weights(model, states, CHECKPOINT, official, networks=("generator", "kp_detector", "discriminator"))
    return model.eval()


def image(x):
    return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float()


# ----------------------------------------------------------------------------------------------
# Golden fixture, through the public API (the README's checks)
# ----------------------------------------------------------------------------------------------

def test_fixture_family_is_recognised_from_the_checkpoint_keys(pipe):
    config = load_config(CONFIG)
    assert "family" not in config and family_of(config) == "monkeynet"          # the config alone says nothing
    states, _, _ = read_checkpoint(CHECKPOINT)
    assert family_of(config, states) == "donkeynet" and FAMILIES["donkeynet"] is DonkeyNet
    assert isinstance(pipe.model, DonkeyNet) and pipe.frame_shape == (64, 64)
    generator = pipe.model.generator
    assert generator.video_decoder.attention is not None
    assert generator.dense_motion_module.hourglass.decoder.attention is not None
    # the public code's kernel sizes by level, not the ones the real widths (64, 64, 32, 16, 8) would give
    assert [e.kernel_size[0] for e in generator.video_decoder.attention.eca] == [5, 5, 5, 5, 3]
    assert [e.kernel_size[0] for e in generator.dense_motion_module.hourglass.decoder.attention.eca] == [5, 5, 5, 3, 3]


def test_fixture_keypoints(pipe, case, expected):
    for name in ("src_A", "src_B", "driving_A", "driving_B"):
        kp = pipe.detect(case[name])
        close(kp["value"], expected[f"kp_{name}_mean"], TOL_MEAN, f"{name} means")
        close(kp["covariance"], expected[f"kp_{name}_var"], TOL_COV, f"{name} covariances")


@pytest.mark.parametrize("sample", [0, 1])
def test_fixture_dual_reconstruction(pipe, case, expected, sample):
    a, b = ("A", "B") if sample == 0 else ("B", "A")   # sample 1: the GIFs swapped
    out = pipe.dual_reconstruction(case[f"src_{a}"], case[f"src_{b}"], case[f"driving_{a}"], case[f"driving_{b}"])
    close(out["pass1"], expected["dual_pass1_prediction"][sample], TOL_PASS1, "pass 1", 5e-5)
    close(out["pass2"], expected["dual_pass2_prediction"][sample], TOL_PASS2, "pass 2", 1e-4)
    assert out["l1_pass1"] == pytest.approx(np.abs(out["pass1"] - case[f"driving_{b}"]).mean(), rel=1e-5)


@pytest.mark.parametrize("mode", ["relative", "absolute"])
def test_fixture_animation(pipe, case, expected, mode):
    frames = pipe.animate(case["src_B"], case["driving"], relative=mode == "relative", adapt_scale=False)
    close(frames, expected[f"prediction_{mode}"], TOL_PASS1, mode, 5e-5)


# ----------------------------------------------------------------------------------------------
# Golden fixture: internals (gates, discriminator at three scales, the losses)
# ----------------------------------------------------------------------------------------------

def _record(modules):
    """Forward hooks collecting each module's outputs, in call order."""
    seen = {name: [] for name in modules}
    handles = [m.register_forward_hook(lambda mod, i, o, name=name: seen[name].append(o.detach()))
               for name, m in modules.items()]
    return seen, handles


def test_fixture_decoder_gates_and_dense_motion(full_model, case, expected):
    model = full_model
    with torch.no_grad():
        kp = {n: model.kp_detector(image(case[n])) for n in ("src_B", "driving_A")}
        kp = {n: {k: v for k, v in d.items() if k != "heatmap"} for n, d in kp.items()}
        gates = {"gen": model.generator.video_decoder.attention,
                 "dm": model.generator.dense_motion_module.hourglass.decoder.attention}
        modules = {f"{g}_eca{i}": e for g, gate in gates.items() for i, e in enumerate(gate.eca)}
        modules.update({f"{g}_spatial": gate.spatial for g, gate in gates.items()})
        seen, handles = _record(modules)
        out = model.generator(image(case["src_B"]), kp_driving=kp["driving_A"], kp_source=kp["src_B"])
        for h in handles:
            h.remove()
    for g in ("gen", "dm"):
        for i in range(5):
            close(seen[f"{g}_eca{i}"][0][0, :, 0, 0], expected[f"dual_pass1_{g}_att{i}_eca"], TOL_INTERNAL, f"{g} eca {i}")
            close(seen[f"{g}_spatial"][i][0, 0], expected[f"dual_pass1_{g}_att{i}_spatial"], TOL_INTERNAL,
                  f"{g} spatial {i}")
    close(out["hourglass_out"][0], expected["dual_pass1_dm_hourglass_out"], TOL_INTERNAL, "dense-motion output")
    close(out["deformation"][0], expected["dual_pass1_dm_deformation"], TOL_INTERNAL, "deformation")


@pytest.mark.parametrize("who", ["fake", "real"])
def test_fixture_discriminator_gates_at_three_scales(full_model, case, expected, who):
    disc = full_model.discriminator
    assert len(disc.attention) == 3   # the public code's levels 3 and 4 are never run and were not loaded
    with torch.no_grad():
        kp = {k: v for k, v in full_model.kp_detector(image(case["driving_B"])).items() if k != "heatmap"}
        for scale in ("s100", "s075", "s050"):
            seen, handles = _record({f"{part}{b}": getattr(g, part) for b, g in enumerate(disc.attention, start=1)
                                     for part in ("eca", "project")})
            maps = disc(image(expected[f"disc_pass1_{who}_{scale}_input"]), kp_driving=kp, kp_source=kp)
            for h in handles:
                h.remove()
            for b in (1, 2, 3):
                close(maps[b][0], expected[f"disc_pass1_{who}_{scale}_block{b}"], TOL_INTERNAL, f"{who} {scale} block {b}")
                if scale == "s100":
                    close(seen[f"eca{b}"][0][0, :, 0, 0], expected[f"disc_pass1_{who}_s100_att{b}_eca"], TOL_INTERNAL,
                          f"gate {b} eca")
                    close(seen[f"project{b}"][0][0, 0], expected[f"disc_pass1_{who}_s100_att{b}_spatial"],
                          TOL_INTERNAL, f"gate {b} spatial")
            close(maps[-1][0], expected[f"disc_pass1_{who}_{scale}_score"], TOL_INTERNAL, f"{who} {scale} score")


def test_fixture_losses_of_both_passes(full_model, case, expected):
    """The objective, in eval mode on [case; swapped case], against the public code's loss values."""
    config = load_config(CONFIG)
    objective = full_model.objective(full_model.train_params(config, str(CONFIG)))
    swap = {"src_a": "src_B", "src_b": "src_A", "driving_a": "driving_B", "driving_b": "driving_A"}
    batch = {k: torch.cat([image(case[k.replace("_a", "_A").replace("_b", "_B")]), image(case[v])])
             for k, v in swap.items()}
    with torch.no_grad():
        losses, generated = objective(batch)
        disc = objective.discriminator_loss(batch, generated)
    for p in (1, 2):
        terms = expected[f"loss_pass{p}_generator_terms"].astype(np.float64)   # (sample, scale, term)
        want = {"reconstruction": terms[..., 0], "feature_matching": terms[..., 1:4], "gen_gan": terms[..., 4]}
        for key, values in want.items():
            got = losses[f"pass{p}_{key}"].item()
            assert got == pytest.approx(values.sum() / 2, rel=TOL_LOSS), (p, key)
        total = sum(v.item() for k, v in losses.items() if k.startswith(f"pass{p}_"))
        assert total == pytest.approx(float(expected[f"loss_pass{p}_generator_batch"]), rel=TOL_LOSS)
        assert disc[f"pass{p}_disc_gan"].item() == pytest.approx(float(expected[f"loss_pass{p}_discriminator_batch"]),
                                                                  rel=TOL_LOSS)


# ----------------------------------------------------------------------------------------------
# Loading rules
# ----------------------------------------------------------------------------------------------

def _official_states():
    states, _, _ = read_checkpoint(CHECKPOINT)
    return {k: dict(v) for k, v in states.items()}


def test_unused_levels_of_the_public_code_load_and_are_ignored():
    states = _official_states()
    assert "video_decoder.eca_convs.5.weight" in states["generator"]          # a 6th level, for 5 blocks
    assert "spatial_gate_conv_1.4.weight" in states["discriminator"]          # levels 3, 4 for 3 blocks
    model = build_model(load_config(CONFIG), states=states)
    converted = model.convert_official("generator", states["generator"])
    assert "video_decoder.attention.eca.4.weight" in converted and not any("eca.5" in k for k in converted)
    assert converted["video_decoder.attention.spatial.weight"].shape == (1, 2, 7, 7)
    assert torch.equal(converted["video_decoder.attention.spatial.weight"],
                       states["generator"]["video_decoder.spatial_conv.weight"][:, :, 3])
    disc = model.convert_official("discriminator", states["discriminator"])
    assert {k.split(".")[1] for k in disc if k.startswith("attention.")} == {"0", "1", "2"}


def test_a_checkpoint_without_dense_motion_gates_loads_without_them(case):
    """The public code's flags are read from the checkpoint when the config names no attention."""
    states = _official_states()
    states["generator"] = {k: v for k, v in states["generator"].items()
                           if not k.startswith("dense_motion_module.hourglass.decoder.eca_convs")
                           and not k.startswith("dense_motion_module.hourglass.decoder.spatial_conv")}
    model = build_model(load_config(CONFIG), states=states, with_discriminator=False)
    load_weights(model, states, CHECKPOINT, official=True)
    assert model.generator.dense_motion_module.hourglass.decoder.attention is None
    assert model.generator.video_decoder.attention is not None


def test_a_missing_gate_weight_is_reported_when_the_config_names_the_gates():
    config = load_config(CONFIG)
    config["model_params"] = public_attention(config["model_params"])   # the same layout, now explicit
    config["family"] = "donkeynet"
    states = _official_states()
    del states["generator"]["video_decoder.eca_convs.2.weight"]
    with pytest.raises(MarionetError, match=r"missing: video_decoder\.attention\.eca\.2\.weight") as excinfo:
        _load(config, states)
    assert "\n" not in str(excinfo.value)


def _load(config, states):
    model = build_model(config, states=states, with_discriminator=False)
    load_weights(model, states, CHECKPOINT, official=True)


def test_monkeynet_refuses_the_attention_weights():
    config = load_config(CONFIG)
    config["family"] = "monkeynet"
    with pytest.raises(MarionetError, match="eca_convs.* is a Donkey-Net attention weight") as excinfo:
        marionet.load(checkpoint=CHECKPOINT, config=config)
    assert "\n" not in str(excinfo.value)


def test_public_layout_limits_and_discriminator_sizes():
    config = load_config(CONFIG)
    config["model_params"]["generator_params"]["num_blocks"] = 7
    config["dataset_params"]["image_shape"] = [128, 128, 3]
    with pytest.raises(MarionetError, match="at most 6 levels"):
        DonkeyNet.from_config(config)
    assert discriminator_fits(32, 3) and not discriminator_fits(32, 4) and discriminator_fits(61, 4)
    assert not discriminator_fits(60, 4)


# ----------------------------------------------------------------------------------------------
# Gates at any width
# ----------------------------------------------------------------------------------------------

def test_eca_kernel_sizes_follow_the_widths():
    # the public code's lists give its hard-coded kernels (fixture README)
    assert [eca_kernel_size(c) for c in (1024, 512, 256, 128, 64, 32)] == [5, 5, 5, 5, 3, 3]
    assert [eca_kernel_size(c) for c in (64, 128, 256, 256, 512)] == [3, 5, 5, 5, 5]
    assert eca_kernel_size(1) == 1 and eca_kernel_size(2 ** 15) == 9


@pytest.mark.parametrize("widths", [[1], [3, 5], [8, 17, 64], [300, 64, 16, 4]])
def test_decoder_gate_shapes_at_several_widths(widths):
    gate = DecoderGate(widths, DecoderAttention())
    for level, c in enumerate(widths):
        x = torch.randn(2, c, 6, 5)
        assert gate.eca[level](x).shape == (2, c, 1, 1)
        assert gate(x, level).shape == x.shape
    with torch.no_grad():   # a closed spatial gate leaves the map unchanged: x + 0 * y
        gate.spatial.weight.zero_()
        gate.spatial.bias.fill_(-1e4)
    x = torch.randn(1, widths[0], 4, 4)
    assert torch.equal(gate(x, 0), x)


@pytest.mark.parametrize("widths", [[1, 2], [16, 40, 64], [130, 256]])
def test_discriminator_gate_shapes_at_several_widths(widths):
    gates = discriminator_gates(widths, DiscriminatorAttention())
    for gate, c in zip(gates, widths):
        assert gate.reduce.out_channels == max(1, c // 16)
        x = torch.randn(2, c, 9, 7)
        y = gate.eval()(x)
        assert y.shape == x.shape
        # w = sigmoid(e * s) + 1 lies in (1, 2): the output is between 2x and 3x the input
        ratio = (y / x)[x.abs() > 1e-3]
        assert ratio.min() >= 2 - 1e-5 and ratio.max() <= 3 + 1e-5


def test_any_hourglass_takes_the_gate_and_bad_values_are_one_line_errors():
    glass = Hourglass(8, 3, num_blocks=3, max_features=32, attention=DecoderAttention())
    assert [e.kernel_size[0] for e in glass.decoder.attention.eca] == [3, 3, 3]
    assert glass(torch.rand(2, 3, 16, 16)).shape == (2, 11, 16, 16)
    assert parse_attention(DecoderAttention, False, "x") is None
    assert parse_attention(DecoderAttention, True, "x") == DecoderAttention()
    for spec, match in (({"eca_kernels": [4]}, "odd"), ({"spatial_kernel": 2}, "odd"), ({"size": 3}, "unknown key")):
        with pytest.raises(MarionetError, match=match):
            parse_attention(DecoderAttention, spec, "generator_params.attention")
    with pytest.raises(ConfigError, match="3 sizes for the 2 levels"):
        DecoderGate([8, 4], DecoderAttention(eca_kernels=(3, 3, 3)))
    config = load_config("donkeynet-puppets-64")
    config["model_params"]["discriminator_params"]["attention"] = {"dilations": [2]}
    with pytest.raises(MarionetError, match=r"discriminator_params\.attention\.dilations") as excinfo:
        build_model(config, "donkeynet-puppets-64")
    assert "donkeynet-puppets-64" in str(excinfo.value)
    assert isinstance(ECA(3), torch.nn.Conv1d)


# ----------------------------------------------------------------------------------------------
# The dual-reconstruction objective
# ----------------------------------------------------------------------------------------------

TINY = FIXTURE / "tiny.yaml"


def _objective(**train):
    config = yaml.safe_load(TINY.read_text())
    config["train_params"].update(train)
    torch.manual_seed(0)
    model = build_model(config, str(TINY)).train()
    return model, model.objective(model.train_params(config, str(TINY))), config


def _pair_batch(b, h=48, w=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.rand(b, 3, h, w, generator=g) for k in ("src_a", "src_b", "driving_a", "driving_b")}


def _generator_gradient(model, loss):
    grads = torch.autograd.grad(loss, list(model.generator.parameters()), allow_unused=True, retain_graph=True)
    return sum(float(g.abs().sum()) for g in grads if g is not None)


def test_both_passes_train_the_generator_by_default():
    model, objective, _ = _objective()
    losses, generated = objective(_pair_batch(2))
    assert {"pass1_reconstruction", "pass1_feature_matching", "pass1_gen_gan", "pass2_reconstruction",
            "pass2_feature_matching", "pass2_gen_gan", "pass1_reconstruction_deformed",
            "pass2_reconstruction_deformed"} == set(losses)
    pass2 = sum(v for k, v in losses.items() if k.startswith("pass2_"))
    assert pass2.requires_grad and _generator_gradient(model, pass2) > 0
    # pass 2 reaches pass 1's generator call through the keypoints of pass 1's output
    first = torch.autograd.grad(pass2, generated["prediction"], retain_graph=True)[0]
    assert first.abs().sum() > 0
    disc = objective.discriminator_loss(_pair_batch(2), generated)
    assert set(disc) == {"pass1_disc_gan", "pass2_disc_gan"} and all(v.requires_grad for v in disc.values())


def test_the_public_codes_pass1_only_training_is_reproduced_on_request():
    model, objective, _ = _objective(pass2_gradient=False)
    batch = _pair_batch(2)
    losses, generated = objective(batch)
    pass2 = [v for k, v in losses.items() if k.startswith("pass2_")]
    assert pass2 and not any(v.requires_grad for v in pass2)            # logged, not back-propagated
    assert all(v.requires_grad for k, v in losses.items() if k.startswith("pass1_"))
    disc = objective.discriminator_loss(batch, generated)
    assert disc["pass1_disc_gan"].requires_grad and not disc["pass2_disc_gan"].requires_grad
    # the same numbers as with both passes: only the gradient differs
    _, both, _ = _objective()
    with torch.no_grad():
        reference, _ = both(batch)
    for key, value in losses.items():
        assert value.item() == pytest.approx(reference[key].item(), rel=1e-5), key


def test_multiscale_loss_at_batch_one_keeps_the_aspect(size=(48, 80)):
    model, objective, _ = _objective()
    sizes = []
    handle = model.discriminator.register_forward_pre_hook(lambda m, args, kw: sizes.append(tuple(args[0].shape)),
                                                           with_kwargs=True)
    losses, _ = objective(_pair_batch(1, *size))
    handle.remove()
    h, w = size
    expected = [(2, 3, int(s * h), int(s * w)) for s in (1, 0.75, 0.5)]
    assert sizes == expected * 2            # [real; fake] at each scale, in both passes
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()


def test_scales_the_discriminator_cannot_see_are_refused():
    with pytest.raises(MarionetError, match=r"scales: at scale 0.25 .* too small"):
        _objective(scales=[1, 0.25])
    with pytest.raises(MarionetError, match=r"scales: numbers in \(0, 1\]"):
        _objective(scales=[1, 1.5])
