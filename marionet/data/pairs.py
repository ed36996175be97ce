"""Paired videos: two identities in the same motion, frame-aligned (Donkey-Net's training data).

Two layouts are read, both under a dataset folder with ``train/`` and ``test/``:

- the public Donkey-Net code's: ``DIR/train_pairing.txt`` and ``DIR/test_pairing.txt``, whitespace-
  separated columns of which the third and fourth name video A and video B (a name with or without
  its extension; ``#`` starts a comment). ``marionet pair`` writes this layout;
- ``marionet synth --pairs K``'s ``DIR/pairs.csv``: groups of K identities sharing one motion; every
  ordered pair of distinct videos of a group is a pair.

``PairedFramesDataset`` item i (a function of i and the seed alone): the pair i mod the number of
pairs, three distinct sorted frame indices i0 < i1 < i2 drawn from ``default_rng([seed, i])`` (0, 0, 1
for videos of fewer than 3 frames), and {"src_a": A[i0], "src_b": B[i1], "driving_a": A[i2],
"driving_b": B[i2]}: the two driving frames show the same pose on the two identities.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from marionet.data.datasets import FramesDataset
from marionet.errors import MarionetError

PAIRS_CSV = "pairs.csv"
VIDEO_SUFFIXES = (".mp4", ".gif", ".mov", ".avi", ".webm", ".mkv", ".png", ".jpg", ".jpeg")


def pairing_file(root, split: str) -> Path:
    return Path(root) / f"{split}_pairing.txt"


def video_key(name: str) -> str:
    """A video's name without its extension: how pairing files and pairs.csv name videos."""
    for suffix in VIDEO_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_pairing_file(path) -> list[tuple[str, str]]:
    """(A, B) names of the public layout: columns 3 and 4 of each non-empty line."""
    path = Path(path)
    rows = []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise MarionetError(f"{path}: cannot read the pairing file ({e})") from None
    for number, line in enumerate(lines, start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) < 4:
            raise MarionetError(f"{path}: line {number} has {len(fields)} columns; the third and fourth must name "
                                "video A and video B")
        rows.append((fields[2], fields[3]))
    return rows


def read_pairs_csv(path, split: str) -> list[list[str]]:
    """The groups (lists of video names) of ``split`` in synth's pairs.csv."""
    groups: dict[str, list[str]] = {}
    try:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row["split"] == split:
                    groups.setdefault(row["group"], []).append(row["video"])
    except (KeyError, csv.Error, UnicodeDecodeError) as e:
        raise MarionetError(f"{path}: not a pairs file (columns group, split, video; {e})") from None
    return list(groups.values())


def video_pairs(root, split: str, videos: list[Path], both_orders: bool = False) -> list[tuple[Path, Path]]:
    """Ordered (A, B) pairs of ``split``'s videos: the rows of ``<split>_pairing.txt`` (and their reverses
    with ``both_orders``) when it exists, else every ordered pair within a group of ``pairs.csv``."""
    root = Path(root)
    by_key = {video_key(v.name): v for v in videos}
    listing = pairing_file(root, split)
    if listing.is_file():
        pairs = []
        for a, b in read_pairing_file(listing):
            missing = [n for n in (a, b) if video_key(n) not in by_key]
            if missing:
                raise MarionetError(f"{listing}: names {missing[0]!r}, which is not a usable video of {root / split}")
            pairs.append((by_key[video_key(a)], by_key[video_key(b)]))
            if both_orders and a != b:
                pairs.append(pairs[-1][::-1])
    elif (root / PAIRS_CSV).is_file():
        groups = [[by_key[n] for n in group if n in by_key] for group in read_pairs_csv(root / PAIRS_CSV, split)]
        pairs = [(a, b) for group in groups for a in group for b in group if a != b]
    else:
        raise MarionetError(f"{root / PAIRS_CSV}: no such file, nor {listing.name}: not a paired dataset (write one "
                            "with marionet pair, or render one with marionet synth --pairs K)")
    if not pairs:
        raise MarionetError(f"{root}: no pair of two usable {split} videos in {listing.name if listing.is_file() else PAIRS_CSV}")
    return pairs


def three_indices(rng: np.random.Generator, frames: int) -> list[int]:
    """i0 < i1 < i2, distinct, from ``frames`` frames (0, 0, 1 below 3 frames, as the public code)."""
    if frames < 3:
        return [0, 0, min(1, frames - 1)]
    return np.sort(rng.choice(frames, size=3, replace=False)).tolist()


class PairedFramesDataset(FramesDataset):
    """Train items of a paired dataset: {"src_a", "src_b", "driving_a", "driving_b": (3, H, W), "name"}.

    Augmentations (``augmentation_params``, drawn per item) hit the four frames alike; a time flip,
    which would swap the source and driving frames of one identity only, is not applied.
    """

    def __init__(self, root_dir, frame_shape=(256, 256, 3), random_seed=0, augmentation_params=None, num_repeats=1,
                 **unused_official_keys):
        root = Path(root_dir)
        if root.is_dir() and not (root / "train").is_dir():
            raise MarionetError(f"{root}: a paired dataset needs its train/ and test/ folders")
        augmentation = dict(augmentation_params or {})
        if augmentation.get("flip_param"):
            augmentation["flip_param"] = {**augmentation["flip_param"], "time_flip": False}
        unused_official_keys.pop("is_train", None)
        super().__init__(root, frame_shape, is_train=True, random_seed=random_seed, num_repeats=num_repeats,
                         augmentation_params=augmentation, **unused_official_keys)
        index = {path: v for v, path in enumerate(self.videos)}
        self.pairs = [(index[a], index[b]) for a, b in video_pairs(root, "train", self.videos)]

    def __len__(self) -> int:
        return len(self.pairs) * self.num_repeats

    def __getitem__(self, i):
        if i < 0:
            raise IndexError(f"negative dataset index {i}")
        a, b = self.pairs[i % len(self.pairs)]
        rng = np.random.default_rng([self.random_seed, i])
        counts = [self._count(a), self._count(b)]
        if min(counts) < 1:
            bad = self.videos[a if counts[0] < 1 else b]
            raise MarionetError(f"{bad}: a video of a training pair cannot be read")
        i0, i1, i2 = three_indices(rng, min(counts))
        frames_a, frames_b = self._load(a, [i0, i2]), self._load(b, [i1, i2])           # (2, 3, H, W) each
        frames = self._augment(torch.cat([frames_a, frames_b]), rng.random(10), rng.permutation(4))
        return {"src_a": frames[0], "driving_a": frames[1], "src_b": frames[2], "driving_b": frames[3],
                "name": f"{self.videos[a].name}~{self.videos[b].name}"}


# ------------------------------------------------------------------------------------------------
# The pairing tool (``marionet pair``): which videos show the same motion, and how B's frames follow A's
# ------------------------------------------------------------------------------------------------
#
# Our reading of the Donkey-Net report's procedure (its code is not public):
#   - frame distance d(a_t, b_s): the least-squares affine map taking B's keypoints at frame s onto A's
#     at frame t leaves a residual; d is its RMS over the keypoints divided by the RMS spread of A's
#     keypoints about their centre (0: the same pose up to an affine map; 1: nothing explained);
#   - B resampled to A: frame t of A takes the B frame of least d, no B frame serving more than
#     ``repeat_limit`` of A's frames (a still B frame cannot stand in for a whole motion);
#   - motion residual r(A, B): the mean d along that alignment, averaged over both directions, plus
#     ``appearance_weight`` * (1 - appearance similarity);
#   - uniqueness u(A, B): how much better B fits A than A's next best candidate, and A fits B than B's,
#     the smaller of the two margins;
#   - score = r - ``uniqueness_weight`` * u; pairs scoring at most ``max_residual`` are taken, best
#     first, each video in one pair at most.

@dataclass(frozen=True)
class PairingParams:
    uniqueness_weight: float = 0.8
    max_residual: float = 0.14
    repeat_limit: float = 0.25
    appearance_weight: float = 0.05


def affine_residuals(kp_a: np.ndarray, kp_b: np.ndarray) -> np.ndarray:
    """kp_a (T, K, 2), kp_b (S, K, 2) -> d (T, S): the relative RMS residual of the best affine map
    from B's keypoints at s onto A's at t (see above), in [0, 1]."""
    ones = np.ones(kp_b.shape[:2] + (1,))
    basis = np.linalg.qr(np.concatenate([kp_b, ones], axis=2))[0]                  # (S, K, 3) orthonormal
    explained = np.einsum("skc,tkd->tscd", basis, kp_a)                            # projections (T, S, 3, 2)
    total = (kp_a ** 2).sum(axis=(1, 2))                                           # (T,)
    spread = ((kp_a - kp_a.mean(axis=1, keepdims=True)) ** 2).sum(axis=(1, 2))     # (T,)
    residual = np.clip(total[:, None] - (explained ** 2).sum(axis=(2, 3)), 0, None)
    return np.sqrt(residual / np.maximum(spread, 1e-12)[:, None])


def align(distance: np.ndarray, repeat_limit: float) -> np.ndarray:
    """For each row t of distance (T, S), a column s(t) of least distance, no column taken by more than
    max(1, round(repeat_limit * T)) rows (when S allows); rows with the clearest best choose first."""
    t_count, s_count = distance.shape
    cap = max(1, round(repeat_limit * t_count), -(-t_count // s_count))
    used = np.zeros(s_count, dtype=int)
    chosen = np.zeros(t_count, dtype=int)
    for t in np.argsort(distance.min(axis=1), kind="stable"):
        for s in np.argsort(distance[t], kind="stable"):
            if used[s] < cap:
                chosen[t], used[s] = s, used[s] + 1
                break
    return chosen


def motion_residuals(tracks: list[np.ndarray], repeat_limit: float) -> tuple[np.ndarray, dict]:
    """Symmetric motion residuals (N, N) of N keypoint tracks (T_i, K, 2) (inf on the diagonal), and the
    alignment {(i, j): s (T_i,)} of video j's frames to video i's for every i != j."""
    n = len(tracks)
    residual = np.full((n, n), np.inf)
    alignment = {}
    for i in range(n):
        for j in range(n):
            if i != j:
                d = affine_residuals(tracks[i], tracks[j])
                alignment[i, j] = align(d, repeat_limit)
                residual[i, j] = d[np.arange(len(d)), alignment[i, j]].mean()
    both = (residual + residual.T) / 2
    return both, alignment


def pair_scores(residual: np.ndarray, similarity: np.ndarray, params: PairingParams) -> np.ndarray:
    """The score (N, N) of every pair (lower is better; inf on the diagonal) from the motion residuals and
    the appearance similarities (N, N)."""
    r = residual + params.appearance_weight * (1 - similarity)
    np.fill_diagonal(r, np.inf)
    n = len(r)
    ranked = np.sort(r, axis=1)                                    # the diagonal's inf sorts last
    best, second = ranked[:, 0], ranked[:, 1] if n > 2 else ranked[:, 0]
    # i's best candidate other than j: its best, or its second best when j is the best
    other = np.where(np.arange(n)[None, :] == r.argmin(axis=1)[:, None], second[:, None], best[:, None])
    margin = np.where(np.isfinite(other), other - r, 0.0)
    uniqueness = np.minimum(margin, margin.T)
    return r - params.uniqueness_weight * uniqueness


def choose_pairs(scores: np.ndarray, max_residual: float) -> list[tuple[int, int]]:
    """Pairs (i < j) scoring at most ``max_residual``, best first, each index used once."""
    taken, pairs = set(), []
    i_idx, j_idx = np.triu_indices(len(scores), k=1)
    for k in np.argsort(scores[i_idx, j_idx], kind="stable"):
        i, j = int(i_idx[k]), int(j_idx[k])
        if scores[i, j] > max_residual:
            break
        if i not in taken and j not in taken:
            taken.update((i, j))
            pairs.append((i, j))
    return pairs


def precision_recall(found: set, truth: set) -> dict:
    """Of unordered pairs (frozensets of names)."""
    hits = len(found & truth)
    return {"precision": hits / len(found) if found else 1.0, "recall": hits / len(truth) if truth else 1.0,
            "found": len(found), "true": len(truth), "correct": hits}


def true_pairs(root, split: str) -> set | None:
    """The unordered pairs of ``split`` that synth's pairs.csv declares, or None without one."""
    path = Path(root) / PAIRS_CSV
    if not path.is_file():
        return None
    return {frozenset((a, b)) for group in read_pairs_csv(path, split) for a in group for b in group if a != b}


def colour_descriptor(frames: np.ndarray) -> np.ndarray:
    """Appearance without a feature network: the joint RGB histogram (4 levels a channel) of up to 4
    evenly spaced frames (T, H, W, 3) uint8, square-rooted and unit-length, so that the dot product of
    two is the Bhattacharyya coefficient of their colour distributions, in [0, 1]."""
    picked = frames[np.linspace(0, len(frames) - 1, min(4, len(frames))).round().astype(int)]
    levels = (picked // 64).reshape(-1, 3).astype(np.int64)
    histogram = np.bincount(levels[:, 0] * 16 + levels[:, 1] * 4 + levels[:, 2], minlength=64).astype(np.float64)
    root = np.sqrt(histogram / histogram.sum())
    return root / np.linalg.norm(root)


def _read(video: Path) -> tuple[np.ndarray, float]:
    from marionet.data.video import open_video

    with open_video(video) as reader:
        return np.stack(list(reader)), reader.fps


def _write_frames(folder: Path, frames: np.ndarray) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{t:06d}.png", compress_level=1)


def _copy_ground_truth(video: Path, target: Path, indices: np.ndarray) -> None:
    """A puppet video's ground truth, its per-frame arrays resampled like its frames (nothing for other data)."""
    from marionet.data.puppets import ground_truth_path

    source = ground_truth_path(video)
    if not source.is_file():
        return
    with np.load(source, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    frames = len(arrays["joints"])
    for key in ("joints", "visible", "masks", "angles", "global_motion"):
        if key in arrays and len(arrays[key]) == frames:
            arrays[key] = arrays[key][np.minimum(indices, frames - 1)]
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as f:
        np.savez_compressed(f, **arrays)


def _sheet(rows: list[np.ndarray], columns: int = 8, side: int = 64) -> np.ndarray:
    """A preview: per pair, A's and B's (resampled) frames at ``columns`` evenly spaced times, as two rows."""
    from marionet.data.frames import frames_to_tensor, tensor_to_frames

    lines = []
    for frames in rows:
        picked = frames[np.linspace(0, len(frames) - 1, columns).round().astype(int)]
        tiles = tensor_to_frames(frames_to_tensor(picked, (side, side), fit="pad"))
        lines.append(np.concatenate(list(np.pad(tiles, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=1)), axis=1))
    return (np.concatenate(lines, axis=0) * 255).round().astype(np.uint8)


def pair_dataset(data_dir, out_dir, keypoints, describe=colour_descriptor, params: PairingParams = PairingParams(),
                 overwrite: bool = False, progress: bool = True) -> dict:
    """Pair the videos of each split of ``data_dir`` (``train/``, ``test/``) and write the paired dataset
    ``out_dir``: the two videos of each pair as PNG frames (B resampled to A's frames), the public
    layout's ``<split>_pairing.txt`` (columns: index, score, A, B), puppets' ground truth resampled the
    same way, ``pairs.json`` (every score; precision and recall when DIR/pairs.csv tells the true pairs)
    and ``preview.png``. ``keypoints(video, frames) -> (T, K, 2)`` gives a video's keypoint track,
    ``describe(frames) -> (D,)`` a unit-length appearance vector. Written atomically; returns pairs.json."""
    from tqdm import tqdm

    from marionet.data.puppets import ground_truth_path
    from marionet.files import Staged

    root, out = Path(data_dir), Path(out_dir)
    splits = [s for s in ("train", "test") if (root / s).is_dir()]
    if not splits:
        raise MarionetError(f"{root}: no train/ or test/ folder of videos")
    if out.exists() and not overwrite:
        raise MarionetError(f"{out}: already exists (use --overwrite to replace it)")
    report = {"params": {k: getattr(params, k) for k in PairingParams.__dataclass_fields__}, "splits": {}}
    preview = []
    with Staged(out, directory=True) as tmp:
        for split in splits:
            videos = FramesDataset(root, is_train=split == "train").videos
            tracks, looks = [], []
            for video in tqdm(videos, desc=f"pair {split}", unit="video", disable=None if progress else True):
                frames, _ = _read(video)
                track = np.asarray(keypoints(video, frames), dtype=np.float64)
                if track.ndim != 3 or len(track) != len(frames) or track.shape[2] != 2:
                    raise MarionetError(f"{video}: keypoints of shape {track.shape} for {len(frames)} frames")
                tracks.append(track)
                looks.append(describe(frames))
            names = [video_key(v.name) for v in videos]
            residual, alignment = motion_residuals(tracks, params.repeat_limit)
            similarity = np.stack(looks) @ np.stack(looks).T
            scores = pair_scores(residual, similarity, params)
            chosen = choose_pairs(scores, params.max_residual)
            lines, pairs = [], []
            for k, (i, j) in enumerate(chosen):
                frames_a, _ = _read(videos[i])
                frames_b = _read(videos[j])[0][alignment[i, j]]
                _write_frames(tmp / split / names[i], frames_a)
                _write_frames(tmp / split / names[j], frames_b)
                for v, name, indices in ((i, names[i], np.arange(len(frames_a))), (j, names[j], alignment[i, j])):
                    _copy_ground_truth(videos[v], ground_truth_path(tmp / split / name), indices)
                lines.append(f"{k} {scores[i, j]:.4f} {names[i]} {names[j]}")
                pairs.append({"a": names[i], "b": names[j], "score": float(scores[i, j]),
                              "residual": float(residual[i, j]), "similarity": float(similarity[i, j]),
                              "b_frames": alignment[i, j].tolist()})
                if len(preview) < 12:
                    preview += [frames_a, frames_b]
            pairing_file(tmp, split).write_text("".join(line + "\n" for line in lines))
            finite = np.where(np.isfinite(residual), residual.round(4), None)      # no residual of a video with itself
            entry = {"videos": names, "pairs": pairs, "residual": finite.tolist(),
                     "similarity": similarity.round(4).tolist()}
            truth = true_pairs(root, split)
            if truth is not None:
                entry["accuracy"] = precision_recall({frozenset((p["a"], p["b"])) for p in pairs}, truth)
            report["splits"][split] = entry
        if preview:
            from PIL import Image

            Image.fromarray(_sheet(preview)).save(tmp / "preview.png")
        (tmp / "pairs.json").write_text(json.dumps(report, indent=1) + "\n")
    return report
