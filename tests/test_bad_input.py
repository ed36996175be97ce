"""The bad-input corpus: every case through the CLI ends with exit status 2 (130 when interrupted), one
line on stderr naming the file or option and the problem, no traceback, and nothing new or changed on
disk. Interruptions are sent to a real process mid-run."""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from marionet.cli import main
from marionet.data.puppets import synthesize
from media import moving_frames, write_audio_only_mp4, write_mp4

HERE = Path(__file__).resolve().parent
TINY = HERE / "configs" / "tiny-fomm.yaml"
FOMM = HERE / "fixtures" / "fomm"
ENV = dict(os.environ, PYTHONPATH=str(HERE), OMP_NUM_THREADS="1")


def snapshot(root: Path) -> dict:
    """Every file and folder below root, with size and modification time."""
    return {str(p.relative_to(root)): (p.is_dir(), p.stat().st_size if p.is_file() else 0, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def run_cli(argv) -> tuple[int, str]:
    """(exit status, stderr) of ``marionet ARGV`` in this process (argparse errors exit by SystemExit)."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:
            code = e.code
    return code, err.getvalue()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The inputs every case draws from, made once."""
    root = tmp_path_factory.mktemp("world")
    write_mp4(root / "driving.mp4", moving_frames(3))
    Image.fromarray(moving_frames(1)[0]).save(root / "source.png")
    synthesize(root / "puppets", videos=4, frames=4, size=64, kind="humanoid", seed=3)
    (root / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    write_audio_only_mp4(root / "silent.mp4")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (root / "notes.txt").write_text("not a video")
    (root / "empty-frames").mkdir()
    mixed = root / "mixed-frames"
    mixed.mkdir()
    Image.fromarray(moving_frames(1, 64)[0]).save(mixed / "0.png")
    Image.fromarray(moving_frames(1, 32)[0]).save(mixed / "1.png")
    checkpoint = (FOMM / "small-cpk.pth.tar").read_bytes()
    (root / "truncated.pth.tar").write_bytes(checkpoint[: len(checkpoint) // 2])
    torch.save({"generator": {"w": torch.zeros(1)}, "evil": Path("x")}, root / "pickled.pth.tar")
    (root / "invalid.yaml").write_text("model_params: [unclosed\n")
    (root / "no-model.yaml").write_text("train_params: {}\n")
    (root / "a-file").write_text("a file where a folder should be")
    base = yaml.safe_load((FOMM / "small.yaml").read_text())
    for name, (section, key, value) in {
            "num-kp.yaml": ("common_params", "num_kp", -3),
            "scale.yaml": ("kp_detector_params", "scale_factor", 0),
            "blocks.yaml": ("generator_params", "num_down_blocks", "two")}.items():
        config = yaml.safe_load(yaml.safe_dump(base))
        config["model_params"][section][key] = value
        (root / name).write_text(yaml.safe_dump(config))
    config = yaml.safe_load(yaml.safe_dump(base))
    config["dataset_params"]["frame_shape"] = [0, 0, 3]
    (root / "frame-shape.yaml").write_text(yaml.safe_dump(config))
    config["dataset_params"]["frame_shape"] = [60, 60, 3]
    (root / "odd-size.yaml").write_text(yaml.safe_dump(config))
    config = yaml.safe_load(TINY.read_text())
    config["train_params"]["loss_weights"]["perceptul"] = [1]
    (root / "typo.yaml").write_text(yaml.safe_dump(config))
    (root / "run").mkdir()
    (root / "run" / "train_state.pt").write_bytes(b"an earlier run")
    return root


def animate(world, **change):
    args = {"--config": FOMM / "small.yaml", "--checkpoint": FOMM / "small-cpk.pth.tar",
            "--source": world / "source.png", "--driving": world / "driving.mp4", "--output": world / "out" / "r.mp4"}
    args.update(change)
    return ["animate"] + [x for k, v in args.items() if v is not None for x in (k, v)]


def train(world, *extra):
    return ["train", "--config", TINY, "--data", world / "puppets", "--out", world / "new-run", "--workers", "0",
            "--steps", "2", *extra]


CASES = {  # name -> (argv from world, text the one line must hold)
    "animate: missing source": (lambda w: animate(w, **{"--source": w / "nope.png"}), "nope.png"),
    "animate: source is a folder": (lambda w: animate(w, **{"--source": w / "puppets"}), "is a folder"),
    "animate: corrupt image": (lambda w: animate(w, **{"--source": w / "broken.png"}), "broken.png"),
    "animate: missing driving": (lambda w: animate(w, **{"--driving": w / "nope.mp4"}), "nope.mp4"),
    "animate: corrupt video": (lambda w: animate(w, **{"--driving": w / "corrupt.mp4"}), "corrupt.mp4"),
    "animate: video without frames": (lambda w: animate(w, **{"--driving": w / "silent.mp4"}), "silent.mp4"),
    "animate: driving of unknown format": (lambda w: animate(w, **{"--driving": w / "notes.txt"}), "notes.txt"),
    "animate: empty frame folder": (lambda w: animate(w, **{"--driving": w / "empty-frames"}), "empty-frames"),
    "animate: frames of two sizes": (lambda w: animate(w, **{"--driving": w / "mixed-frames"}), "1.png"),
    "animate: unknown output format": (lambda w: animate(w, **{"--output": w / "out.avi2"}), "out.avi2"),
    "animate: read-only mp4 output": (lambda w: animate(w, **{"--output": w / "a-file" / "r.mp4"}), "a-file"),
    "animate: read-only gif output": (lambda w: animate(w, **{"--output": w / "a-file" / "r.gif"}), "a-file"),
    "animate: read-only folder output": (lambda w: animate(w, **{"--output": w / "a-file" / "frames"}), "a-file"),
    "animate: missing checkpoint": (lambda w: animate(w, **{"--checkpoint": w / "none.pth.tar"}), "none.pth.tar"),
    "animate: truncated checkpoint": (lambda w: animate(w, **{"--checkpoint": w / "truncated.pth.tar"}),
                                      "truncated.pth.tar"),
    "animate: checkpoint holding code": (lambda w: animate(w, **{"--checkpoint": w / "pickled.pth.tar"}),
                                         "pickled.pth.tar"),
    "animate: checkpoint not matching config": (lambda w: animate(w, **{"--config": "vox-256"}), "small-cpk.pth.tar"),
    "animate: official checkpoint without config": (lambda w: animate(w, **{"--config": None}), "give its config"),
    "animate: missing config": (lambda w: animate(w, **{"--config": w / "none.yaml"}), "none.yaml"),
    "animate: invalid YAML": (lambda w: animate(w, **{"--config": w / "invalid.yaml"}), "invalid.yaml"),
    "animate: config without model_params": (lambda w: animate(w, **{"--config": w / "no-model.yaml"}),
                                             "no-model.yaml"),
    "animate: negative num_kp": (lambda w: animate(w, **{"--config": w / "num-kp.yaml"}), "num_kp"),
    "animate: zero scale_factor": (lambda w: animate(w, **{"--config": w / "scale.yaml"}), "scale_factor"),
    "animate: ill-typed num_down_blocks": (lambda w: animate(w, **{"--config": w / "blocks.yaml"}),
                                           "num_down_blocks"),
    "animate: zero frame_shape": (lambda w: animate(w, **{"--config": w / "frame-shape.yaml"}), "frame_shape"),
    "animate: frame size the hourglass cannot divide": (lambda w: animate(w, **{"--config": w / "odd-size.yaml"}),
                                                        "frame_shape"),
    "animate: unknown built-in model": (lambda w: animate(w, **{"--config": None, "--checkpoint": None,
                                                                "--model": "vox"}), "built-in: puppets"),
    "animate: untrained model": (lambda w: animate(w, **{"--config": "vox-256", "--checkpoint": None}),
                                 "--allow-untrained"),
    "animate: --model and --checkpoint": (lambda w: animate(w, **{"--model": "puppets"}), "not both"),
    "animate: batch size 0": (lambda w: animate(w) + ["--batch-size", "0"], "--batch-size"),
    "animate: unknown fit": (lambda w: animate(w) + ["--fit", "squash"], "--fit"),
    "animate: unknown device": (lambda w: animate(w) + ["--device", "tpu"], "tpu"),
    "animate: missing argument": (lambda w: ["animate", "--source", w / "source.png"], "--driving"),
    "train: workers -1": (lambda w: train(w, "--workers", "-1"), "--workers"),
    "train: steps 0": (lambda w: train(w, "--steps", "0"), "--steps"),
    "train: run exists": (lambda w: train(w)[:5] + ["--out", w / "run", "--steps", "2"], "already holds a run"),
    "train: nothing to resume": (lambda w: train(w, "--resume"), "nothing to resume"),
    "train: missing data": (lambda w: ["train", "--config", TINY, "--data", w / "nodata", "--out", w / "r2"],
                            "nodata"),
    "train: data without videos": (lambda w: ["train", "--config", TINY, "--data", w / "empty-frames",
                                              "--out", w / "r3"], "empty-frames"),
    "train: unknown loss weight": (lambda w: ["train", "--config", w / "typo.yaml", "--data", w / "puppets",
                                              "--out", w / "r4"], "perceptul"),
    "train: bad --init": (lambda w: train(w, "--init", w / "corrupt.mp4"), "corrupt.mp4"),
    "train: unwritable run directory": (lambda w: ["train", "--config", TINY, "--data", w / "puppets",
                                                   "--out", w / "a-file" / "run"], "a-file"),
    "reconstruct: max videos 0": (lambda w: ["reconstruct", "--model", "puppets", "--data", w / "puppets",
                                             "--out", w / "rec", "--max-videos", "0"], "--max-videos"),
    "reconstruct: batch size 0": (lambda w: ["reconstruct", "--model", "puppets", "--data", w / "puppets",
                                             "--out", w / "rec", "--batch-size", "0"], "--batch-size"),
    "reconstruct: missing data": (lambda w: ["reconstruct", "--model", "puppets", "--data", w / "nodata",
                                             "--out", w / "rec"], "nodata"),
    "reconstruct: unwritable output": (lambda w: ["reconstruct", "--model", "puppets", "--data", w / "puppets",
                                                  "--out", w / "a-file" / "rec"], "a-file"),
    "synth: unwritable output": (lambda w: ["synth", "--out", w / "a-file" / "data", "--videos", "2",
                                            "--frames", "2", "--quiet"], "a-file"),
    "synth: existing output": (lambda w: ["synth", "--out", w / "puppets", "--videos", "2", "--quiet"],
                               "already exists"),
    "synth: one video": (lambda w: ["synth", "--out", w / "s", "--videos", "1", "--quiet"], "--videos"),
    "predict: frames 0": (lambda w: ["predict", "--checkpoint", "puppets", "--source", w / "source.png",
                                     "--frames", "0", "--output", w / "p.mp4"], "--frames"),
    "predict: no predictor": (lambda w: ["predict", "--checkpoint", FOMM / "small-cpk.pth.tar", "--config",
                                         FOMM / "small.yaml", "--source", w / "source.png", "--frames", "3",
                                         "--output", w / "p.mp4"], "predictor.safetensors"),
    "train-predictor: keypoints without covariances": (
        lambda w: ["train-predictor", "--checkpoint", FOMM / "small-cpk.pth.tar", "--config", FOMM / "small.yaml",
                   "--data", w / "puppets"], "covariances"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_exit_2_and_touches_nothing(world, name):
    argv, expected = CASES[name]
    before = snapshot(world)
    code, err = run_cli(argv(world))
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], err
    assert "Traceback" not in err
    assert snapshot(world) == before        # nothing new (not even a temporary) and nothing changed


def test_version():
    code, _ = run_cli(["--version"])
    assert code == 0


def test_the_network_guard_catches_a_connect():
    import socket

    import netguard
    with socket.socket() as s, pytest.raises(OSError, match="network use in a test"):
        s.connect(("192.0.2.1", 80))     # TEST-NET-1: never routed
    netguard.attempts.clear()


# ---------------------------------------------------------------------------------------------- interruption

def start(argv, cwd) -> subprocess.Popen:
    import netguard
    return subprocess.Popen([sys.executable, "-c", netguard.GUARD, *map(str, argv)], cwd=cwd, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, process, timeout=120):
    deadline = time.time() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("sig, output", [(signal.SIGTERM, "result.mp4"), (signal.SIGINT, "frames")])
def test_interrupted_animate_leaves_nothing(tmp_path, sig, output):
    write_mp4(tmp_path / "long.mp4", moving_frames(1500, 64))
    Image.fromarray(moving_frames(1)[0]).save(tmp_path / "source.png")
    out = tmp_path / "out"
    out.mkdir()
    process = start(["animate", "--config", FOMM / "small.yaml", "--checkpoint", FOMM / "small-cpk.pth.tar",
                     "--source", tmp_path / "source.png", "--driving", tmp_path / "long.mp4",
                     "--output", out / output], tmp_path)
    if output == "frames":   # frames are being written into the hidden temporary folder
        wait_for(lambda: any(len(os.listdir(p)) > 20 for p in out.iterdir()), process)
    else:                    # the encoder buffers: give it a moment after the temporary appears
        wait_for(lambda: any(out.iterdir()), process)
        time.sleep(1.0)
    process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err.strip().splitlines() == ["marionet animate: interrupted"]
    assert os.listdir(out) == []


def _weights(run):
    from safetensors.torch import load_file
    return load_file(run / "model.safetensors")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_training_saves_and_resumes_to_the_same_weights(tmp_path, sig):
    synthesize(tmp_path / "data", videos=6, frames=6, size=64, kind="humanoid", seed=3)
    common = ["--config", TINY, "--data", tmp_path / "data", "--steps", "8", "--batch-size", "2", "--workers", "0",
              "--checkpoint-every", "100"]
    full = start(["train", *common, "--out", tmp_path / "full"], tmp_path)
    stop_at = random.Random(sig).randint(2, 6)
    log = tmp_path / "cut" / "log.csv"
    cut = start(["train", *common, "--out", tmp_path / "cut"], tmp_path)
    wait_for(lambda: log.exists() and len(log.read_text().splitlines()) > stop_at, cut)  # header + stop_at rows
    cut.send_signal(sig)
    _, err = cut.communicate(timeout=120)
    assert cut.returncode == 130, err
    assert "interrupted: saved" in err and "--resume" in err
    stopped = torch.load(tmp_path / "cut" / "train_state.pt", weights_only=True)["step"]
    assert stop_at <= stopped < 8
    resumed = start(["train", *common, "--out", tmp_path / "cut", "--resume"], tmp_path)
    assert resumed.wait(timeout=300) == 0, resumed.communicate()
    assert full.wait(timeout=300) == 0, full.communicate()
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_demo_and_training_without_vgg_weights_use_no_network(tmp_path):
    """The demo and a training run with no VGG19 weights anywhere: the audit hook sees no connection
    and no name lookup (exit status 99 if it did)."""
    env = dict(ENV, TORCH_HOME=str(tmp_path / "torch-home"))
    env.pop("MARIONET_VGG19_WEIGHTS", None)
    import netguard
    demo = subprocess.run([sys.executable, "-c", netguard.GUARD, "demo", "--out-dir", str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert demo.returncode == 0, demo.stderr
    synthesize(tmp_path / "data", videos=4, frames=4, size=64, kind="humanoid", seed=1)
    config = yaml.safe_load(TINY.read_text())
    (tmp_path / "vgg.yaml").write_text(yaml.safe_dump(config))
    run = subprocess.run([sys.executable, "-c", netguard.GUARD, "train", "--config", str(tmp_path / "vgg.yaml"),
                          "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--steps", "1",
                          "--workers", "0"], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "perceptual loss: pixel-space pyramid: no VGG19 weights found" in run.stderr
