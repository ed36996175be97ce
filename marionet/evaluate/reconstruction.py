"""The papers' reconstruction protocol on a test split.

For each test video: the first frame is the source, every frame drives it with absolute motion,
and the result is compared with the real frame. Metrics (means over all frames of all videos):
``l1`` (pixels in [0, 1]); for puppet data, ``akd`` (average distance in pixels between the joints
a ground-truth keypoint regressor finds on the real and on the generated frame) and ``mkr``
(fraction of joints visible on the real frame but not found visible on the generated one), as the
papers measure with an external pose estimator. ``baseline_*`` are the same metrics for copying the
source frame.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from marionet.checkpoints import atomic_write
from marionet.data.datasets import FramesDataset
from marionet.data.video import VideoWriter, open_video, to_uint8


def _regressor_for(video: Path):
    """The shipped keypoint regressor of a puppet video's kind, or None for other data."""
    from marionet.data.puppets import ground_truth_path, load_ground_truth
    from marionet.evaluate.keypoint_regressor import load_regressor, weights_path

    if not ground_truth_path(video).exists():
        return None
    kind = load_ground_truth(video)["kind"]
    return load_regressor(kind) if weights_path(kind).exists() else None


class _Keypoints:
    """Accumulates AKD / MKR between real and generated frames."""

    def __init__(self, regressor):
        self.regressor, self.dist, self.missing, self.count, self.visible = regressor, 0.0, 0, 0, 0

    def add(self, real: np.ndarray, fake: np.ndarray) -> None:
        from marionet.evaluate.keypoint_regressor import predict

        jr, vr = predict(real, self.regressor, return_visibility=True)
        jf, vf = predict(fake, self.regressor, return_visibility=True)
        self.dist += float(np.linalg.norm(jr - jf, axis=-1).sum())
        self.count += jr.shape[0] * jr.shape[1]
        seen = vr > 0.5
        self.visible += int(seen.sum())
        self.missing += int((seen & (vf <= 0.5)).sum())

    def result(self) -> dict:
        return {"akd": self.dist / max(self.count, 1), "mkr": self.missing / max(self.visible, 1)}


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
    kp_model, kp_base = (_Keypoints(regressor), _Keypoints(regressor)) if regressor is not None else (None, None)
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
            kp_model.add(real_u8, fake_u8)
            kp_base.add(real_u8, np.repeat(real_u8[:1], len(real_u8), axis=0))
    metrics = {k: v / frames_total for k, v in sums.items()}
    if kp_model is not None:
        metrics.update(kp_model.result())
        metrics.update({f"baseline_{k}": v for k, v in kp_base.result().items()})
        metrics["keypoint_regressor"] = regressor.kind
    metrics.update(videos=len(videos), frames=frames_total)
    atomic_write(out_dir / "metrics.json", lambda tmp: Path(tmp).write_text(json.dumps(metrics, indent=2) + "\n"))
    return metrics
