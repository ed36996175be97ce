"""The shipped ground-truth keypoint regressors load and are accurate on fresh puppets."""
from __future__ import annotations

import numpy as np
import pytest

from marionet.data.puppets import KINDS, render_video
from marionet.errors import MarionetError
from marionet.evaluate.keypoint_regressor import (heldout_error, keypoint_errors, load_regressor,
                                                  predict, weights_path)

# Held-out error measured by benchmarks/train_regressor.py (64 puppets x 8 frames), in pixels at
# 64x64, over visible joints; the bounds leave margin for the small sample below.
BOUND_PX_64 = BOUNDS


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
    err = heldout_error(kind, 64, videos=6, frames=4, first_seed=30_000_000)
    assert err["visible"] < BOUND_PX_64[kind], err
    assert err["visibility_accuracy"] > 0.8, err


def test_predict_shapes_and_resolution():
    frames, gt = render_video("humanoid", 128, 3, seed=30_000_100)
    joints, vis = predict(frames, "humanoid", return_visibility=True)
    assert joints.shape == (3, 15, 2) and joints.dtype == np.float32 and vis.shape == (3, 15)
    assert ((vis >= 0) & (vis <= 1)).all()
    err = keypoint_errors(joints, gt["joints"], gt["visible"], 128)
    assert err["visible"] < 2 * BOUND_PX_64["humanoid"] + 1  # pixels of the 128x128 input
    single = predict(frames[0], "humanoid")
    assert np.allclose(single[0], joints[0], atol=1e-4)


def test_load_regressor_bad_file(tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(MarionetError, match="x.safetensors"):
        load_regressor(str(bad), cache=False)
    with pytest.raises(MarionetError, match="no keypoint regressor"):
        load_regressor(str(tmp_path / "missing.safetensors"), cache=False)
