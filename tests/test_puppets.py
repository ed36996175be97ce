"""Synthetic puppets: determinism, ground truth on the rendered parts, paired motion, dataset layout, CLI."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from marionet.data.puppets import (KINDS, ground_truth_path, load_ground_truth, render_video,
                                   synthesize)
from marionet.errors import MarionetError

ALL_KINDS = sorted(KINDS)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_same_seed_same_bytes_other_seed_other_identity(kind):
    a, ga = render_video(kind, 48, 6, seed=7)
    b, gb = render_video(kind, 48, 6, seed=7)
    assert a.dtype == np.uint8 and a.shape == (6, 48, 48, 3)
    assert a.tobytes() == b.tobytes()
    for k in ("joints", "visible", "masks", "angles", "global_motion", "part_colors"):
        assert np.array_equal(ga[k], gb[k], equal_nan=k == "part_colors"), k
    c, gc = render_video(kind, 48, 6, seed=8)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 5
    assert not np.array_equal(ga["part_colors"], gc["part_colors"], equal_nan=True)
    assert not np.allclose(ga["joints"], gc["joints"])


def test_frames_do_not_depend_on_length_or_chunking():
    # at 128x128 the rasteriser works in chunks of 16 frames: 5 frames are one chunk, 20 are two
    a, ga = render_video("face", 128, 5, seed=3)
    b, gb = render_video("face", 128, 20, seed=3)
    assert np.array_equal(a, b[:5]) and np.array_equal(ga["joints"], gb["joints"][:5])
    assert np.array_equal(ga["masks"], gb["masks"][:5])


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_ground_truth_shapes(kind):
    T, S = 5, 40
    frames, gt = render_video(kind, S, T, seed=1)
    J, P = len(KINDS[kind].joints), len(KINDS[kind].parts)
    assert gt["joints"].shape == (T, J, 2) and gt["joints"].dtype == np.float32
    assert gt["visible"].shape == (T, J) and gt["visible"].dtype == bool
    assert gt["masks"].shape == (T, S, S) and gt["masks"].max() <= P
    assert gt["joint_names"].shape == (J,) and gt["part_names"].shape == (P,)
    assert gt["edges"].max() < J and gt["angles"].shape == (T, len(gt["angle_names"]))
    assert gt["global_motion"].shape == (T, 4)
    assert gt["kind"] == kind and gt["size"] == S and gt["seed"] == 1


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_joints_land_on_their_parts(kind):
    """At a visible joint the mask holds one of the joint's parts and the pixel has that part's
    colours (independent of the mask: a joint off its part would pick up other colours); most
    joints are visible."""
    S, T = 64, 8
    on_colour = total = 0
    vis_rate = []
    for seed in range(4):
        frames, gt = render_video(kind, S, T, seed=100 + seed)
        J = gt["joints"]
        xi, yi = np.floor(J[..., 0]).astype(int), np.floor(J[..., 1]).astype(int)
        vis = gt["visible"]
        vis_rate.append(vis.mean())
        for t, j in zip(*np.nonzero(vis)):
            label = gt["masks"][t, yi[t, j], xi[t, j]]
            assert label in gt["joint_parts"][j] and label > 0
            pal = gt["part_colors"][label - 1]
            pal = pal[~np.isnan(pal[:, 0])] * 255
            px = frames[t, yi[t, j], xi[t, j]].astype(float)
            lo, hi = pal.min(0) * 0.6 - 3, pal.max(0) + 3  # shading darkens by up to 35%
            on_colour += bool(((px >= lo) & (px <= hi)).all())
            total += 1
        assert (gt["masks"] > 0).mean() > 0.03  # the puppet covers a fair part of the frame
    assert total > 0 and on_colour / total > 0.93, on_colour / total  # ~0.5 if joints were 3 px off
    assert np.mean(vis_rate) > 0.7


def test_paired_motion_is_shared():
    """'Same motion' = identical joint-angle and global trajectories; with the same proportions
    (shape_seed) the pixel joints are identical too, while the look differs."""
    a, ga = render_video("humanoid", 48, 6, seed=1, motion_seed=99)
    b, gb = render_video("humanoid", 48, 6, seed=2, motion_seed=99)
    assert np.array_equal(ga["angles"], gb["angles"])
    assert np.array_equal(ga["global_motion"], gb["global_motion"])
    assert not np.allclose(ga["joints"], gb["joints"])  # different proportions
    c, gc = render_video("humanoid", 48, 6, seed=3, motion_seed=99, shape_seed=1)
    assert np.array_equal(ga["joints"], gc["joints"])
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 5


def _check_layout(root, videos, frames, size, fmt="frames"):
    meta = json.loads((root / "puppets.json").read_text())
    assert len(meta["entries"]) == videos
    splits = {"train": 0, "test": 0}
    for e in meta["entries"]:
        splits[e["split"]] += 1
        path = root / e["path"]
        assert path.parent.name == e["split"] and path.parent.parent == root
        gt = load_ground_truth(path)
        assert ground_truth_path(path) == root / e["ground_truth"]
        assert gt["joints"].shape[0] == frames
        if fmt == "frames":
            pngs = sorted(path.glob("*.png"))
            assert [p.name for p in pngs] == [f"{i:06d}.png" for i in range(frames)]
            im = np.asarray(Image.open(pngs[-1]))
            assert im.shape == (size, size, 3)
            assert np.array_equal(im, render_video(meta["kind"], size, frames, e["seed"],
                                                   e["motion_seed"])[0][-1])
        else:
            assert path.is_file() and path.suffix == f".{fmt}"
    assert splits["train"] >= 1 and splits["test"] >= 1
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["groundtruth", "test", "train"]
    return meta


def test_synthesize_layout_and_pairs(tmp_path):
    root = tmp_path / "ds"
    meta = synthesize(root, videos=6, frames=3, size=32, kind="quadruped", seed=5, pairs=2,
                      test_fraction=0.3)
    _check_layout(root, 6, 3, 32)
    rows = list(csv.DictReader(open(root / "pairs.csv")))
    assert len(rows) == 6
    groups = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)
    assert all(len(g) == 2 and len({r["split"] for r in g}) == 1 for g in groups.values())
    for g in groups.values():
        gts = [load_ground_truth(root / "groundtruth" / r["split"] / f"{r['video']}.npz") for r in g]
        assert np.array_equal(gts[0]["angles"], gts[1]["angles"])
        assert np.array_equal(gts[0]["global_motion"], gts[1]["global_motion"])
        assert gts[0]["seed"] != gts[1]["seed"]
    assert meta["pairs"] == 2
    # same seed -> same dataset bytes
    synthesize(tmp_path / "ds2", videos=6, frames=3, size=32, kind="quadruped", seed=5, pairs=2,
               test_fraction=0.3)
    for p in sorted(root.rglob("*.png")):
        assert p.read_bytes() == (tmp_path / "ds2" / p.relative_to(root)).read_bytes()


def test_synthesize_refuses_and_leaves_nothing(tmp_path):
    root = tmp_path / "ds"
    with pytest.raises(MarionetError, match="--videos"):
        synthesize(root, videos=1, frames=2, size=32)
    with pytest.raises(MarionetError, match="--pairs"):
        synthesize(root, videos=5, frames=2, size=32, pairs=2)
    with pytest.raises(MarionetError, match="--kind"):
        synthesize(root, videos=4, frames=2, size=32, kind="octopus")
    assert list(tmp_path.iterdir()) == []
    synthesize(root, videos=2, frames=2, size=32, kind="face")
    with pytest.raises(MarionetError, match="exists"):
        synthesize(root, videos=2, frames=2, size=32)
    # a failure half-way leaves the earlier dataset untouched and no temporary behind
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    with pytest.raises(ValueError, match="disk full"):
        _fail_midway(root)
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def _fail_midway(root):
    import marionet.data.puppets.dataset as ds

    original = ds.save_ground_truth
    calls = []

    def boom(path, gt):
        calls.append(path)
        if len(calls) == 2:
            raise ValueError("disk full")
        original(path, gt)

    ds.save_ground_truth = boom
    try:
        synthesize(root, videos=3, frames=2, size=32, overwrite=True)
    finally:
        ds.save_ground_truth = original


def _main(argv, monkeypatch):
    from marionet import cli
    return cli.main(argv)


def test_cli_end_to_end(tmp_path, monkeypatch, capsys):
    out, sheet = tmp_path / "data", tmp_path / "sheet.png"
    rc = _main(["synth", "--out", str(out), "--videos", "3", "--frames", "4", "--size", "32",
                "--kind", "face", "--seed", "2", "--preview", str(sheet), "--quiet"], monkeypatch)
    assert rc == 0
    meta = _check_layout(out, 3, 4, 32)
    assert meta["kind"] == "face" and meta["seed"] == 2
    im = np.asarray(Image.open(sheet))
    assert im.ndim == 3 and im.shape[0] > 32 and im.shape[1] > 4 * 32
    assert "wrote" in capsys.readouterr().out


def test_cli_gif_format(tmp_path, monkeypatch):
    pytest.importorskip("marionet.data.video")
    out = tmp_path / "data"
    assert _main(["synth", "--out", str(out), "--videos", "2", "--frames", "3", "--size", "32",
                  "--format", "gif", "--quiet"], monkeypatch) == 0
    _check_layout(out, 2, 3, 32, fmt="gif")
    from marionet.data.video import open_video
    e = json.loads((out / "puppets.json").read_text())["entries"][0]
    with open_video(out / e["path"]) as r:
        assert len(list(r)) == 3


@pytest.mark.parametrize("argv, message", [
    (["--videos", "1"], "--videos"),
    (["--kind", "octopus"], "--kind"),
    (["--format", "avi"], "--format"),
    (["--size", "8"], "--size"),
    (["--test-fraction", "1.5"], "--test-fraction"),
    (["--pairs", "1"], "--pairs"),
    (["--videos", "5", "--pairs", "2"], "--pairs"),
    (["--preview", "sheet.jpg"], "--preview"),
])
def test_cli_bad_arguments(tmp_path, monkeypatch, capsys, argv, message):
    out = tmp_path / "data"
    rc = _main(["synth", "--out", str(out), "--frames", "2", "--size", "32", "--quiet", *argv],
               monkeypatch)
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_training_loader_reads_the_layout(tmp_path):
    datasets = pytest.importorskip("marionet.data.datasets")
    root = tmp_path / "ds"
    synthesize(root, videos=5, frames=4, size=32, kind="humanoid", seed=1)
    train = datasets.FramesDataset(root, frame_shape=(32, 32, 3), is_train=True)
    test = datasets.FramesDataset(root, frame_shape=(32, 32, 3), is_train=False)
    assert len(train.videos) == 4 and len(test.videos) == 1
    item = train[0]
    assert tuple(item["source"].shape) == (3, 32, 32)
    video = test[0]["video"]
    assert tuple(video.shape) == (3, 4, 32, 32)
    frames, _ = render_video("humanoid", 32, 4, json.loads((root / "puppets.json").read_text())
                             ["entries"][4]["seed"])
    assert np.allclose(video.permute(1, 2, 3, 0).numpy() * 255, frames, atol=0.51)
