"""`marionet animate` end to end on generated videos, and its handling of bad input."""
import os

import av
import numpy as np
import pytest
from PIL import Image

from marionet.checkpoints import save_checkpoint
from marionet.cli import main
from marionet.data.video import VideoWriter
from media import moving_frames, write_audio_only_mp4, write_mp4


@pytest.fixture(scope="module")
def model_args(fixtures):
    return ["--config", str(fixtures / "fomm" / "small.yaml"),
            "--checkpoint", str(fixtures / "fomm" / "small-cpk.pth.tar")]


@pytest.fixture()
def source(tmp_path):
    """An RGBA image of another size than the model's 64x64."""
    rgba = np.zeros((90, 120, 4), np.uint8)
    rgba[..., :3] = moving_frames(1, 120)[0][:90]
    rgba[..., 3] = 255
    rgba[:10, :10, 3] = 0
    path = tmp_path / "source.png"
    Image.fromarray(rgba, "RGBA").save(path)
    return path


def animate(model_args, source, driving, output, *extra):
    return main(["animate", *model_args, "--source", str(source), "--driving", str(driving), "--output", str(output),
                 *extra])


def probe(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = sum(1 for _ in c.decode(video=0))
        return frames, float(v.average_rate), (v.height, v.width), len(c.streams.audio)


@pytest.mark.parametrize("audio", [True, False])
def test_mp4_to_mp4_keeps_fps_and_audio(model_args, source, tmp_path, audio):
    driving = tmp_path / "driving.mp4"
    write_mp4(driving, moving_frames(12, 96), fps=10, audio=audio)
    out = tmp_path / "out.mp4"
    assert animate(model_args, source, driving, out) == 0
    frames, fps, size, audio_tracks = probe(out)
    assert (frames, fps, size, audio_tracks) == (12, 10.0, (64, 64), int(audio))


def test_gif_in_gif_out_and_frame_folders(model_args, source, tmp_path):
    gif = tmp_path / "driving.gif"
    with VideoWriter(gif, fps=5) as w:
        for f in moving_frames(5):
            w.write(f)
    out_gif = tmp_path / "out.gif"
    assert animate(model_args, source, gif, out_gif, "--absolute") == 0
    with Image.open(out_gif) as im:
        assert im.n_frames == 5 and im.size == (64, 64)

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(moving_frames(4)):
        Image.fromarray(f).save(folder / f"f{i}.png")
    out_dir = tmp_path / "out_frames"
    assert animate(model_args, source, folder, out_dir, "--no-adapt-scale", "--batch-size", "3") == 0
    assert sorted(os.listdir(out_dir)) == [f"{i:06d}.png" for i in range(4)]


def test_output_frames_follow_the_driving_video(model_args, source, tmp_path):
    """Folder output is lossless: frames equal what the Python API returns for the same inputs."""
    import marionet
    from marionet.data.video import read_image

    frames = moving_frames(3)
    folder = tmp_path / "drv"
    folder.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i}.png")
    assert animate(model_args, source, folder, tmp_path / "out") == 0
    model = marionet.load(checkpoint=model_args[3], config=model_args[1])
    expect = model.animate(read_image(source), frames.astype(np.float32) / 255)
    got = np.stack([np.asarray(Image.open(tmp_path / "out" / f"{i:06d}.png")) for i in range(3)])
    assert np.abs(got.astype(int) - (expect * 255).round()).max() <= 1


def test_marionet_checkpoint_needs_no_config(model_args, source, tmp_path, fixtures):
    import marionet

    model = marionet.load(checkpoint=model_args[3], config=model_args[1])
    own = tmp_path / "m.safetensors"
    save_checkpoint(own, model.model, model.config)
    driving = tmp_path / "d.mp4"
    write_mp4(driving, moving_frames(3))
    assert main(["animate", "--checkpoint", str(own), "--source", str(source), "--driving", str(driving),
                 "--output", str(tmp_path / "o.mp4")]) == 0


def bad_case(kind, tmp_path, fixtures, model_args, source):
    driving = tmp_path / "driving.mp4"
    write_mp4(driving, moving_frames(3))
    args = dict(model=model_args, source=source, driving=driving)
    if kind == "missing source":
        args["source"] = tmp_path / "nope.png"
    elif kind == "missing driving":
        args["driving"] = tmp_path / "nope.mp4"
    elif kind == "corrupt video":
        args["driving"] = tmp_path / "corrupt.mp4"
        args["driving"].write_bytes(os.urandom(5000))
    elif kind == "zero-frame video":
        args["driving"] = tmp_path / "silent.mp4"
        write_audio_only_mp4(args["driving"])
    elif kind == "corrupt image":
        args["source"] = tmp_path / "broken.png"
        args["source"].write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    elif kind == "checkpoint not matching config":
        args["model"] = ["--config", "vox-256", "--checkpoint", model_args[3]]
    elif kind == "missing checkpoint":
        args["model"] = ["--config", model_args[1], "--checkpoint", str(tmp_path / "none.pth.tar")]
    return args


BAD = {"missing source": "nope.png", "missing driving": "nope.mp4", "corrupt video": "corrupt.mp4",
       "zero-frame video": "silent.mp4", "corrupt image": "broken.png",
       "checkpoint not matching config": "small-cpk.pth.tar", "missing checkpoint": "none.pth.tar"}


@pytest.mark.parametrize("kind", list(BAD))
@pytest.mark.parametrize("suffix", [".mp4", ""])
def test_bad_input_one_line_error_and_no_output(kind, suffix, tmp_path, fixtures, model_args, source, capsys):
    args = bad_case(kind, tmp_path, fixtures, model_args, source)
    out_dir = tmp_path / "results"
    out_dir.mkdir()
    output = out_dir / f"result{suffix}"
    code = animate(args["model"], args["source"], args["driving"], output)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and BAD[kind] in err, err
    assert os.listdir(out_dir) == []  # nothing written, not even a temporary file


def test_failure_leaves_previous_output_untouched(model_args, source, tmp_path, capsys):
    output = tmp_path / "result.mp4"
    output.write_bytes(b"previous result")
    corrupt = tmp_path / "corrupt.webm"
    corrupt.write_bytes(os.urandom(3000))
    assert animate(model_args, source, corrupt, output) == 2
    assert output.read_bytes() == b"previous result"


def test_unknown_output_format(model_args, source, tmp_path, capsys):
    driving = tmp_path / "d.mp4"
    write_mp4(driving, moving_frames(2))
    assert animate(model_args, source, driving, tmp_path / "out.avi2") == 2
    assert "unknown output format" in capsys.readouterr().err
