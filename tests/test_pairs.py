"""Paired data (the public Donkey-Net layout and synth's pairs.csv), its training items, the pairing
maths on known cases, and `marionet pair` end to end on puppets mixed with unpaired videos."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import marionet
from marionet.cli import main
from marionet.data.pairs import (PairedFramesDataset, PairingParams, affine_residuals, align, choose_pairs,
                                 motion_residuals, pair_scores, read_pairing_file, three_indices, video_pairs)
from marionet.data.puppets import synthesize
from marionet.errors import MarionetError
from marionet.evaluate.reconstruction import reconstruct

from test_bad_input import run_cli, snapshot

TINY = Path(__file__).parent / "fixtures" / "donkey-net" / "tiny.yaml"


def coded_video(folder, video: int, frames: int, size: int = 16):
    """Constant frames whose red value says the video and the green value the frame index."""
    folder.mkdir(parents=True)
    for t in range(frames):
        Image.fromarray(np.full((size, size, 3), (10 * video, 10 * t, 0), np.uint8)).save(folder / f"{t:06d}.png")


def decode(frame) -> tuple[int, int]:
    r, g = (frame[:2].mean(dim=(1, 2)) * 255).round().int().tolist()
    return r // 10, g // 10


@pytest.fixture(scope="module")
def coded(tmp_path_factory):
    """train/: v0, v1 (12 frames), v2 (2 frames), v3.gif-named listing; test/: v4, v5."""
    root = tmp_path_factory.mktemp("coded")
    for v, frames in ((0, 12), (1, 12), (2, 2), (3, 12)):
        coded_video(root / "train" / f"v{v}", v, frames)
    for v in (4, 5):
        coded_video(root / "test" / f"v{v}", v, 6)
    (root / "train_pairing.txt").write_text("# index score A B\n0 0.1 v0.gif v1.gif\n1 0.2 v2 v3\n\n")
    (root / "test_pairing.txt").write_text("0 0.1 v4 v5\n")
    return root


def test_the_public_pairing_layout(coded):
    assert read_pairing_file(coded / "train_pairing.txt") == [("v0.gif", "v1.gif"), ("v2", "v3")]
    videos = sorted((coded / "test").iterdir())
    assert [(a.name, b.name) for a, b in video_pairs(coded, "test", videos)] == [("v4", "v5")]
    assert [(a.name, b.name) for a, b in video_pairs(coded, "test", videos, both_orders=True)] == [("v4", "v5"),
                                                                                                  ("v5", "v4")]


def test_pairs_csv_groups_give_every_ordered_pair(tmp_path):
    for v in range(5):
        coded_video(tmp_path / "test" / f"p{v}", v, 3)
    (tmp_path / "pairs.csv").write_text("group,motion_seed,split,video,seed\n"
                                        + "".join(f"{v // 3},1,test,p{v},{v}\n" for v in range(5)))
    videos = sorted((tmp_path / "test").iterdir())
    pairs = {(a.name, b.name) for a, b in video_pairs(tmp_path, "test", videos)}
    assert pairs == {(a, b) for g in (["p0", "p1", "p2"], ["p3", "p4"]) for a in g for b in g if a != b}


@pytest.mark.parametrize("listing, match", [
    ("0 0.1 v0 nowhere\n", "names 'nowhere'"),
    ("0 v0 v1\n", "line 1 has 3 columns"),
])
def test_bad_pairing_files_name_the_file(coded, tmp_path, listing, match):
    root = tmp_path / "data"
    shutil.copytree(coded, root)
    (root / "train_pairing.txt").write_text(listing)
    with pytest.raises(MarionetError, match=match) as excinfo:
        PairedFramesDataset(root, frame_shape=(16, 16, 3))
    assert "train_pairing.txt" in str(excinfo.value)


def test_paired_items_share_one_driving_index_and_depend_on_i_only(coded):
    dataset = PairedFramesDataset(coded, frame_shape=(16, 16, 3), random_seed=3, num_repeats=5,
                                  augmentation_params={"flip_param": {"horizontal_flip": True, "time_flip": True}})
    assert len(dataset) == 10
    seen = set()
    for i in (0, 2, 4, 6):   # the pair v0 ~ v1
        item = dataset[i]
        (va, i0), (vb, i1) = decode(item["src_a"]), decode(item["src_b"])
        (da, i2), (db, j2) = decode(item["driving_a"]), decode(item["driving_b"])
        assert (va, vb, da, db) == (0, 1, 0, 1) and i0 < i1 < i2 == j2, (i0, i1, i2, j2)
        seen.add((i0, i1, i2))
        again = dataset[i]
        assert all(np.array_equal(item[k], again[k]) for k in ("src_a", "src_b", "driving_a", "driving_b"))
    assert len(seen) > 1
    short = dataset[1]   # v2 has 2 frames: indices 0, 0, 1
    assert [decode(short[k]) for k in ("src_a", "src_b", "driving_a", "driving_b")] == [(2, 0), (3, 0), (2, 1), (3, 1)]
    assert three_indices(np.random.default_rng(0), 1) == [0, 0, 0]


# ----------------------------------------------------------------------------------------------
# The pairing maths on known cases
# ----------------------------------------------------------------------------------------------

def _track(rng, frames=12, k=8):
    """A random walk of k keypoints."""
    return np.cumsum(rng.normal(size=(frames, k, 2)) * 0.2, axis=0) + rng.normal(size=(1, k, 2))


def test_an_affine_copy_in_another_order_is_found_and_aligned():
    rng = np.random.default_rng(0)
    a = _track(rng)
    order = rng.permutation(12)
    matrix, shift = np.array([[1.3, 0.4], [-0.2, 0.8]]), np.array([0.5, -2.0])
    b = a[order] @ matrix.T + shift                                   # B frame s shows A's frame order[s]
    d = affine_residuals(a, b)
    assert d.shape == (12, 12) and np.allclose(d[order, np.arange(12)], 0, atol=1e-6)
    match = np.zeros((12, 12), dtype=bool)
    match[order, np.arange(12)] = True
    assert d[~match].min() > 0.05
    assert np.array_equal(order[align(d, repeat_limit=0.25)], np.arange(12))   # each A frame finds its B frame
    tracks = [a, b, _track(rng), _track(rng)]
    residual, _ = motion_residuals(tracks, 0.25)
    assert residual[0, 1] < 1e-6 and residual[2:, :2].min() > 0.1 and np.isinf(np.diag(residual)).all()
    scores = pair_scores(residual, np.eye(4), PairingParams())
    assert choose_pairs(scores, 0.14) == [(0, 1)]


def test_the_repeat_limit_spreads_a_still_video():
    d = np.tile(np.linspace(0, 1, 8), (8, 1))      # column 0 is best for every row
    chosen = align(d, repeat_limit=0.25)
    assert np.bincount(chosen).max() == 2 and set(chosen) == {0, 1, 2, 3}
    assert set(align(d, repeat_limit=1.0)) == {0}


# ----------------------------------------------------------------------------------------------
# marionet pair, end to end
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Puppet pairs (2 train, 2 test) mixed with 2 unpaired puppets per split, with ground truth."""
    root = tmp_path_factory.mktemp("mixed") / "data"
    synthesize(root, videos=8, frames=12, size=64, kind="humanoid", seed=11, pairs=2, test_fraction=0.5)
    solo = root.parent / "solo"
    synthesize(solo, videos=4, frames=12, size=64, kind="humanoid", seed=12, test_fraction=0.5)
    for video in solo.glob("*/humanoid_*"):
        if video.parent.name in ("train", "test"):
            split = video.parent.name
            shutil.copytree(video, root / split / f"solo_{video.name}")
            shutil.copy(solo / "groundtruth" / split / f"{video.name}.npz",
                        root / "groundtruth" / split / f"solo_{video.name}.npz")
    return root


def test_pair_finds_the_true_pairs_and_writes_a_paired_dataset(mixed, tmp_path, capsys):
    out = tmp_path / "paired"
    assert main(["pair", "--data", str(mixed), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "train: 6 videos, 2 pairs" in printed and "precision 1.000, recall 1.000" in printed
    report = json.loads((out / "pairs.json").read_text())
    assert report["params"] == {"uniqueness_weight": 0.8, "max_residual": 0.14, "repeat_limit": 0.25,
                                "appearance_weight": 0.05}
    for split in ("train", "test"):
        assert report["splits"][split]["accuracy"]["recall"] == 1.0
        rows = read_pairing_file(out / f"{split}_pairing.txt")
        assert len(rows) == 2 and not any(name.startswith("solo") for row in rows for name in row)
        for a, b in rows:   # B resampled to A's 12 frames, ground truth alongside
            assert len(list((out / split / b).glob("*.png"))) == 12
            assert (out / "groundtruth" / split / f"{b}.npz").is_file()
    assert Image.open(out / "preview.png").size[0] > 0
    # The output is a paired dataset: it trains and evaluates as one.
    item = PairedFramesDataset(out, frame_shape=(64, 64, 3))[0]
    assert item["src_a"].shape == (3, 64, 64)
    with pytest.warns(UserWarning, match="untrained"):
        model = marionet.load(config=TINY)
    metrics = reconstruct(model, out, tmp_path / "rec", pairs=True, progress=False)
    assert metrics["videos"] == 4 and metrics["protocol"] == "cross-identity" and "akd" in metrics


def test_pair_bad_input_is_one_line_and_leaves_nothing(mixed, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    before = snapshot(tmp_path)
    for argv, message in (
            (["--data", tmp_path / "nowhere", "--out", tmp_path / "o1"], "no train/ or test/"),
            (["--data", mixed, "--out", tmp_path / "taken"], "already exists"),
            (["--data", mixed, "--out", tmp_path / "o2", "--repeat-limit", "2"], "between 0 and 1"),
            (["--data", mixed, "--out", tmp_path / "o3", "--config", "puppets-64"], "--config needs --checkpoint")):
        code, err = run_cli(["pair", *argv, "--quiet"])
        assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert snapshot(tmp_path) == before


def test_appearance_from_vgg19_weights_when_the_user_has_them(tmp_path, monkeypatch):
    import torch

    from marionet.cli.pair import _describer
    from marionet.data.pairs import colour_descriptor
    from marionet.losses import Vgg19

    torch.manual_seed(0)
    weights = tmp_path / "vgg19.pth"
    torch.save({k: v for k, v in Vgg19().state_dict().items() if k.startswith("features.")}, weights)
    monkeypatch.setenv("MARIONET_VGG19_WEIGHTS", str(weights))
    describe = _describer("auto")
    assert describe is not colour_descriptor
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    other = np.zeros_like(clip)
    other[..., 1] = np.linspace(0, 255, 32).astype(np.uint8)   # a smooth green ramp
    a, b = describe(clip), describe(other)
    assert a.shape == (512,) and np.linalg.norm(a) == pytest.approx(1) and a @ describe(clip) == pytest.approx(1)
    assert a @ b < 1 - 1e-4
    monkeypatch.delenv("MARIONET_VGG19_WEIGHTS")
    assert _describer("colour") is colour_descriptor
