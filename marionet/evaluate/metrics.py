"""The papers' metrics, one definition each, with detectors that run offline.

Pixel metrics per frame: L1 (mean absolute difference in [0, 1]), PSNR (dB, peak 1) and SSIM
(scikit-image's, over the colour channels).

Keypoint metrics against an external pose estimator (``KeypointDetector``): AKD is the mean
distance, in pixels of the real frame, between keypoints found in both the real and the generated
frame; MKR is the fraction of keypoints found in the real frame that are not found in the
generated one. Estimators:
- ``face``: dlib's 68-point landmarks (the iBUG scheme of the face-alignment detector the papers
  used); a face is found or not, and with it all 68 points;
- ``body``: mediapipe's 33 pose landmarks, each found when its visibility is over 0.5;
- ``humanoid``, ``quadruped``, ``face-puppet``: the shipped ground-truth regressors of the puppets,
  a joint found when its predicted visibility is over 0.5.

AED (faces): the Euclidean distance between dlib's 128-D face descriptors of the real and the
generated frame, over frames where both show a face.
"""
from __future__ import annotations

import numpy as np

from marionet.data.video import to_uint8
from marionet.errors import MarionetError
from marionet.evaluate.keypoint_regressor import load_regressor, predict

KINDS = ("face", "body", "humanoid", "quadruped", "face-puppet")


# ------------------------------------------------------------------------------------------------ pixels

def pixel_metrics(real: np.ndarray, fake: np.ndarray) -> dict[str, np.ndarray]:
    """real, fake (N, H, W, 3) float in [0, 1] -> per-frame {"l1", "psnr", "ssim"}, each (N,)."""
    from marionet.errors import require

    metrics = require("skimage.metrics", "eval")
    real, fake = real.astype(np.float64), fake.astype(np.float64)
    l1 = np.abs(real - fake).mean(axis=(1, 2, 3))
    mse = ((real - fake) ** 2).mean(axis=(1, 2, 3))
    with np.errstate(divide="ignore"):
        psnr = np.where(mse > 0, 10 * np.log10(1.0 / np.maximum(mse, 1e-300)), np.inf)
    win = min(7, *real.shape[1:3]) // 2 * 2 + 1 if min(real.shape[1:3]) >= 3 else 1
    ssim = np.array([metrics.structural_similarity(r, f, channel_axis=-1, data_range=1.0, win_size=win)
                     for r, f in zip(real, fake)])
    return {"l1": l1, "psnr": psnr, "ssim": ssim}


# ------------------------------------------------------------------------------------------------ keypoints

class KeypointDetector:
    """An external pose estimator: frames (N, H, W, 3) uint8 -> (points (N, K, 2) in pixels, found (N, K))."""

    def __init__(self, kind: str, faces=None):
        if kind not in KINDS:
            raise MarionetError(f"--kind {kind}: unknown kind (choose from {', '.join(KINDS)})")
        self.kind = kind
        if kind == "face":
            from marionet.landmarks import DlibFaces
            self._faces, self.num_points = faces or DlibFaces(), 68
        elif kind == "body":
            from marionet.landmarks import PoseLandmarks
            self._pose, self.num_points = PoseLandmarks(), 33
        else:
            self.regressor_kind = "face" if kind == "face-puppet" else kind
            self._regressor = load_regressor(self.regressor_kind)
            self.num_points = len(self._regressor.joint_names)

    def __call__(self, frames) -> tuple[np.ndarray, np.ndarray]:
        frames = to_uint8(frames)                                              # uint8 passes through
        if self.kind in ("face", "body"):
            points = np.zeros((len(frames), self.num_points, 2), np.float32)
            found = np.zeros((len(frames), self.num_points), bool)
            for i, frame in enumerate(frames):
                if self.kind == "face":
                    landmarks = self._faces.landmarks(frame)
                    if landmarks is not None:
                        points[i], found[i] = landmarks, True
                else:
                    pose = self._pose(frame)
                    if pose is not None:
                        points[i], found[i] = pose[0], pose[1] > 0.5
            return points, found
        points, visibility = predict(frames, self._regressor, return_visibility=True)
        return points, visibility > 0.5


class KeypointAgreement:
    """Running AKD / MKR between generated and reference frames (see the module docstring); ``add``
    also returns the per-frame values (AKD NaN where no keypoint is found in both frames)."""

    def __init__(self, detector):
        self.detector = KeypointDetector(detector) if isinstance(detector, str) else detector
        self.dist, self.matched, self.missing, self.found = 0.0, 0, 0, 0

    def add(self, generated, reference) -> tuple[np.ndarray, np.ndarray]:
        pg, found_g = self.detector(generated)
        pr, found_r = self.detector(reference)
        both = found_g & found_r
        distance = np.where(both, np.linalg.norm(pg - pr, axis=-1), 0.0)               # (N, K)
        self.dist += float(distance.sum())
        self.matched += int(both.sum())
        self.found += int(found_r.sum())
        self.missing += int((found_r & ~found_g).sum())
        with np.errstate(invalid="ignore"):
            akd = distance.sum(1) / both.sum(1)
            mkr = (found_r & ~found_g).sum(1) / found_r.sum(1)
        return akd, mkr

    def result(self) -> dict:
        return {"akd": self.dist / self.matched if self.matched else float("nan"),
                "mkr": self.missing / self.found if self.found else 0.0}


def akd_mkr(generated, reference, detector="humanoid") -> dict:
    """AKD / MKR of one batch of frames (see ``KeypointAgreement``)."""
    agreement = KeypointAgreement(detector)
    agreement.add(generated, reference)
    return agreement.result()


# ------------------------------------------------------------------------------------------------ identity

class IdentityDistance:
    """AED: per-frame distance between dlib face descriptors (NaN where a frame shows no face)."""

    def __init__(self, faces=None):
        from marionet.landmarks import DlibFaces
        self._faces = faces or DlibFaces(descriptors=True)

    def __call__(self, generated, reference) -> np.ndarray:
        out = []
        for g, r in zip(generated, reference):
            g, r = self._faces.descriptor(to_uint8(g)), self._faces.descriptor(to_uint8(r))
            out.append(np.nan if g is None or r is None else float(np.linalg.norm(g - r)))
        return np.array(out)
