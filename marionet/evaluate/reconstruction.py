"""The papers' reconstruction protocol on a test split.

For each test video: the first frame is the source, every frame drives it with absolute motion,
and the result is compared with the real frame. Metrics (means over all frames of all videos):
``l1`` (pixels in [0, 1]); for puppet data, ``akd`` and ``mkr`` with the shipped ground-truth
keypoint regressor as the pose estimator (see ``KeypointAgreement``: AKD over the joints found in
both frames, MKR over the joints found in the real frame). ``baseline_*`` are the same metrics for
copying the source frame.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from marionet.files import atomic_write
from marionet.data.datasets import FramesDataset
from marionet.data.video import VideoWriter, open_video, to_uint8
from marionet.evaluate.keypoint_regressor import KeypointAgreement, load_regressor, weights_path


def _regressor_for(video: Path):
    """The shipped keypoint regressor of a puppet video's kind, or None for other data."""
    from marionet.data.puppets import ground_truth_path, load_ground_truth

    if not ground_truth_path(video).exists():
        return None
    kind = load_ground_truth(video)["kind"]
    return load_regressor(kind) if weights_path(kind).exists() else None


def reconstruct(model, data_dir, out_dir, max_videos: int | None = None, batch_size: int = 8,
                progress: bool = True) -> dict:
    """Run the protocol with an AnimationPipeline; writes OUT/<video>/ PNG frames and OUT/metrics.json."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    h, w = model.frame_shape
    videos = FramesDataset(data_dir, frame_shape=(h, w, 3), is_train=False).videos[:max_videos]
    regressor = _regressor_for(videos[0])
    sums = {"l1": 0.0, "baseline_l1": 0.0}
    frames_total = 0
    kp_model, kp_base = (None, None) if regressor is None else (KeypointAgreement(regressor), KeypointAgreement(regressor))
    for video in tqdm(videos, unit="video", desc="reconstruct", disable=None if progress else True):
        with open_video(video) as reader:
            real = model.to_tensor(np.stack(list(reader))).permute(0, 2, 3, 1).cpu().numpy()  # (T, h, w, 3)
        fake = model.animate(real[0], real, relative=False, batch_size=batch_size)
        with VideoWriter(out_dir / Path(video).stem.removesuffix(".gif"), fps=reader.fps) as writer:
            for frame in fake:
                writer.write(frame)
        sums["l1"] += float(np.abs(fake - real).mean(axis=(1, 2, 3)).sum())
        sums["baseline_l1"] += float(np.abs(real[:1] - real).mean(axis=(1, 2, 3)).sum())
        frames_total += len(real)
        if kp_model is not None:
            real_u8, fake_u8 = to_uint8(real), to_uint8(fake)
            kp_model.add(fake_u8, real_u8)
            kp_base.add(np.repeat(real_u8[:1], len(real_u8), axis=0), real_u8)
    metrics = {k: v / frames_total for k, v in sums.items()}
    if kp_model is not None:
        metrics.update(kp_model.result())
        metrics.update({f"baseline_{k}": v for k, v in kp_base.result().items()})
        metrics["keypoint_regressor"] = regressor.kind
    metrics.update(videos=len(videos), frames=frames_total)
    atomic_write(out_dir / "metrics.json", lambda tmp: Path(tmp).write_text(json.dumps(metrics, indent=2) + "\n"))
    return metrics
