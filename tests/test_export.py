"""ONNX export (issue #20): graphs checked against PyTorch, dynamic batch axes, `marionet export`, and
`marionet animate --backend onnxruntime` from an exported folder or a cache beside the checkpoint."""
import json
import os
import shutil
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import marionet
from marionet.cli import main
from marionet.errors import MarionetError
from media import moving_frames, write_mp4

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from marionet.export import MANIFEST, cache_dir, check_frames, export_onnx, onnx_pipeline, require  # noqa: E402
from marionet.inference.ort import OnnxModel  # noqa: E402

TOL = 1e-4


def load(fixtures, family):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return marionet.load(checkpoint=fixtures / family / "small-cpk.pth.tar", config=fixtures / family / "small.yaml")


@pytest.fixture(scope="module")
def fomm_export(fixtures, tmp_path_factory):
    """`marionet export` of the small FOMM (official checkpoint + config)."""
    out = tmp_path_factory.mktemp("export") / "fomm-onnx"
    assert main(["export", "--config", str(fixtures / "fomm" / "small.yaml"),
                 "--checkpoint", str(fixtures / "fomm" / "small-cpk.pth.tar"), "--format", "onnx",
                 "--out", str(out)]) == 0
    return out


def test_export_writes_the_graphs_their_config_and_the_check(fomm_export, fixtures):
    manifest = json.loads((fomm_export / MANIFEST).read_text())
    assert set(manifest["graphs"]) == {"detector", "encoder", "generator"}
    for graph in manifest["graphs"]:
        assert (fomm_export / f"{graph}.onnx").stat().st_size > 10_000
    assert manifest["keypoint_fields"] == ["value", "jacobian"]
    assert manifest["checkpoint"]["name"] == "small-cpk.pth.tar" and len(manifest["checkpoint"]["sha256"]) == 64
    assert max(manifest["max_abs_diff"].values()) <= TOL
    config = marionet.load(checkpoint=fixtures / "fomm" / "small-cpk.pth.tar",
                           config=fixtures / "fomm" / "small.yaml").config
    assert (fomm_export / "config.yaml").is_file()
    assert OnnxModel(fomm_export).config["model_params"] == config["model_params"]


def test_the_batch_axis_is_dynamic(fomm_export, fixtures):
    model, onnx_model = load(fixtures, "fomm").model, OnnxModel(fomm_export)
    frames = check_frames(7, 3, 64, 64, seed=3)
    with torch.no_grad():
        for b in (1, 2, 6):
            kp, kp_onnx = model.detect(frames[1:1 + b]), onnx_model.detect(frames[1:1 + b])
            assert kp_onnx["value"].shape == (b, 10, 2)
            torch.testing.assert_close(kp_onnx["jacobian"], kp["jacobian"], atol=TOL, rtol=0)
            source, features = frames[:1], model.encode_source(frames[:1])
            kp_source = model.detect(source)
            expected = model.generate(source, kp_source, kp, features)["prediction"]
            got = onnx_model.generate(source, kp_source, kp, onnx_model.encode_source(source))["prediction"]
            assert got.shape == (b, 3, 64, 64)
            torch.testing.assert_close(got, expected, atol=TOL, rtol=0)


@pytest.mark.parametrize("mode", ["relative", "absolute"])
def test_fomm_frames_match_pytorch(fomm_export, fixtures, mode):
    case = np.load(fixtures / "fomm" / "case.npz")
    relative = mode == "relative"
    expected = load(fixtures, "fomm").animate(case["source"], case["driving"], relative=relative, adapt_scale=relative)
    got = onnx_pipeline(fomm_export).animate(case["source"], case["driving"], relative=relative, adapt_scale=relative,
                                             batch_size=4)
    np.testing.assert_allclose(got, expected, atol=TOL, rtol=0)


def test_monkeynet_exports_and_matches_pytorch(fixtures, tmp_path):
    pipeline = load(fixtures, "monkey-net")
    manifest = export_onnx(pipeline, tmp_path / "mn")
    assert manifest["keypoint_fields"] == ["value", "covariance"] and max(manifest["max_abs_diff"].values()) <= TOL
    case = np.load(fixtures / "monkey-net" / "case.npz")
    onnx = onnx_pipeline(tmp_path / "mn")
    source, driving = pipeline.to_tensor(case["source"]), pipeline.to_tensor(case["driving"])
    with torch.no_grad():  # each graph on the same inputs as PyTorch: within 1e-4
        for field, value in pipeline.model.detect(driving).items():
            torch.testing.assert_close(onnx.model.detect(driving)[field], value, atol=TOL, rtol=0)
        kp_source, kp_driving = pipeline.model.detect(source), pipeline.model.detect(driving)
        features = pipeline.model.encode_source(source)
        expected = pipeline.model.generate(source, kp_source, kp_driving, features)["prediction"]
        got = onnx.model.generate(source, kp_source, kp_driving, onnx.model.encode_source(source))["prediction"]
        torch.testing.assert_close(got, expected, atol=TOL, rtol=0)
    # end to end, the generator sees onnxruntime's keypoints; Monkey-Net's variance clip amplifies their
    # rounding, so frames agree to the fixture's float32 image tolerance (tests/fixtures/monkey-net/README.md)
    np.testing.assert_allclose(onnx.animate(case["source"], case["driving"]),
                               pipeline.animate(case["source"], case["driving"]), atol=2e-3, rtol=0)


@pytest.fixture()
def media(tmp_path):
    driving = tmp_path / "driving.mp4"
    write_mp4(driving, moving_frames(6, 64), fps=10)
    source = tmp_path / "source.png"
    Image.fromarray(moving_frames(1, 64, seed=3)[0]).save(source)
    return ["--source", str(source), "--driving", str(driving)]


def frames_of(folder):
    return np.stack([np.asarray(Image.open(p), np.float32) / 255 for p in sorted(folder.glob("*.png"))])


def test_cli_backend_onnxruntime_from_an_exported_folder(fomm_export, fixtures, media, tmp_path):
    assert main(["animate", "--checkpoint", str(fomm_export), "--backend", "onnxruntime", *media,
                 "--output", str(tmp_path / "onnx")]) == 0
    assert main(["animate", "--config", str(fixtures / "fomm" / "small.yaml"), "--checkpoint",
                 str(fixtures / "fomm" / "small-cpk.pth.tar"), *media, "--output", str(tmp_path / "torch")]) == 0
    onnx, torch_ = frames_of(tmp_path / "onnx"), frames_of(tmp_path / "torch")
    assert onnx.shape == torch_.shape == (6, 64, 64, 3)
    assert np.abs(onnx - torch_).max() <= 1 / 255 + 1e-6  # PNG rounding of frames within 1e-4


def test_cli_backend_onnxruntime_caches_the_export_beside_the_checkpoint(fomm_export, fixtures, media, tmp_path,
                                                                         monkeypatch):
    import marionet.export as export

    checkpoint = tmp_path / "model" / "small-cpk.pth.tar"
    checkpoint.parent.mkdir()
    shutil.copy(fixtures / "fomm" / "small-cpk.pth.tar", checkpoint)
    exports = []

    def exported(pipeline, folder, checkpoint=None, progress=None):  # the real export is tested above
        exports.append((folder, checkpoint))
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(fomm_export, folder)
        manifest = json.loads((folder / MANIFEST).read_text()) | {"checkpoint": export.checkpoint_stamp(checkpoint)}
        (folder / MANIFEST).write_text(json.dumps(manifest))

    monkeypatch.setattr(export, "export_onnx", exported)
    args = ["animate", "--config", str(fixtures / "fomm" / "small.yaml"), "--checkpoint", str(checkpoint),
            "--backend", "onnxruntime", *media]
    assert main(args + ["--output", str(tmp_path / "a")]) == 0
    cache = checkpoint.parent / "small-cpk.pth.tar.onnx"
    assert exports == [(cache, checkpoint)] and cache_dir(checkpoint) == cache
    assert main(args + ["--output", str(tmp_path / "b")]) == 0
    assert len(exports) == 1  # reused
    np.testing.assert_array_equal(frames_of(tmp_path / "a"), frames_of(tmp_path / "b"))
    stamp = checkpoint.stat().st_mtime_ns
    os.utime(checkpoint, ns=(stamp, stamp + 10 ** 9))  # a changed checkpoint makes the cache stale
    assert main(args + ["--output", str(tmp_path / "c")]) == 0
    assert len(exports) == 2


def test_builtin_models_cache_in_the_user_cache(monkeypatch, tmp_path):
    from marionet.checkpoints import BUILTIN_MODELS

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = cache_dir(BUILTIN_MODELS["puppets"], builtin=True)
    assert folder.is_relative_to(tmp_path / "marionet" / "onnx")


def test_bad_input_is_one_line_and_writes_nothing(fomm_export, fixtures, media, tmp_path, capsys):
    def fails(*argv):
        capsys.readouterr()
        assert main(list(argv)) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "error" in err
        return err

    out = tmp_path / "out.mp4"
    assert "--precision int8" in fails("animate", "--checkpoint", str(fomm_export), "--backend", "onnxruntime",
                                       "--precision", "int8", *media, "--output", str(out))
    not_export = tmp_path / "folder"
    not_export.mkdir()
    assert str(not_export) in fails("animate", "--checkpoint", str(not_export), "--backend", "onnxruntime", *media,
                                    "--output", str(out))
    broken = tmp_path / "broken"
    shutil.copytree(fomm_export, broken)
    (broken / MANIFEST).write_text("{ not json")
    assert "broken" in fails("animate", "--checkpoint", str(broken), "--backend", "onnxruntime", *media,
                             "--output", str(out))
    (broken / MANIFEST).write_text((fomm_export / MANIFEST).read_text())
    (broken / "generator.onnx").write_bytes(b"garbage")
    assert "generator.onnx" in fails("animate", "--checkpoint", str(broken), "--backend", "onnxruntime", *media,
                                     "--output", str(out))
    assert not out.exists()
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    assert "not a marionet export" in fails("export", "--config", str(fixtures / "fomm" / "small.yaml"),
                                            "--checkpoint", str(fixtures / "fomm" / "small-cpk.pth.tar"),
                                            "--out", str(occupied))
    assert [p.name for p in occupied.iterdir()] == ["keep.txt"]


def test_a_failed_check_leaves_nothing(fixtures, tmp_path, monkeypatch):
    import marionet.export as export

    monkeypatch.setattr(export, "_export", lambda module, args, names, outputs, axes, path: path.write_bytes(b"x"))
    monkeypatch.setattr(export, "check_export", lambda *a: {"generator": 0.5})
    with pytest.raises(MarionetError, match="differ from PyTorch"):
        export_onnx(load(fixtures, "fomm"), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_missing_extra_names_it():
    with pytest.raises(MarionetError, match=r"marionet\[export\]"):
        require("onnxruntime_that_is_not_installed")
