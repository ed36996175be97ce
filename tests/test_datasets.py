"""FramesDataset: layouts, formats, id sampling, determinism, augmentations, robustness."""
import colorsys
import random
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from marionet.data.datasets import FramesDataset, _shift_hue
from marionet.data.video import open_video, write_video
from marionet.errors import MarionetError

S = 32  # frame size


def grey_frames(n, size=S):
    """Frame k is a constant grey 20 + 25k, so a decoded frame tells its index even after lossy coding."""
    return [np.full((size, size, 3), 20 + 25 * k, np.uint8) for k in range(n)]


def index_of(frame: torch.Tensor) -> int:
    return round((frame.mean().item() * 255 - 20) / 25)


def textured_frames(n, size=S, seed=0):
    """Asymmetric random content, different per frame (for flips and jitter)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def write_folder(path: Path, frames):
    path.mkdir(parents=True)
    for k, f in enumerate(frames):
        Image.fromarray(f).save(path / f"{k:04d}.png")


def write_mkv(path: Path, frames):  # mkv: the container does not store a frame count
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


def write_any(path: Path, frames):
    if path.suffix == "":
        write_folder(path, frames)
    elif path.name.endswith("wide.png"):
        Image.fromarray(np.concatenate(frames, axis=1)).save(path)
    elif path.name.endswith("tall.png"):
        Image.fromarray(np.concatenate(frames, axis=0)).save(path)
    elif path.suffix == ".mkv":
        write_mkv(path, frames)
    else:
        write_video(path, frames, fps=10)


def expected_indices(i, n, seed=0, group_size=1):
    rng = np.random.default_rng([seed, i])
    rng.integers(group_size)
    return np.sort(rng.integers(n, size=2)).tolist()


@pytest.mark.parametrize("name", ["clip", "clip.mp4", "clip.gif", "clip.mkv", "wide.png", "tall.png"])
def test_each_format_loads_the_drawn_frames(tmp_path, name):
    (tmp_path / "train").mkdir()
    write_any(tmp_path / "train" / name, grey_frames(6))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = FramesDataset(tmp_path, frame_shape=(S, S, 3))
        assert len(ds) == 1 and ds.videos == [tmp_path / "train" / name]
        for i in range(8):
            item = ds[i]
            assert item["source"].shape == item["driving"].shape == (3, S, S)
            assert item["source"].dtype == torch.float32 and item["name"] == name
            got = [index_of(item["source"]), index_of(item["driving"])]
            assert got == expected_indices(i, 6)


def test_frames_are_resized_to_frame_shape(tmp_path):
    write_folder(tmp_path / "train" / "v", grey_frames(3))
    item = FramesDataset(tmp_path, frame_shape=(16, 24, 3))[0]
    assert item["source"].shape == (3, 16, 24)
    assert index_of(item["source"]) == expected_indices(0, 3)[0]


def test_official_layout_and_test_items(tmp_path):
    write_folder(tmp_path / "train" / "a", grey_frames(4))
    write_folder(tmp_path / "train" / "b", grey_frames(4))
    frames = textured_frames(5)
    write_folder(tmp_path / "test" / "c", frames)
    aug = {"flip_param": {"horizontal_flip": True, "time_flip": True}, "jitter_param": {"hue": 0.5}}
    train = FramesDataset(tmp_path, frame_shape=(S, S, 3), augmentation_params=aug, num_repeats=3)
    assert [p.name for p in train.videos] == ["a", "b"] and len(train) == 6
    test = FramesDataset(tmp_path, frame_shape=(S, S, 3), is_train=False, augmentation_params=aug, num_repeats=3)
    assert len(test) == 1 and test.videos == [tmp_path / "test" / "c"]
    item = test[0]
    assert item["name"] == "c" and item["video"].shape == (3, 5, S, S)
    expected = torch.from_numpy(np.stack(frames)).permute(3, 0, 1, 2).float() / 255
    assert torch.equal(item["video"], expected)  # whole video, never augmented


def test_random_split_without_train_test(tmp_path):
    for k in range(5):
        write_folder(tmp_path / f"v{k}", grey_frames(2))
    for sidecar in ("meta.json", "gt.npz", "pairs.csv", ".hidden.mp4"):
        (tmp_path / sidecar).write_bytes(b"not a video")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sidecars are ignored silently
        train = FramesDataset(tmp_path, frame_shape=(S, S, 3))
        test = FramesDataset(tmp_path, frame_shape=(S, S, 3), is_train=False)
    assert len(train.videos) == 4 and len(test.videos) == 1
    assert sorted(train.videos + test.videos) == sorted(tmp_path / f"v{k}" for k in range(5))
    again = FramesDataset(tmp_path, frame_shape=(S, S, 3), random_seed=0, is_train=False)
    assert again.videos == test.videos
    other = [FramesDataset(tmp_path, frame_shape=(S, S, 3), random_seed=s, is_train=False).videos for s in range(1, 6)]
    assert any(v != test.videos for v in other)
    # two videos: one each
    two = tmp_path / "two"
    write_folder(two / "x", grey_frames(2))
    write_folder(two / "y", grey_frames(2))
    a, b = FramesDataset(two, frame_shape=(S, S, 3)), FramesDataset(two, frame_shape=(S, S, 3), is_train=False)
    assert len(a.videos) == len(b.videos) == 1 and a.videos != b.videos


def test_id_sampling_groups_by_hash_prefix(tmp_path):
    for k, name in enumerate(["alice#1#0#9.mp4", "alice#2#0#9.mp4", "bob#1#0#9.mp4"]):
        write_folder(tmp_path / "train" / name, [np.full((S, S, 3), 40 + 80 * k, np.uint8)] * 3)
    write_folder(tmp_path / "test" / "carol#1.mp4", grey_frames(2))
    ds = FramesDataset(tmp_path, frame_shape=(S, S, 3), id_sampling=True, num_repeats=2)
    assert ds.identities == ["alice", "bob"] and len(ds) == 4 and len(ds.videos) == 3
    names = {i: ds[i]["name"] for i in range(40)}
    assert all(n.startswith("alice#") == (i % 2 == 0) for i, n in names.items())
    assert {n for i, n in names.items() if i % 2 == 0} == {"alice#1#0#9.mp4", "alice#2#0#9.mp4"}
    for i in range(0, 40, 2):  # the rng contract picks the video, then the frames
        first = np.random.default_rng([0, i]).integers(2)
        assert names[i] == ["alice#1#0#9.mp4", "alice#2#0#9.mp4"][first]
    test = FramesDataset(tmp_path, frame_shape=(S, S, 3), id_sampling=True, is_train=False)
    assert len(test) == 1  # test items are videos, not identities


def make_textured(root: Path, n_videos=2, n_frames=6):
    for v in range(n_videos):
        write_folder(root / "train" / f"v{v}", textured_frames(n_frames, seed=v))
    return root


JITTER = {"brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.2}
FULL_AUG = {"flip_param": {"horizontal_flip": True, "time_flip": True}, "rotation_param": {"degrees": 20},
            "resize_param": {"ratio": [0.9, 1.1]}, "crop_param": {"size": [S, S]}, "jitter_param": JITTER}


def test_determinism(tmp_path):
    root = make_textured(tmp_path)
    ds = FramesDataset(root, frame_shape=(S, S, 3), augmentation_params=FULL_AUG, num_repeats=2)
    n = len(ds)
    state = (np.random.get_state()[1].copy(), torch.get_rng_state().clone(), random.getstate())
    a = [ds[i] for i in range(2 * n)]
    assert np.array_equal(state[0], np.random.get_state()[1])  # no global RNG touched
    assert torch.equal(state[1], torch.get_rng_state()) and state[2] == random.getstate()
    fresh = FramesDataset(root, frame_shape=(S, S, 3), augmentation_params=FULL_AUG, num_repeats=2)
    for i in range(2 * n):
        for other in (ds[i], fresh[i]):
            assert torch.equal(a[i]["source"], other["source"]) and torch.equal(a[i]["driving"], other["driving"])
    for i in range(n):  # i and i + len: the same video, a new draw
        assert a[i]["name"] == a[i + n]["name"]
        assert not torch.equal(a[i]["source"], a[i + n]["source"])
    big = 10**12 + 3
    assert torch.equal(ds[big]["source"], fresh[big]["source"])
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, sampler=[5, 0, 7, 2])
    batches = list(loader)
    for b, idx in zip(batches, ([5, 0], [7, 2])):
        assert torch.equal(b["source"], torch.stack([a[i]["source"] for i in idx]))


def _plain_and(root, aug):
    plain = FramesDataset(root, frame_shape=(S, S, 3))
    return plain, FramesDataset(root, frame_shape=(S, S, 3), augmentation_params=aug)


def test_flips(tmp_path):
    root = make_textured(tmp_path)
    outcomes = {"hflip": set(), "tflip": set(), "both": set()}
    cases = {"hflip": {"horizontal_flip": True}, "tflip": {"time_flip": True},
             "both": {"horizontal_flip": True, "time_flip": True}}
    for key, flip in cases.items():
        plain, aug = _plain_and(root, {"flip_param": flip})
        for i in range(24):
            p, q = plain[i], aug[i]
            s, d = p["source"], p["driving"]
            if torch.equal(s, d):
                continue
            for label, (es, ed) in {"none": (s, d), "mirror": (s.flip(-1), d.flip(-1)), "swap": (d, s),
                                    "swap+mirror": (d.flip(-1), s.flip(-1))}.items():
                if torch.equal(q["source"], es) and torch.equal(q["driving"], ed):
                    outcomes[key].add(label)
                    break
            else:
                raise AssertionError(f"{key}: item {i} is neither flipped nor plain")
    assert outcomes == {"hflip": {"none", "mirror"}, "tflip": {"none", "swap"},
                        "both": {"none", "mirror", "swap"}}  # no mirror after a time flip (official)


def test_jitter_same_factors_and_range(tmp_path):
    frame = textured_frames(1)[0]
    write_folder(tmp_path / "train" / "still", [frame])  # 1 frame: both indices 0
    plain, aug = _plain_and(tmp_path, {"jitter_param": JITTER})
    for i in range(6):
        item = aug[i]
        assert torch.equal(item["source"], item["driving"])  # same factors for both frames
        assert 0 <= item["source"].min() and item["source"].max() <= 1
        assert not torch.allclose(item["source"], plain[i]["source"], atol=1e-3)


def test_hue_rotation_matches_colorsys():
    rgb = np.random.default_rng(1).random((1, 3, 4, 5)).astype(np.float32)
    out = _shift_hue(rgb, 0.3)
    for y in range(4):
        for x in range(5):
            h, s, v = colorsys.rgb_to_hsv(*rgb[0, :, y, x])
            assert np.allclose(out[0, :, y, x], colorsys.hsv_to_rgb((h + 0.3) % 1, s, v), atol=1e-5)
    red = np.zeros((1, 3, 1, 1), np.float32)
    red[0, 0] = 1
    assert np.allclose(_shift_hue(red, 1 / 3)[0, :, 0, 0], [0, 1, 0], atol=1e-6)
    assert np.allclose(_shift_hue(rgb, 0.0), rgb, atol=1e-6)


def test_geometric_augmentations_give_frame_shape(tmp_path):
    root = make_textured(tmp_path)
    for aug in (FULL_AUG, {"resize_param": {"ratio": [0.6, 1.4]}}, {"crop_param": {"size": [20, 24]}},
                {"rotation_param": {"degrees": 45}}):
        ds = FramesDataset(root, frame_shape=(S, S, 3), augmentation_params=aug)
        for i in range(4):
            item = ds[i]
            assert item["source"].shape == item["driving"].shape == (3, S, S)
            assert 0 <= item["source"].min() and item["source"].max() <= 1
    rotated = FramesDataset(root, frame_shape=(S, S, 3), augmentation_params={"rotation_param": {"degrees": 45}})
    assert any(rotated[i]["source"][:, 0, 0].sum() == 0 for i in range(8))  # a black corner


def test_official_configs(tmp_path):
    write_folder(tmp_path / "train" / "id0#a", textured_frames(3))
    write_folder(tmp_path / "test" / "id1#a", textured_frames(2))
    configs = Path(__file__).resolve().parents[1] / "marionet" / "configs"
    for name in ("taichi-256", "mgif-256"):
        params = yaml.safe_load((configs / f"{name}.yaml").read_text())["dataset_params"]
        params["root_dir"] = tmp_path
        item = FramesDataset(**params, is_train=True)[0]
        assert item["source"].shape == (3, 256, 256)


def test_corrupt_videos_are_skipped(tmp_path):
    train = tmp_path / "train"
    write_folder(train / "good", grey_frames(4))
    write_video(train / "good.mp4", grey_frames(4), fps=10)
    (train / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    (train / "empty.mp4").write_bytes(b"")
    (train / "noframes").mkdir()
    write_folder(train / "badframe", grey_frames(4))
    (train / "badframe" / "0002.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning) as record:
        ds = FramesDataset(tmp_path, frame_shape=(S, S, 3))
    messages = " ".join(str(w.message) for w in record)
    for name in ("broken.mp4", "empty.mp4", "noframes"):
        assert name in messages
    assert [p.name for p in ds.videos] == ["badframe", "good", "good.mp4"]
    with pytest.warns(UserWarning, match="0002.png"):  # a corrupt frame: that item falls back
        items = [ds[i] for i in range(30)]
    for i, item in enumerate(items):
        drawn = expected_indices(i, 4)
        if i % 3 == 0 and 2 not in drawn:
            assert item["name"] == "badframe"
        elif i % 3 == 0:
            assert item["name"] == "good"  # the next video
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per file
        assert torch.equal(ds[0]["source"], items[0]["source"])
        [ds[i] for i in range(30)]


def test_truncated_mp4_repeats_its_last_frame(tmp_path):
    (tmp_path / "train").mkdir()
    path = tmp_path / "train" / "cut.mp4"
    noise = np.random.default_rng(0).integers(-8, 8, (8, S, S, 3))
    write_video(path, [np.clip(f + e, 0, 255).astype(np.uint8) for f, e in zip(grey_frames(8), noise)], fps=10)
    data = path.read_bytes()
    for frac in (0.9, 0.85, 0.8, 0.75):  # cut the tail, keep the header (it still says 8 frames)
        path.write_bytes(data[: int(len(data) * frac)])
        with open_video(path) as reader:
            if sum(1 for _ in reader) < 8:
                break
    ds = FramesDataset(tmp_path, frame_shape=(S, S, 3))
    with pytest.warns(UserWarning, match="cut.mp4.*last frame"):
        items = [ds[i] for i in range(8)]
    decoded = max(index_of(it["driving"]) for it in items)
    assert 0 < decoded < 7
    for i, it in enumerate(items):
        assert [index_of(it["source"]), index_of(it["driving"])] == [min(k, decoded) for k in expected_indices(i, 8)]


def test_missing_or_empty_root(tmp_path):
    with pytest.raises(MarionetError, match="nowhere"):
        FramesDataset(tmp_path / "nowhere")
    (tmp_path / "only" / "train").mkdir(parents=True)
    (tmp_path / "only" / "train" / "gt.npz").write_bytes(b"x")
    with pytest.raises(MarionetError, match="only"):
        FramesDataset(tmp_path / "only")
    (tmp_path / "bad" / "train").mkdir(parents=True)
    (tmp_path / "bad" / "train" / "x.mp4").write_bytes(b"junk")
    with pytest.warns(UserWarning, match="x.mp4"), pytest.raises(MarionetError, match="bad"):
        FramesDataset(tmp_path / "bad")
