"""The papers' reconstruction protocol on a test split, same-identity and cross-identity.

Same identity (default): for each test video, the first frame is the source and every frame drives
it; the result is compared with the real frame.

Cross identity (``pairs=True``), on a paired dataset (``marionet synth --pairs K`` writes
``pairs.csv``: groups of identities sharing one motion; ``marionet pair`` and the public Donkey-Net
code, ``test_pairing.txt``): for each ordered pair (A, B) of a test group, the source is A's first
frame, B's video drives it, and the result is compared with A's own frames, which show A in B's motion.

Metrics (means over all frames of all videos): ``l1`` (pixels in [0, 1]); for puppet data, ``akd``
and ``mkr`` with the shipped ground-truth keypoint regressor as the pose estimator (see
``KeypointAgreement``: AKD over the joints found in both frames, MKR over the joints found in the
real frame). ``baseline_*`` are the same metrics for copying the source frame. Motion is absolute
unless ``relative`` (FOMM's relative transfer from the first driving frame).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from marionet.data.datasets import FramesDataset
from marionet.data.video import VideoWriter, open_video, to_uint8
from marionet.evaluate.keypoint_regressor import weights_path
from marionet.evaluate.metrics import KeypointAgreement, KeypointDetector
from marionet.files import atomic_write_text



def puppet_kind(video: Path) -> str | None:
    """The evaluation kind of a puppet video (its ground-truth regressor: humanoid, quadruped,
    face-puppet), or None for other data."""
    from marionet.data.puppets import ground_truth_path, load_ground_truth

    if not ground_truth_path(video).exists():
        return None
    kind = load_ground_truth(video)["kind"]
    return ("face-puppet" if kind == "face" else kind) if weights_path(kind).exists() else None


def paired_test_videos(data_dir, videos: list[Path]) -> list[tuple[Path, Path]]:
    """Ordered (A, B) pairs of distinct test videos: the rows of ``DIR/test_pairing.txt`` (the public
    Donkey-Net layout, ``marionet pair``) both ways, else every pair within a group of ``DIR/pairs.csv``."""
    from marionet.data.pairs import video_pairs

    return video_pairs(data_dir, "test", videos, both_orders=True)


def reconstruct(model, data_dir, out_dir, max_videos: int | None = None, batch_size: int = 8,
                progress: bool = True, pairs: bool = False, relative: bool = False,
                still_background: bool = False) -> dict:
    """Run the protocol with an AnimationPipeline; writes OUT/<video>/ PNG frames (OUT/<A>~<B>/ for a
    pair) and OUT/metrics.json. ``max_videos`` limits the videos (pairs) evaluated."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    h, w = model.frame_shape
    videos = FramesDataset(data_dir, frame_shape=(h, w, 3), is_train=False).videos
    jobs = paired_test_videos(data_dir, videos) if pairs else [(v, v) for v in videos]
    jobs = jobs[:max_videos]
    kind = puppet_kind(jobs[0][0])
    detector = KeypointDetector(kind) if kind else None
    sums = {"l1": 0.0, "baseline_l1": 0.0}
    frames_total = 0
    kp_model, kp_base = (None, None) if detector is None else (KeypointAgreement(detector), KeypointAgreement(detector))
    for target, driver in tqdm(jobs, unit="video", desc="reconstruct", disable=None if progress else True):
        real, fps = _frames(model, target)
        driving = real if driver == target else _frames(model, driver)[0]
        n = min(len(real), len(driving))
        real, driving = real[:n], driving[:n]
        if model.model.driven_by_joints:   # pose transfer: ground-truth joints drive it
            from marionet.data.pose_videos import reconstruction_joints

            own, joints = reconstruction_joints(target, driver, h, model.model.pose.joint_set)
            fake = model.model.transfer(real[0], own, joints[:n], batch_size=batch_size)
        else:
            fake = model.animate(real[0], driving, relative=relative, batch_size=batch_size,
                                 still_background=still_background)
        name = _stem(target) if driver == target else f"{_stem(target)}~{_stem(driver)}"
        with VideoWriter(out_dir / name, fps=fps) as writer:
            for frame in fake:
                writer.write(frame)
        sums["l1"] += float(np.abs(fake - real).mean(axis=(1, 2, 3)).sum())
        sums["baseline_l1"] += float(np.abs(real[:1] - real).mean(axis=(1, 2, 3)).sum())
        frames_total += n
        if kp_model is not None:
            real_u8, fake_u8 = to_uint8(real), to_uint8(fake)
            kp_model.add(fake_u8, real_u8)
            kp_base.add(np.repeat(real_u8[:1], len(real_u8), axis=0), real_u8)
    metrics = {k: v / frames_total for k, v in sums.items()}
    if kp_model is not None:
        metrics.update(kp_model.result())
        metrics.update({f"baseline_{k}": v for k, v in kp_base.result().items()})
        metrics["keypoint_regressor"] = detector.regressor_kind
    metrics.update(videos=len(jobs), frames=frames_total, protocol="cross-identity" if pairs else "same-identity",
                   motion="relative" if relative else "absolute", still_background=still_background)
    atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics


def _frames(model, video: Path) -> tuple[np.ndarray, float]:
    """A video's frames at the model's size, (T, h, w, 3) float32, and its frame rate."""
    with open_video(video) as reader:
        frames = np.stack(list(reader))
    return model.to_tensor(frames).permute(0, 2, 3, 1).cpu().numpy(), reader.fps


def _stem(video: Path) -> str:
    return Path(video).stem.removesuffix(".gif")
