"""The shipped ground-truth keypoint regressors load and are accurate on fresh puppets."""
from __future__ import annotations

import numpy as np
import pytest

from marionet.data.puppets import KINDS, render_video
from marionet.errors import MarionetError
from marionet.evaluate.keypoint_regressor import (heldout_error, keypoint_errors, load_regressor, predict,
                                                  weights_path)
from marionet.evaluate.metrics import KeypointAgreement, akd_mkr

# Held-out error measured by benchmarks/train_regressor.py (64 puppets x 8 frames), in pixels at
# 64x64 over visible joints: humanoid 0.93, quadruped 1.27, face 0.38 (at 128x128: 1.88, 2.57,
# 0.76). On the 6 x 4 frames below: 0.83, 1.48, 0.31 (128: 1.67, 3.05, 0.64). The bounds leave
# margin for retrained weights; errors are heavy-tailed (a dark puppet on a dark background).
BOUND_PX_64 = {"humanoid": 1.5, "quadruped": 2.5, "face": 0.8}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_regressor_is_small_and_loads(kind):
    path = weights_path(kind)
    assert path.exists() and path.stat().st_size < 1_000_000
    model = load_regressor(kind)
    assert model.joint_names == list(KINDS[kind].joints)
    assert "heldout_error_px" in model.metadata


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_regressor_error_on_fresh_puppets(kind):
    # seeds far from the training (10M+) and held-out (20M+) ranges
    for size in (64, 128):
        err = heldout_error(kind, size, videos=6, frames=4, first_seed=30_000_000)
        assert err["visible"] < BOUND_PX_64[kind] * size / 64, (size, err)
        assert err["visibility_accuracy"] > 0.8, (size, err)


def test_predict_shapes_and_resolution():
    frames, gt = render_video("humanoid", 96, 3, seed=30_000_101)  # resized with antialiasing
    joints, vis = predict(frames, "humanoid", return_visibility=True)
    assert joints.shape == (3, 15, 2) and joints.dtype == np.float32 and vis.shape == (3, 15)
    assert ((vis >= 0) & (vis <= 1)).all()
    err = keypoint_errors(joints, gt["joints"], gt["visible"], 96)
    assert err["visible"] < 1.5 * BOUND_PX_64["humanoid"]  # pixels of the 96x96 input
    single = predict(frames[0], "humanoid")
    assert np.allclose(single[0], joints[0], atol=1e-4)


def test_akd_mkr():
    frames, _ = render_video("quadruped", 64, 4, seed=30_000_200)
    same = akd_mkr(frames, frames, "quadruped")
    assert same["akd"] == 0.0 and same["mkr"] == 0.0
    blank = np.zeros_like(frames)
    worse = akd_mkr(blank, frames, "quadruped")
    assert worse["mkr"] > 0.2 or worse["akd"] > 5


def test_keypoint_agreement_accumulates_like_one_batch():
    frames, _ = render_video("humanoid", 64, 6, seed=30_000_201)
    shifted = np.roll(frames, 3, axis=2)  # joints move 3 px right
    whole = akd_mkr(shifted, frames, "humanoid")
    parts = KeypointAgreement("humanoid")
    parts.add(shifted[:2], frames[:2])
    parts.add(shifted[2:], frames[2:])
    assert parts.result() == pytest.approx(whole)
    assert 2.0 < whole["akd"] < 4.0


def test_load_regressor_bad_file(tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(MarionetError, match="x.safetensors"):
        load_regressor(str(bad), cache=False)
    with pytest.raises(MarionetError, match="no keypoint regressor"):
        load_regressor(str(tmp_path / "missing.safetensors"), cache=False)
