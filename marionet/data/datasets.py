"""Training and test datasets: the official FramesDataset (with DatasetRepeater folded in).

A split folder holds videos: folders of frames, video files (mp4/gif/mov/avi/webm/mkv) or PNG/JPG strips
of frames side by side (wide, official) or stacked (tall). Other files (npz/json/csv sidecars) are ignored.

Determinism: everything random in train item i comes from ``numpy.random.default_rng([random_seed, i])``,
drawn in this order: the video of the item's group (``rng.integers(len(group))``, also for groups of
one), the frame indices (``np.sort(rng.integers(num_frames, size=2))``), then ``rng.random(10)`` and
``rng.permutation(4)`` for the augmentations. i may exceed len(self); it wraps around.
"""

from __future__ import annotations

import math
import operator
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from marionet.data.frames import frames_to_tensor, resize_frames
from marionet.data.video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, _natural_key, open_video, read_image
from marionet.errors import MarionetError

STRIP_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg"})
_BAD = 0  # cached frame count of a video found unusable (a usable one has >= 1 frame)


def _is_video(path: Path) -> bool:
    if path.name.startswith("."):  # hidden files, and VideoWriter's temporaries
        return False
    return path.is_dir() or path.suffix.lower() in VIDEO_EXTENSIONS | STRIP_EXTENSIONS


def _frame_files(folder: Path) -> list[Path]:
    # scandir's entry types avoid one stat() per frame (VoxCeleb has millions of frames).
    with os.scandir(folder) as it:
        files = [Path(e.path) for e in it if not e.name.startswith(".") and e.is_file()
                 and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=_natural_key)


def _rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate (N,3,H,W) about the centre; corners outside the image become black (as skimage)."""
    n, _, h, w = x.shape
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    theta = torch.tensor([[c, -s * h / w, 0.0], [s * w / h, c, 0.0]], dtype=x.dtype).expand(n, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _gray(x: np.ndarray) -> np.ndarray:
    """(N,3,H,W) -> (N,1,H,W) luma, ITU-R 601 weights as torchvision."""
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]


def _shift_hue(x: np.ndarray, shift: float) -> np.ndarray:
    """Rotate the hue of (N,3,H,W) RGB in [0,1] by `shift` turns (RGB -> HSV -> RGB)."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    v, low = x.max(1), x.min(1)
    delta = v - low
    d = np.where(delta > 0, delta, 1)
    h = np.where(v == r, (g - b) / d, np.where(v == g, 2 + (b - r) / d, 4 + (r - g) / d))
    h = (h / 6 + shift) % 1.0
    s = np.where(v > 0, delta / np.where(v > 0, v, 1), 0)
    h6 = h * 6
    i = np.floor(h6).astype(np.int64) % 6
    f = h6 - np.floor(h6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    rgb = [np.choose(i, c) for c in ([v, q, p, p, t, v], [t, v, v, q, p, p], [p, p, t, v, v, q])]
    return np.clip(np.stack(rgb, 1), 0, 1).astype(np.float32)


def _jitter(x: np.ndarray, params: dict, u: np.ndarray, order: np.ndarray) -> np.ndarray:
    """ColorJitter on (N,3,H,W): the same factors for every frame, ops in random order (as torchvision)."""
    amount = [float(params.get(k) or 0) for k in ("brightness", "contrast", "saturation", "hue")]
    factors = [max(0.0, 1 - a) + (1 + a - max(0.0, 1 - a)) * uk for a, uk in zip(amount[:3], u)]
    factors.append(amount[3] * (2 * u[3] - 1))
    for k in order:
        if not amount[k]:
            continue
        f = factors[k]
        if k == 0:  # brightness: blend with black
            x = np.clip(x * f, 0, 1)
        elif k == 1:  # contrast: blend with the frame's mean grey
            x = np.clip(f * x + (1 - f) * _gray(x).mean(axis=(1, 2, 3), keepdims=True), 0, 1)
        elif k == 2:  # saturation: blend with the pixel's grey
            x = np.clip(f * x + (1 - f) * _gray(x), 0, 1)
        else:
            x = _shift_hue(x, f)
    return x.astype(np.float32)


class FramesDataset(torch.utils.data.Dataset):
    """Train items: {"source", "driving": (3,H,W) float32 in [0,1], "name"}; test items: {"video": (3,T,H,W), "name"}.

    Length is num_items * num_repeats in training (items are videos, or identities with id_sampling),
    the number of videos in test. ``self.videos`` lists the usable videos of the split.
    """

    def __init__(self, root_dir, frame_shape=(256, 256, 3), id_sampling=False, is_train=True,
                 random_seed=0, pairs_list=None, augmentation_params=None, num_repeats=1, **unused_official_keys):
        self.root_dir = Path(root_dir)
        if not self.root_dir.is_dir():
            raise MarionetError(f"{self.root_dir}: dataset folder not found")
        frame_shape = unused_official_keys.get("image_shape", frame_shape)  # Monkey-Net's name for it
        self.frame_shape = (int(frame_shape[0]), int(frame_shape[1]), 3)
        self.is_train, self.id_sampling = bool(is_train), bool(id_sampling)
        self.random_seed, self.num_repeats = int(random_seed), int(num_repeats)
        if self.random_seed < 0 or self.num_repeats < 1:
            raise MarionetError(f"random_seed must be >= 0 and num_repeats >= 1, got {random_seed}, {num_repeats}")
        self.augmentation_params = dict(augmentation_params or {}) if self.is_train else {}
        self._warned: set[Path] = set()

        self.videos, self._counts = [], []  # counts: int, None (count lazily) or _BAD
        for path in self._split():
            count = self._probe(path)
            if count != _BAD:
                self.videos.append(path)
                self._counts.append(count)
        if not self.videos:
            raise MarionetError(f"{self.root_dir}: no usable video in the {'train' if self.is_train else 'test'} split")
        if self.is_train and self.id_sampling:
            groups: dict[str, list[int]] = {}
            for v, path in enumerate(self.videos):
                groups.setdefault(path.name.split("#")[0], []).append(v)
            self.identities = sorted(groups)
            self.items = [groups[name] for name in self.identities]
        else:
            self.items = [[v] for v in range(len(self.videos))]

    # ------------------------------------------------------------------------------------- discovery

    def _split(self) -> list[Path]:
        root, name = self.root_dir, "train" if self.is_train else "test"
        if (root / "train").is_dir() or (root / "test").is_dir():  # predefined split
            if not (root / name).is_dir():
                raise MarionetError(f"{root}: has no '{name}' folder")
            return sorted(p for p in (root / name).iterdir() if _is_video(p))
        entries = sorted(p for p in root.iterdir() if _is_video(p))
        if len(entries) < 2:
            return entries  # one video cannot be split: both splits use it
        order = np.random.default_rng(self.random_seed).permutation(len(entries))
        n_test = math.ceil(0.2 * len(entries))
        chosen = order[n_test:] if self.is_train else order[:n_test]
        return [entries[k] for k in sorted(chosen)]

    def _probe(self, path: Path):
        """Frame count from cheap metadata: int, None when the container does not say, or _BAD (warned)."""
        try:
            if path.is_dir():
                n = len(_frame_files(path))
                if not n:
                    raise MarionetError("no image frames in the folder")
                return n
            if path.suffix.lower() in STRIP_EXTENSIONS:
                with Image.open(path) as im:
                    return self._strip_layout(*im.size)[0]
            with open_video(path) as reader:  # decodes the first frame only
                return reader.frame_count
        except Exception as e:  # noqa: BLE001 -- any unreadable video is skipped, never fatal
            self._warn(path, e)
            return _BAD

    def _strip_layout(self, width: int, height: int):
        """-> (frames, axis, tile): wide strips are split along the width, tall ones along the height."""
        fh, fw = self.frame_shape[:2]
        if width * fh >= height * fw:
            tile = max(1, round(height * fw / fh))
            return width // tile, 1, tile
        tile = max(1, round(width * fh / fw))
        return height // tile, 0, tile

    def _warn(self, path: Path, reason, action="skipping this video") -> None:
        if path not in self._warned:  # once per file
            self._warned.add(path)
            reason = str(reason).removeprefix(f"{path}: ")
            warnings.warn(f"{path}: {action} ({reason})", stacklevel=3)

    def _count(self, v: int) -> int:
        if self._counts[v] is None:  # the container did not say: decode once, cache
            try:
                with open_video(self.videos[v]) as reader:
                    self._counts[v] = sum(1 for _ in reader)
            except Exception as e:  # noqa: BLE001
                self._warn(self.videos[v], e)
                self._counts[v] = _BAD
        return self._counts[v]

    # ------------------------------------------------------------------------------------- decoding

    def _load(self, v: int, indices=None) -> torch.Tensor:
        """Frames `indices` (sorted; None = all) of video v -> (T,3,H,W) float32 at frame_shape."""
        path = self.videos[v]
        if path.is_dir():  # read only the needed files
            files = _frame_files(path)
            frames = [read_image(files[min(k, len(files) - 1)]) for k in indices or range(len(files))]
        elif path.suffix.lower() in STRIP_EXTENSIONS:  # one image read, then sliced
            strip = read_image(path)
            count, axis, tile = self._strip_layout(strip.shape[1], strip.shape[0])
            cut = [slice(None)] * 2
            frames = []
            for k in indices or range(count):
                cut[axis] = slice(min(k, count - 1) * tile, (min(k, count - 1) + 1) * tile)
                frames.append(strip[tuple(cut)])
        else:  # decode sequentially up to the last index needed
            decoded, last = {}, None
            with open_video(path) as reader:
                for k, last in enumerate(reader):
                    if indices is None or k in indices:
                        decoded[k] = last
                    if indices is not None and k >= indices[-1]:
                        break
            if indices is not None and len(decoded) < len(set(indices)):
                self._warn(path, f"only {k + 1} decodable frames though the container says {self._counts[v]}",
                           action="using its last frame in place of later ones")
            frames = [decoded.get(k, last) for k in indices or sorted(decoded)]
        fh, fw = self.frame_shape[:2]
        return torch.cat([frames_to_tensor(f, (fh, fw)) for f in frames])

    # ------------------------------------------------------------------------------------- items

    def __len__(self) -> int:
        return len(self.items) * (self.num_repeats if self.is_train else 1)

    def _candidates(self, group: list[int], first: int):
        """The chosen video, the rest of its group, then every other video in order (deterministic fallback)."""
        k = group.index(first)
        yield from group[k:] + group[:k]
        n = len(self.videos)
        yield from (w for w in ((first + d) % n for d in range(1, n)) if w not in group)

    def __getitem__(self, i):
        i = operator.index(i)
        if i < 0:
            raise IndexError(f"negative dataset index {i}")
        group = self.items[i % len(self) % len(self.items)]
        if not self.is_train:
            for v in self._candidates(group, group[0]):
                try:
                    video = self._load(v)
                except Exception as e:  # noqa: BLE001
                    self._warn(self.videos[v], e)
                    continue
                return {"video": video.permute(1, 0, 2, 3).contiguous(), "name": self.videos[v].name}
            raise MarionetError(f"{self.root_dir}: no video of the test split could be read")

        rng = np.random.default_rng([self.random_seed, i])
        for v in self._candidates(group, group[int(rng.integers(len(group)))]):
            n = self._count(v)
            if n == _BAD:
                continue
            indices = np.sort(rng.integers(n, size=2)).tolist()
            try:
                frames = self._load(v, indices)  # (2,3,H,W)
            except Exception as e:  # noqa: BLE001 -- e.g. a corrupt frame: fall back, never crash mid-epoch
                self._warn(self.videos[v], e)
                continue
            frames = self._augment(frames, rng.random(10), rng.permutation(4))
            return {"source": frames[0], "driving": frames[1], "name": self.videos[v].name}
        raise MarionetError(f"{self.root_dir}: no video of the train split could be read")

    def _augment(self, x: torch.Tensor, u: np.ndarray, order: np.ndarray) -> torch.Tensor:
        """Official order: flip, rotation, resize, crop, colour jitter. x: (2,3,H,W) -> (2,3,H,W)."""
        p = self.augmentation_params
        flip = p.get("flip_param") or {}
        if flip.get("time_flip") and u[0] < 0.5:
            x = x.flip(0)  # swaps source and driving; then no horizontal flip (official quirk)
        elif flip.get("horizontal_flip") and u[1] < 0.5:
            x = x.flip(-1)
        degrees = float((p.get("rotation_param") or {}).get("degrees") or 0)
        if degrees:
            x = _rotate(x, degrees * (2 * u[2] - 1))
        ratio = (p.get("resize_param") or {}).get("ratio")
        if ratio:
            scale = ratio[0] + (ratio[1] - ratio[0]) * u[3]
            x = resize_frames(x, (max(1, int(x.shape[2] * scale)), max(1, int(x.shape[3] * scale))))
        size = (p.get("crop_param") or {}).get("size") or (self.frame_shape[:2] if ratio else None)
        if size:
            ch, cw = int(size[0]), int(size[1])
            ph, pw = max(0, ch - x.shape[2]), max(0, cw - x.shape[3])
            if ph or pw:  # too small: pad with edge values, centred (official pad_clip)
                x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="replicate")
            y0 = min(int(u[4] * (x.shape[2] - ch + 1)), x.shape[2] - ch)
            x0 = min(int(u[5] * (x.shape[3] - cw + 1)), x.shape[3] - cw)
            x = x[:, :, y0:y0 + ch, x0:x0 + cw]
        x = resize_frames(x, self.frame_shape[:2])
        if p.get("jitter_param"):  # numpy: its reductions do not depend on the thread count
            x = torch.from_numpy(_jitter(x.numpy(), p["jitter_param"], u[6:10], order))
        return x.contiguous()
