"""Offline landmark detectors and face descriptors, from optional packages that carry their models.

- mediapipe 0.10.14 (``marionet[pose]`` / ``marionet[eval]``): face mesh (468 points), pose (33
  points with a visibility each; only model complexity 1 ships in the wheel, the others download),
  face detection (boxes), person segmentation (masks);
- dlib (``marionet[eval]``) with the ``face_recognition_models`` files, found by path (importing
  that package needs pkg_resources, gone from recent setuptools): the 68-point face landmarks of
  the iBUG scheme (the face-alignment detector's, which the papers' AKD used) and 128-D face
  descriptors (AED).

Every detector takes an H x W x 3 image (uint8, or float in [0, 1]) and returns points in pixels of
that image, (x, y) from its top-left corner, or None when it finds no face / person. Packages are
imported on first use; a missing one is a one-line MarionetError naming the extra to install.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
from pathlib import Path

import numpy as np

from marionet.errors import MarionetError, require


def _uint8(image) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(np.rint(image.astype(np.float32) * 255), 0, 255).astype(np.uint8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 image, got shape {image.shape}")
    return np.ascontiguousarray(image)


def _mediapipe():
    os.environ.setdefault("GLOG_minloglevel", "2")  # its graphs log to stderr at start-up
    warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype", category=UserWarning)  # its protobuf use
    return require("mediapipe", "pose")


def _started(make):
    """A mediapipe solution built by ``make()`` and run once on a blank image, with the process's stderr
    silenced meanwhile: its native code logs a few start-up lines there (TFLite delegates, feedback
    tensors) that logging settings do not reach. Errors still raise as Python exceptions."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            solution = make()
            solution.process(np.zeros((64, 64, 3), np.uint8))
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return solution


class FaceMesh:
    """mediapipe's face mesh: 468 landmarks of the largest face. ``video=True`` tracks between calls."""

    POINTS = 468

    def __init__(self, video: bool = False):
        mp = _mediapipe()
        self._mesh = _started(lambda: mp.solutions.face_mesh.FaceMesh(
            static_image_mode=not video, max_num_faces=1, refine_landmarks=False, min_detection_confidence=0.5))

    def __call__(self, image) -> np.ndarray | None:
        image = _uint8(image)
        found = self._mesh.process(image).multi_face_landmarks
        if not found:
            return None
        h, w = image.shape[:2]
        return np.array([(p.x * w, p.y * h) for p in found[0].landmark], np.float32)   # (468, 2)

    def close(self) -> None:
        self._mesh.close()


class PoseLandmarks:
    """mediapipe's pose: 33 landmarks and their visibility in [0, 1]."""

    POINTS = 33

    def __init__(self, video: bool = False):
        mp = _mediapipe()
        # complexity 1 is the model in the wheel (0 and 2 are downloaded at run time)
        self._pose = _started(lambda: mp.solutions.pose.Pose(static_image_mode=not video, model_complexity=1,
                                                             min_detection_confidence=0.5))

    def __call__(self, image) -> tuple[np.ndarray, np.ndarray] | None:
        image = _uint8(image)
        found = self._pose.process(image).pose_landmarks
        if found is None:
            return None
        h, w = image.shape[:2]
        points = np.array([(p.x * w, p.y * h) for p in found.landmark], np.float32)     # (33, 2)
        return points, np.array([p.visibility for p in found.landmark], np.float32)

    def close(self) -> None:
        self._pose.close()


class FaceBoxes:
    """mediapipe's face detection: boxes (x0, y0, x1, y1) in pixels with scores, best first."""

    def __init__(self, full_range: bool = True, min_score: float = 0.5):
        mp = _mediapipe()
        self._detector = _started(lambda: mp.solutions.face_detection.FaceDetection(
            model_selection=int(full_range), min_detection_confidence=min_score))

    def __call__(self, image) -> list[tuple[np.ndarray, float]]:
        image = _uint8(image)
        h, w = image.shape[:2]
        boxes = []
        for d in self._detector.process(image).detections or []:
            b = d.location_data.relative_bounding_box
            box = np.array([b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h], np.float32)
            boxes.append((box, float(d.score[0])))
        return sorted(boxes, key=lambda item: -item[1])

    def close(self) -> None:
        self._detector.close()


class PersonMask:
    """mediapipe's selfie segmentation: how much each pixel is a person, (H, W) float32 in [0, 1]. Its
    general model (the one in the wheel; the landscape model downloads)."""

    def __init__(self):
        mp = _mediapipe()
        self._segmenter = _started(lambda: mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0))

    def __call__(self, image) -> np.ndarray:
        return np.array(self._segmenter.process(_uint8(image)).segmentation_mask, np.float32)   # a writable copy

    def close(self) -> None:
        self._segmenter.close()


# ------------------------------------------------------------------------------------------------ dlib

def face_model_file(name: str) -> Path:
    """A model file of the ``face_recognition_models`` package, located without importing it."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MarionetError("face_recognition_models is not installed; install the optional part: "
                            "pip install 'marionet[eval]'")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    if not path.is_file():
        raise MarionetError(f"{path}: missing from the face_recognition_models package")
    return path


class DlibFaces:
    """dlib's HOG face detector, 68-point landmarks and 128-D face descriptors (largest face).

    The last few frames' face shapes are remembered, so landmarks and a descriptor of the same frame
    (AKD and AED) cost one detection."""

    def __init__(self, descriptors: bool = False, memory: int = 8):
        dlib = require("dlib", "eval")
        self._detect = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(str(face_model_file("shape_predictor_68_face_landmarks.dat")))
        self._encoder = (dlib.face_recognition_model_v1(str(face_model_file("dlib_face_recognition_resnet_model_v1.dat")))
                         if descriptors else None)
        self._recent: dict[bytes, object] = {}
        self._memory = memory

    def _face(self, image):
        """dlib's full_object_detection of the largest face, or None."""
        key = hashlib.blake2b(image.tobytes(), digest_size=16).digest() + bytes(str(image.shape), "ascii")
        if key not in self._recent:
            boxes = self._detect(image, 1)   # upsample once: faces down to ~40 px
            box = max(boxes, key=lambda r: r.width() * r.height()) if len(boxes) else None
            if len(self._recent) >= self._memory:
                self._recent.pop(next(iter(self._recent)))
            self._recent[key] = None if box is None else self._shape(image, box)
        return self._recent[key]

    def landmarks(self, image) -> np.ndarray | None:
        """(68, 2) landmarks (iBUG order: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67)."""
        face = self._face(_uint8(image))
        if face is None:
            return None
        return np.array([(p.x + 0.5, p.y + 0.5) for p in face.parts()], np.float32)   # pixel centres

    def descriptor(self, image) -> np.ndarray | None:
        """(128,) face descriptor; distances under ~0.6 mean the same person (dlib's convention)."""
        if self._encoder is None:
            raise ValueError("DlibFaces(descriptors=True) computes descriptors")
        image = _uint8(image)
        face = self._face(image)
        if face is None:
            return None
        return np.array(self._encoder.compute_face_descriptor(image, face), np.float32)
