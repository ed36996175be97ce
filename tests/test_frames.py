"""Frames between numpy and torch: a non-square frame is cropped, padded or stretched to the model's."""
import numpy as np
import pytest
import torch

from marionet.data.frames import fit_aspect, frames_to_tensor


def halves(h, w):
    """Left half red, right half blue, (1, 3, h, w)."""
    x = torch.zeros(1, 3, h, w)
    x[:, 0, :, : w // 2] = 1
    x[:, 2, :, w // 2:] = 1
    return x


def test_crop_takes_the_centred_square_of_a_wide_frame():
    wide = torch.zeros(1, 3, 20, 60)
    wide[..., 20:40] = 1                             # the middle third is white
    out = fit_aspect(wide, (20, 20), "crop")
    assert torch.equal(out, torch.ones(1, 3, 20, 20))
    tall = torch.zeros(1, 3, 60, 20)
    tall[..., 20:40, :] = 1
    assert torch.equal(fit_aspect(tall, (20, 20), "crop"), torch.ones(1, 3, 20, 20))


def test_pad_keeps_the_whole_frame_and_its_proportions():
    out = fit_aspect(halves(20, 40), (40, 40), "pad")  # 20x40 -> 40x40 by 10 rows of edge above and below
    assert out.shape == (1, 3, 40, 40)
    assert torch.equal(out[:, :, :, :20], halves(40, 40)[:, :, :, :20])
    assert torch.equal(out, halves(40, 40))            # the edge rows repeat the same colours


def test_stretch_squashes_as_the_official_code_does():
    out = fit_aspect(halves(20, 60), (20, 20), "stretch")
    assert out[0, 0, :, :9].min() > 0.99 and out[0, 2, :, 11:].min() > 0.99   # both halves survive, squashed


def test_frames_to_tensor_from_uint8_and_float():
    frames = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    x = frames_to_tensor(frames)
    assert x.shape == (2, 3, 8, 8) and torch.allclose(x * 255, torch.from_numpy(frames).permute(0, 3, 1, 2).float())
    assert torch.equal(frames_to_tensor(frames.astype(np.float32) / 255), x)
    with pytest.raises(ValueError, match="fit must be"):
        frames_to_tensor(frames, (4, 4), fit="squash")
