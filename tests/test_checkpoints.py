"""Checkpoint formats: official files of any size, DataParallel prefixes, marionet's own, bad files."""
import copy
import os

import numpy as np
import pytest
import torch
import yaml

import marionet
from marionet.checkpoints import read_checkpoint, save_checkpoint
from marionet.errors import MarionetError
from marionet.models import build_model


@pytest.fixture(scope="module")
def small(fixtures):
    return fixtures / "fomm" / "small-cpk.pth.tar", yaml.safe_load(open(fixtures / "fomm" / "small.yaml"))


def frames(seed=0, n=3, size=64):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([x, y, 0.5 * (x + y)], -1)
    return np.stack([np.clip(base + 0.2 * np.sin(6 * x + t + rng.uniform())[..., None], 0, 1) for t in range(n)]).astype(np.float32)


def official_layout(model) -> dict:
    """What the official Logger.save_cpk writes for this model: old spectral-norm key names, ints, optimisers."""
    inverse = {"parametrizations.weight.original": "weight_orig", "parametrizations.weight.0._u": "weight_u",
               "parametrizations.weight.0._v": "weight_v"}
    disc = {}
    for key, value in model.discriminator.state_dict().items():
        for ours, theirs in inverse.items():
            key = key.replace(ours, theirs)
        disc[key] = value
    return {"generator": model.generator.state_dict(), "discriminator": disc,
            "kp_detector": model.kp_detector.state_dict(),
            "optimizer_generator": torch.optim.Adam(model.generator.parameters()).state_dict(), "epoch": 7}


def perturb(model, seed=0):
    """Random non-default weights, so that a wrongly loaded tensor shows in the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def test_official_checkpoint_of_another_size_loads_and_matches(tmp_path):
    """The loader is generic: an official-layout file of a model with other sizes loads and gives its frames."""
    cfg = yaml.safe_load(open(marionet.config.CONFIG_DIR / "vox-256.yaml"))
    cfg["dataset_params"]["frame_shape"] = [32, 32, 3]
    mp = cfg["model_params"]
    mp["common_params"]["num_kp"] = 5
    mp["kp_detector_params"].update(block_expansion=4, max_features=16, num_blocks=3, scale_factor=0.5)
    mp["generator_params"].update(block_expansion=4, max_features=16, num_bottleneck_blocks=1)
    mp["generator_params"]["dense_motion_params"].update(block_expansion=4, max_features=16, num_blocks=3, scale_factor=0.5)
    mp["discriminator_params"].update(block_expansion=4, max_features=16, num_blocks=3)  # 4 blocks need 38+ px
    torch.manual_seed(0)
    reference = perturb(build_model(cfg)).eval()
    path = tmp_path / "other-cpk.pth.tar"
    torch.save(official_layout(reference), path)

    loaded = marionet.load(checkpoint=path, config=cfg)
    src, drv = frames(1, 1, 32)[0], frames(2, 3, 32)
    with torch.no_grad():
        s = torch.from_numpy(src).permute(2, 0, 1)[None]
        kp_s = reference.kp_detector(s)
        d = torch.from_numpy(drv).permute(0, 3, 1, 2)
        expect = reference.generator(s, kp_driving=reference.kp_detector(d), kp_source=kp_s)["prediction"]
    got = loaded.animate(src, drv, relative=False)
    np.testing.assert_allclose(got, expect.permute(0, 2, 3, 1).numpy(), atol=1e-5, rtol=0)


def test_dataparallel_prefixes_are_stripped(small, tmp_path):
    path, cfg = small
    data = torch.load(path, weights_only=True)
    for net in ("generator", "kp_detector"):
        data[net] = {f"module.{k}": v for k, v in data[net].items()}
    prefixed = tmp_path / "dp.pth.tar"
    torch.save(data, prefixed)
    a = marionet.load(checkpoint=path, config=cfg).animate(frames()[0], frames(1))
    b = marionet.load(checkpoint=prefixed, config=cfg).animate(frames()[0], frames(1))
    np.testing.assert_array_equal(a, b)


def test_marionet_checkpoint_round_trips_exactly(small, tmp_path):
    path, cfg = small
    model = marionet.load(checkpoint=path, config=cfg)
    own = tmp_path / "model.safetensors"
    save_checkpoint(own, model.model, cfg)
    states, embedded, official = read_checkpoint(own)
    assert not official and embedded == cfg
    for net in ("generator", "kp_detector"):
        original = getattr(model.model, net).state_dict()
        assert states[net].keys() == original.keys()
        for k, v in original.items():
            assert torch.equal(states[net][k], v), k
    again = marionet.load(own)  # carries its config
    np.testing.assert_array_equal(again.animate(frames()[0], frames(1)), model.animate(frames()[0], frames(1)))
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temp file left


def test_checkpoint_with_wrong_config_is_a_one_line_error(small):
    path, _ = small
    with pytest.raises(MarionetError) as e:
        marionet.load(checkpoint=path, config="vox-256")
    msg = str(e.value)
    assert "small-cpk.pth.tar" in msg and "shape mismatch" in msg and "\n" not in msg


def test_config_with_other_keypoint_count_is_rejected(small):
    path, cfg = small
    cfg = copy.deepcopy(cfg)
    cfg["model_params"]["common_params"]["num_kp"] = 5
    with pytest.raises(MarionetError, match="does not match"):
        marionet.load(checkpoint=path, config=cfg)


def test_official_checkpoint_needs_a_config(small):
    with pytest.raises(MarionetError, match="carries no config"):
        marionet.load(checkpoint=small[0])


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-checkpoint",))


def test_checkpoint_cannot_run_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"generator": {"x": Exploit()}}, tmp_path / "evil.pth.tar")
    with pytest.raises(MarionetError, match="evil.pth.tar: not a readable checkpoint"):
        read_checkpoint(tmp_path / "evil.pth.tar")
    assert not (tmp_path / "pwned-by-checkpoint").exists()


@pytest.mark.parametrize("content", [b"", b"garbage" * 100, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json"])
def test_corrupt_checkpoint(tmp_path, content):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(content)
    with pytest.raises(MarionetError, match="bad.safetensors"):
        read_checkpoint(bad)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(MarionetError, match="no such checkpoint"):
        marionet.load(checkpoint=tmp_path / "nope.pth.tar", config="vox-256")


def test_not_a_model_checkpoint(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "x.pt")
    with pytest.raises(MarionetError, match="not a model checkpoint"):
        read_checkpoint(tmp_path / "x.pt")
