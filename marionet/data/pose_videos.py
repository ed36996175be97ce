"""Videos with joints for pose-guided transfer, and the training pairs made from them.

A split folder (``DIR/train``, ``DIR/test``; or ``DIR`` itself when it has neither) holds its
videos in one of three layouts, all read the same way (frames in natural order: frame k is the k-th
image of a folder, whatever its number base):

- the original posewarp layout: ``<split>/frames/<video>/<k>.jpg|png`` (1-based) and
  ``<split>/info/<video>.mat``;
- any videos (folders of frames, mp4, gif, ...) as the entries of ``<split>/``, with the
  ``<split>/info/<video>.mat`` files that ``marionet joints --data DIR`` writes;
- humanoid puppets (``marionet synth``), whose ground truth ``DIR/groundtruth/<split>/<video>.npz``
  gives the joints (mapped to MPII's 14).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from marionet.data import poses
from marionet.errors import MarionetError

INFO_DIR, FRAMES_DIR = "info", "frames"


@dataclass
class PoseVideo:
    path: Path                      # a folder of frames or a video file
    joints: np.ndarray              # (T, 14, 2) 0-based pixel centres, NaN where unknown
    bbox: np.ndarray                # (T, 4) (x, y, w, h)

    @property
    def name(self) -> str:
        return self.path.name if self.path.is_dir() else self.path.stem

    def frames(self, indices) -> list[np.ndarray]:
        """The frames at ``indices`` as HxWx3 uint8 RGB."""
        from marionet.data.video import _image_files, open_video, read_image, to_uint8

        if self.path.is_dir():
            files = _image_files(self.path)
            return [to_uint8(read_image(files[k])) for k in indices]
        wanted, found = set(indices), {}
        with open_video(self.path) as reader:
            for k, frame in enumerate(reader):
                if k in wanted:
                    found[k] = frame
                if len(found) == len(wanted):
                    break
        missing = wanted - set(found)
        if missing:
            raise MarionetError(f"{self.path}: has no frame {min(missing)} (its info file has {len(self.joints)})")
        return [found[k] for k in indices]


def split_folder(root, split: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise MarionetError(f"{root}: dataset folder not found")
    if (root / "train").is_dir() or (root / "test").is_dir():
        if not (root / split).is_dir():
            raise MarionetError(f"{root}: has no '{split}' folder")
        return root / split
    return root


def video_entries(folder: Path) -> list[Path]:
    """The videos of a split folder (its frames/ folder's entries in the original layout)."""
    from marionet.data.datasets import _is_video

    base = folder / FRAMES_DIR if (folder / FRAMES_DIR).is_dir() else folder
    return sorted(p for p in base.iterdir() if _is_video(p) and not (base == folder and p.name in (INFO_DIR, FRAMES_DIR)))


def info_path(folder: Path, video: Path) -> Path:
    return folder / INFO_DIR / f"{video.name if video.is_dir() else video.stem}.mat"


def load_pose_videos(root, split: str = "train") -> list[PoseVideo]:
    """Every video of the split with its joints; one-line error naming a video without any."""
    from marionet.data.puppets import ground_truth_path, load_ground_truth

    folder = split_folder(root, split)
    videos = []
    for path in video_entries(folder):
        info = info_path(folder, path)
        if info.is_file():
            joints, bbox = poses.read_info(info)
        elif ground_truth_path(path).is_file():
            joints = poses.puppet_joints(load_ground_truth(path))
            bbox = np.stack([poses.joints_bbox(j) for j in joints])
        else:
            raise MarionetError(f"{path}: no joints ({info} missing; extract them with marionet joints --data "
                                f"{Path(root)})")
        videos.append(PoseVideo(path, joints, bbox))
    if not videos:
        raise MarionetError(f"{folder}: no videos")
    return videos


class PosePairs(torch.utils.data.Dataset):
    """Training pairs as the original draws them: item i takes video i mod n, two of its frames with
    known joints more than ``min_gap`` of the video apart and one augmentation, all from
    ``numpy.random.default_rng([seed, i])``. Items: {"source", "target": (3, H, W) in [0, 1] (a little
    below 0 after "saturation"), "pose_source", "pose_target": (J, h, w), "prior": (L+1, H, W),
    "trans": (L+1, 2, 3), "joints_source", "joints_target": (14, 2), "name"}."""

    def __init__(self, root, params: poses.PoseParams, frame=(256, 256), is_train: bool = True, seed: int = 0,
                 num_repeats: int = 1):
        self.params, self.frame = params, tuple(frame)
        self.seed, self.num_repeats, self.is_train = int(seed), int(num_repeats), is_train
        self.videos = load_pose_videos(root, "train" if is_train else "test")
        needed = sorted({k for limb in params.joints.limbs for k in limb} | set(params.joints.joints))
        self.valid = [np.flatnonzero(np.isfinite(v.joints[:, needed]).all((1, 2))) for v in self.videos]
        usable = [v for v, ok in zip(self.videos, self.valid) if len(ok) >= 2]
        if not usable:
            raise MarionetError(f"{root}: no video has two frames with the {params.joint_set}-body joints")
        self.valid = [ok for ok in self.valid if len(ok) >= 2]
        self.videos = usable

    def __len__(self) -> int:
        return len(self.videos) * self.num_repeats

    def __getitem__(self, i):
        rng = np.random.default_rng([self.seed, int(i)])
        video, valid = self.videos[i % len(self.videos)], self.valid[i % len(self.videos)]
        a, b = poses.sample_pair(rng, len(valid), self.params.min_gap)
        a, b = int(valid[a]), int(valid[b])
        augment = poses.random_augmentation(rng, self.params.augment) if self.params.augment and self.is_train else None
        frame_a, frame_b = video.frames([a, b])
        pair = poses.prepare_pair(frame_a, frame_b, video.joints[a], video.joints[b], video.bbox[a], video.bbox[b],
                                  self.params, self.frame, augment)
        f = lambda x: torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))  # noqa: E731
        return {"source": f((pair["src_image"] + 1) / 2), "target": f((pair["tgt_image"] + 1) / 2),
                "pose_source": f(pair["pose_src"]), "pose_target": f(pair["pose_tgt"]), "prior": f(pair["mask_prior"]),
                "trans": f(pair["trans"]), "joints_source": f(pair["joints_src"]), "joints_target": f(pair["joints_tgt"]),
                "name": video.name}


def reconstruction_joints(target: Path, driver: Path, size: int, joint_set: str = "full"):
    """The protocol's joints for a puppet test video ``target`` driven by ``driver`` (the same video, or
    another identity of its pair group), in pixels of frames resized to ``size``: -> (the target's
    first-frame joints (14, 2), the driver's joints of every frame (T, 14, 2), retargeted to the
    target's person scale when it is another identity)."""
    from marionet.data.puppets import ground_truth_path, load_ground_truth

    def joints_of(video):
        if not ground_truth_path(video).is_file():
            raise MarionetError(f"{video}: a posewarp model is evaluated with ground-truth joints; this video has "
                                f"none ({ground_truth_path(video)} missing)")
        gt = load_ground_truth(video)
        return (poses.puppet_joints(gt) + 0.5) * (size / gt["size"]) - 0.5

    own = joints_of(target)
    if driver == target:
        return own[0], own
    other = joints_of(driver)
    return own[0], poses.retarget(other, other[0], own[0], joint_set)
