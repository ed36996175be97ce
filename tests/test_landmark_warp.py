"""The landmark-driven faces and bodies models (no trained weights) on real photos from the installed
sample media: landmarks found, no motion leaves the image as it is, a known translation moves the
face (body) by that amount, a missing face (person) is a one-line error; the geometry under them."""
import numpy as np
import pytest
import torch

import marionet
from marionet.checkpoints import BUILTIN_MODELS, read_checkpoint
from marionet.cli import main
from marionet.config import load_config
from marionet.data.samples import sample_path
from marionet.data.video import open_video, read_image
from marionet.errors import MarionetError
from marionet.geometry import fit_similarity, thin_plate_spline
from marionet.landmarks import DlibFaces, FaceMesh
from marionet.models import build_model
from media import write_mp4

SHIFT = (9, -6)                                   # (dx, dy) pixels


@pytest.fixture(scope="module")
def astronaut():
    return read_image(sample_path("astronaut"))                                   # (512, 512, 3)


@pytest.fixture(scope="module")
def faces():
    return marionet.load("faces")


@pytest.fixture(scope="module")
def bodies():
    return marionet.load("bodies")


def shifted(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """The image moved by (dx, dy) pixels, its edges repeated into the uncovered border."""
    h, w = image.shape[:2]
    padded = np.pad(image, ((abs(dy),) * 2, (abs(dx),) * 2, (0, 0)), mode="edge")
    return padded[abs(dy) - dy:abs(dy) - dy + h, abs(dx) - dx:abs(dx) - dx + w]


# ---------------------------------------------------------------------------------------------- geometry

def test_thin_plate_spline_interpolates_and_keeps_affine_functions():
    g = torch.Generator().manual_seed(0)
    control, points, values = (torch.rand(n, 2, generator=g, dtype=torch.float64) for n in (12, 50, 12))
    assert torch.allclose(thin_plate_spline(control, values, control), values, atol=1e-8)
    matrix, shift = torch.tensor([[1.5, -0.3], [0.2, 0.8]]).double(), torch.tensor([0.1, -2.0]).double()
    affine = lambda p: p @ matrix + shift
    assert torch.allclose(thin_plate_spline(control, affine(control), points), affine(points), atol=1e-8)


def test_fit_similarity_recovers_scale_rotation_translation():
    source = torch.randn(20, 2, dtype=torch.float64)
    a, b = 1.3 * np.exp(0.4j), 2 - 1j
    z = torch.view_as_complex(source.contiguous())
    target = torch.view_as_real(a * z + b)
    fa, fb = fit_similarity(source, target)
    assert abs(complex(fa) - a) < 1e-9 and abs(complex(fb) - b) < 1e-9


# ---------------------------------------------------------------------------------------------- faces

def test_face_landmarks_on_real_photos_at_their_own_resolution(faces, astronaut):
    kp = faces.detect(astronaut)
    assert kp["value"].shape == (468, 2) and tuple(kp["size"]) == (512, 512)      # not resized to a frame_shape
    pixels = (kp["value"] + 1) / 2 * 511
    np.testing.assert_allclose(pixels, FaceMesh()(astronaut) - 0.5, atol=1e-3)      # pixel centres of the photo
    with open_video(sample_path("carphone")) as reader:
        frame = next(reader)                                                        # 176 x 144
    kp = faces.detect(frame)
    assert tuple(kp["size"]) == (176, 144) and np.abs(kp["value"]).max() < 1


def test_a_face_without_motion_stays_unchanged(faces, astronaut):
    still = faces.animate(astronaut, np.stack([astronaut, astronaut]))
    assert still.shape == (2, 512, 512, 3) and np.abs(still - astronaut).max() < 1e-4
    with open_video(sample_path("carphone")) as reader:
        other = next(reader)
    held = faces.animate(astronaut, np.stack([other, other]))                       # another face, holding still
    assert np.abs(held - astronaut).max() < 1e-4
    assert np.abs(faces.animate(astronaut, astronaut[None], relative=False) - astronaut).max() < 1e-4


def test_a_known_head_translation_moves_the_face_by_that_amount(faces, astronaut):
    dx, dy = SHIFT
    out = faces.animate(astronaut, np.stack([astronaut, shifted(astronaut, dx, dy)]))[1]
    before, after = DlibFaces().landmarks(astronaut), DlibFaces().landmarks(out)   # not the model's detector
    np.testing.assert_allclose((after - before).mean(0), SHIFT, atol=1.0)
    # the face's own pixels, moved: inside the landmarks' box the result is the source shifted
    x0, y0 = before.min(0).astype(int) + 8
    x1, y1 = before.max(0).astype(int) - 8
    moved = np.abs(out[y0 + dy:y1 + dy, x0 + dx:x1 + dx] - astronaut[y0:y1, x0:x1]).mean()
    unmoved = np.abs(out[y0:y1, x0:x1] - astronaut[y0:y1, x0:x1]).mean()
    assert moved < 0.15 * unmoved          # what is left: mediapipe's landmarks move ~0.8 px rms under a shift
    assert np.abs(out[:60, 400:] - astronaut[:60, 400:]).max() < 1e-4               # background far away stays


def test_relative_motion_keeps_the_source_face_shape_and_scales_the_motion(faces, astronaut):
    """A driver with another face shape (wider) holding still leaves the source's shape as it is; a
    driver whose face is 1.25 times larger moves the source by its shift / 1.25."""
    model = faces.model
    kp_source = model.detect(faces.to_tensor(astronaut))

    def transfer(frames):
        kp_driving = model.detect(faces.to_tensor(np.stack(frames)))
        return model.transfer_keypoints(kp_source, kp_driving, {k: v[:1] for k, v in kp_driving.items()})["value"]

    wide, large = resized(astronaut, 512, 640), resized(astronaut, 640, 640)
    np.testing.assert_allclose(transfer([wide])[0], kp_source["value"][0], atol=1e-5)
    moved = (transfer([large, shifted(large, 10, 0)])[1] - kp_source["value"][0]).numpy() * 511 / 2  # source pixels
    np.testing.assert_allclose(moved.mean(0), (8, 0), atol=0.7)


def resized(image, h, w):
    x = torch.from_numpy(image).permute(2, 0, 1)[None]
    return torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear")[0].permute(1, 2, 0).numpy()


def test_a_driving_frame_without_a_face_holds_the_last_pose(faces, astronaut):
    blank = np.full_like(astronaut, 0.5)
    out = faces.animate(astronaut, np.stack([astronaut, shifted(astronaut, 6, 0), blank, shifted(astronaut, 6, 0)]),
                        batch_size=2)                                               # the blank frame starts a batch
    assert np.abs(out[2] - out[1]).max() < 1e-5 and np.abs(out[3] - out[1]).max() < 1e-3
    assert np.abs(out[1] - astronaut).mean() > 1e-3


def run_cli(argv) -> tuple[int, str]:
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, err.getvalue()


def test_animate_with_the_builtin_model_at_the_photo_resolution_and_no_face_errors(tmp_path, astronaut):
    from PIL import Image

    with open_video(sample_path("carphone")) as reader:
        driving = np.stack([next(reader) for _ in range(3)])
    write_mp4(tmp_path / "driving.mp4", driving)
    Image.fromarray((astronaut * 255).round().astype(np.uint8)).save(tmp_path / "astronaut.png")
    assert run_cli(["animate", "--model", "faces", "--source", tmp_path / "astronaut.png", "--driving",
                    tmp_path / "driving.mp4", "--output", tmp_path / "out.mp4"])[0] == 0
    with open_video(tmp_path / "out.mp4") as reader:
        frames = list(reader)
    assert len(frames) == 3 and frames[0].shape == (512, 512, 3)
    Image.fromarray(np.full((200, 300, 3), 128, np.uint8)).save(tmp_path / "blank.png")
    write_mp4(tmp_path / "blank.mp4", np.full((2, 144, 176, 3), 128, np.uint8))
    for source, driving, where in (("blank.png", "driving.mp4", "the source image"),
                                   ("astronaut.png", "blank.mp4", "the first driving frame")):
        code, err = run_cli(["animate", "--model", "faces", "--source", tmp_path / source, "--driving",
                             tmp_path / driving, "--output", tmp_path / "bad.mp4"])
        assert code == 2 and f"no face found in {where}" in err and err.count("\n") == 1
        assert not (tmp_path / "bad.mp4").exists()


# ---------------------------------------------------------------------------------------------- bodies

def test_body_landmarks_on_a_body_image_and_no_motion_leaves_it_unchanged(bodies):
    with open_video(sample_path("bigbuckbunny")) as reader:
        frame = [f for i, f in zip(range(61), reader)][-1]                          # 1280 x 720
    kp = bodies.detect(frame)
    assert kp["value"].shape == (33, 2) and tuple(kp["size"]) == (1280, 720)
    assert (kp["visibility"][[11, 12]] > 0.5).all() and np.abs(kp["value"][[0, 11, 12]]).max() < 1
    still = bodies.animate(frame, np.stack([frame, frame]))                        # at the frame's own size
    assert still.shape == (2, 720, 1280, 3) and np.abs(still - frame / 255).max() < 1e-4


def test_a_body_without_motion_stays_unchanged_and_a_translation_moves_it(bodies, astronaut):
    still = bodies.animate(astronaut, np.stack([astronaut, astronaut]))
    assert np.abs(still - astronaut).max() < 1e-4
    # pose landmarks of a spacesuit move by ~10 px when the photo shifts, so the driver is the photo's
    # own landmarks, shifted exactly
    encoded = bodies.encode(astronaut)
    kp = encoded.kp
    driving = {k: torch.cat([v, v]) for k, v in kp.items()}
    driving["value"][1] += torch.tensor(SHIFT) * 2 / 511
    out = bodies.render(encoded, bodies.model.transfer_keypoints(kp, driving, kp))[1]
    points = (kp["value"][0, [0, 11, 12]].numpy() + 1) / 2 * 511                  # nose and shoulders
    centre, half = points.mean(0), (points.max(0) - points.min(0)) / 3              # well inside them
    (x0, y0), (x1, y1) = (centre - half).astype(int), (centre + half).astype(int)
    dx, dy = SHIFT
    source, result, moved = astronaut[y0:y1, x0:x1], out[y0:y1, x0:x1], out[y0 + dy:y1 + dy, x0 + dx:x1 + dx]
    assert np.abs(moved - source).mean() < 0.01 < 0.05 < np.abs(result - source).mean()


def test_no_person_is_a_one_line_error(bodies, astronaut):
    with pytest.raises(MarionetError, match="no person found in the source image") as excinfo:
        bodies.animate(np.full((128, 128, 3), 0.5, np.float32), astronaut[None])
    assert "\n" not in str(excinfo.value)


# ---------------------------------------------------------------------------------------------- config

def test_the_builtin_models_carry_only_their_configs():
    for name in ("faces", "bodies"):
        states, config, official = read_checkpoint(BUILTIN_MODELS[name])
        assert states == {} and not official and config == load_config(name)
    # with the config of another family: a one-line error, not random weights or the other model
    for config, family in (("vox-256", "fomm"), ("bodies", "bodies")):
        with pytest.raises(MarionetError, match=rf"faces.safetensors: a faces checkpoint, but {config} is a "
                                                rf"{family} config"):
            marionet.load(BUILTIN_MODELS["faces"], config=config)


@pytest.mark.parametrize("section, key, value, message", [
    ("warp_params", "band", 0, r"model_params.warp_params.band: must be a number in \(0, 1\]"),
    ("warp_params", "still_background", "yes", "model_params.warp_params.still_background: must be true or false"),
    ("warp_params", "gird", 64, "model_params.warp_params: .*'gird'"),
    ("transfer_params", "expression", 1.5, r"model_params.transfer_params.expression: must be a number in \(0, 1\]"),
])
def test_bad_config_values_are_one_line_errors(section, key, value, message):
    config = load_config("faces")
    config["model_params"][section][key] = value
    with pytest.raises(MarionetError, match=f"my.yaml: {message}"):
        build_model(config, "my.yaml")
    with pytest.raises(MarionetError, match="no weights to train"):
        build_model(load_config("faces")).objective(None)
