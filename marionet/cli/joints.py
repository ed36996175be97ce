"""marionet joints: detect the 14 MPII joints in every frame of a folder of videos (mediapipe's pose
model, offline), into the original posewarp info files that pose-transfer training reads."""
from __future__ import annotations

import argparse

HELP = "detect joints (mediapipe pose) in every frame of DIR's videos, into DIR/<split>/info/<video>.mat"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True,
                   help="dataset folder: train/ and test/ of videos (or frames/ in the original posewarp layout), "
                        "or a folder of videos")
    p.add_argument("--overwrite", action="store_true", help="redo videos that already have an info file")


def run(args) -> int:
    import numpy as np
    from tqdm import tqdm

    from marionet.data import poses
    from marionet.data.pose_videos import info_path, video_entries
    from marionet.data.video import open_video
    from marionet.errors import MarionetError
    from marionet.landmarks import PoseLandmarks
    from pathlib import Path

    root = Path(args.data)
    if not root.is_dir():
        raise MarionetError(f"{root}: dataset folder not found")
    splits = [root / s for s in ("train", "test") if (root / s).is_dir()] or [root]
    jobs = [(split, video) for split in splits for video in video_entries(split)]
    if not jobs:
        raise MarionetError(f"{root}: no videos")
    done = frames_total = empty = 0
    for split, video in tqdm(jobs, unit="video", desc="joints", disable=None):
        target = info_path(split, video)
        if target.exists() and not args.overwrite:
            continue
        detector = PoseLandmarks(video=True)   # tracks within one video
        joints, boxes, visible = [], [], []
        with open_video(video) as reader:
            for frame in reader:
                found = detector(frame)
                if found is None:
                    joints.append(np.full((14, 2), np.nan))
                    boxes.append(np.full(4, np.nan))
                    visible.append(np.zeros(14))
                    empty += 1
                    continue
                points, visibility = found
                joints.append(poses.mediapipe_joints(points))
                boxes.append(poses.joints_bbox(points - 0.5))      # around all 33 landmarks
                visible.append(poses.mediapipe_visibility(visibility))
        detector.close()
        poses.write_info(target, np.stack(joints), np.stack(boxes), np.stack(visible))
        done += 1
        frames_total += len(joints)
    print(f"wrote {done} info files ({frames_total} frames, {empty} without a person) under {root}; "
          f"{len(jobs) - done} already had one")
    return 0
