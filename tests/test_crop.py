"""Crop and paste-back on real photos, the best starting frame, and `animate --crop` end to end."""
import numpy as np
import pytest
import torch
from PIL import Image

from marionet.cli import main
from marionet.crop import (animate_in_place, best_frame, cut, default_crop, driving_squares, paste,
                           square_around, subject_square)
from marionet.data.samples import sample_path
from marionet.data.video import open_video, read_image, write_video
from marionet.errors import MarionetError
from marionet.landmarks import DlibFaces


@pytest.fixture(scope="module")
def astronaut():
    return read_image(sample_path("astronaut"))


@pytest.fixture(scope="module")
def carphone():
    with open_video(sample_path("carphone")) as reader:
        return np.stack([f for _, f in zip(range(40), reader)])


def test_the_face_square_holds_the_face_landmarks(astronaut):
    square = subject_square(astronaut, "face", "astronaut.png")
    landmarks = DlibFaces().landmarks(astronaut)                  # another detector's 68 points
    x0, y0, x1, y1 = square
    assert (x1 - x0) == (y1 - y0) and 100 < x1 - x0 < 400
    assert (landmarks[:, 0] > x0).all() and (landmarks[:, 0] < x1).all()
    assert (landmarks[:, 1] > y0).all() and (landmarks[:, 1] < y1).all()
    body = subject_square(astronaut, "body", "astronaut.png")
    assert body[2] - body[0] > x1 - x0                            # a body square is larger than the face's


def test_cut_then_paste_changes_nothing_outside_the_square(astronaut):
    square = np.array([300, 350, 460, 510])                       # near the corner, partly outside
    patch = cut(astronaut, square, (64, 64))
    assert patch.shape == (64, 64, 3)
    out = paste(astronaut, np.zeros_like(patch), square)
    outside = np.ones(astronaut.shape[:2], bool)
    outside[350:510, 300:460] = False
    assert np.array_equal(out[outside], astronaut[outside])       # bit for bit
    assert out[430, 380].max() < 0.05                              # the centre took the patch
    edge = out[351, 380]                                           # the feathered edge blends
    assert np.abs(edge - astronaut[351, 380]).max() < 0.1


def test_a_square_leaving_the_image_continues_its_edges(astronaut):
    patch = cut(astronaut, np.array([-64, -64, 64, 64]), (32, 32))
    assert np.allclose(patch[0, 0], astronaut[0, 0], atol=0.02)


def test_no_face_is_a_one_line_error():
    with pytest.raises(MarionetError, match="blank.png: no face found"):
        subject_square(np.full((200, 200, 3), 0.5, np.float32), "face", "blank.png")
    with pytest.raises(MarionetError, match=r"clip.mp4: no face found in frames 0-4"):
        driving_squares([np.zeros((64, 64, 3), np.uint8)] * 5, "face", "fixed", "clip.mp4")


def test_driving_squares_fixed_covers_the_motion_and_track_follows_it(carphone):
    fixed = driving_squares(carphone, "face", "fixed", "carphone")
    track = driving_squares(carphone, "face", "track", "carphone")
    assert len(fixed) == len(track) == len(carphone)
    assert all(np.array_equal(fixed[0], f) for f in fixed)
    for t in track:   # every per-frame square lies inside the fixed one, up to the smoothing
        assert t[0] >= fixed[0][0] - 8 and t[2] <= fixed[0][2] + 8


def test_best_frame_finds_the_frame_the_source_was_taken_from(carphone):
    assert best_frame(carphone[23], carphone) == 23


class Identity:
    """A stand-in pipeline whose 'animation' is the driving frame itself: shows where each frame went."""
    frame_shape = (64, 64)

    def to_tensor(self, frame, fit="crop"):
        return torch.from_numpy(np.asarray(frame, np.float32))[None].permute(0, 3, 1, 2)

    def animate_stream(self, source, frames, **_):
        yield from (np.asarray(f, np.float32) for f in frames)


@pytest.mark.parametrize("start", [0, 17, 39])
def test_best_frame_output_has_every_driving_frame_in_order(monkeypatch, start):
    import marionet.crop as crop

    frames = [np.full((64, 64, 3), i / 40, np.float32) for i in range(40)]
    monkeypatch.setattr(crop, "best_frame", lambda source, driving: start)
    out = list(animate_in_place(Identity(), frames[0], lambda: iter(frames), crop="none", best=True))
    assert len(out) == 40 and all(np.allclose(o, f) for o, f in zip(out, frames))


def test_default_crop_from_the_config():
    from marionet.config import load_config
    assert default_crop(load_config("vox-256")) == "face"
    assert default_crop(load_config("taichi-256")) == "body"
    assert default_crop(load_config("puppets-64")) == "none"


def test_square_is_whole_pixels_and_square():
    square = square_around([10.3, 20.7, 50.2, 70.9], "face")
    assert square.dtype.kind == "i" and square[2] - square[0] == square[3] - square[1]


@pytest.mark.slow
def test_animate_crop_face_keeps_the_photo_outside_the_face(astronaut, carphone, tmp_path):
    """vox-256's architecture with random weights, the astronaut driven by carphone: the output has the
    photo's size, and outside the pasted square it is the photo."""
    torch.manual_seed(0)
    write_video(tmp_path / "carphone.mp4", carphone[:6], 30)
    args = ["animate", "--config", "vox-256", "--allow-untrained",
            "--source", str(sample_path("astronaut")), "--driving", str(tmp_path / "carphone.mp4")]
    assert main(args + ["--output", str(tmp_path / "out"), "--crop", "face"]) == 0
    out = np.stack([np.asarray(Image.open(p)) for p in sorted((tmp_path / "out").iterdir())])
    assert out.shape == (6, 512, 512, 3)
    x0, y0, x1, y1 = subject_square(astronaut, "face", "astronaut")
    photo = np.rint(astronaut * 255).astype(np.uint8)
    outside = np.ones((512, 512), bool)
    outside[max(0, y0):y1, max(0, x0):x1] = False
    assert all(np.array_equal(frame[outside], photo[outside]) for frame in out)
    assert main(args + ["--output", str(tmp_path / "best.mp4"), "--crop", "face", "--best-frame"]) == 0
    with open_video(tmp_path / "best.mp4") as reader:
        assert sum(1 for _ in reader) == 6


def test_a_native_resolution_model_is_cut_at_the_squares_own_size(astronaut):
    """The weightless faces model works at any size: the face square reaches it unresampled, so a still
    driving photo gives the photo back, inside the square as well as outside."""
    import marionet

    model = marionet.load("faces")
    frames = list(animate_in_place(model, astronaut, lambda: iter([astronaut] * 2), crop="face"))
    assert len(frames) == 2 and frames[0].shape == astronaut.shape
    photo = astronaut.astype(np.float32) / 255 if astronaut.dtype == np.uint8 else astronaut
    assert np.abs(frames[1] - photo).max() < 0.02
