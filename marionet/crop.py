"""Cropping the subject out of a picture and pasting the animation back, and the best starting frame.

People animate a face or a body inside a larger photo and want the result at the photo's size. So:
find the subject in the source (mediapipe face detection, or its pose landmarks for a body), take a
square around it with a margin, animate that square at the model's size, and paste the result back
into the full source with a feathered edge: outside the square the output is the source, unchanged.
The driving video is cropped the same way, with one square covering the subject's motion over the
whole clip (``fixed``, as the official crop-video script computes it) or a smoothed square per frame
(``track``).

Boxes are (x0, y0, x1, y1) in pixels of their image, x0/y0 inclusive, x1/y1 exclusive.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
import torch.nn.functional as F

from marionet.data.frames import frames_to_tensor, resize_frames, tensor_to_frames
from marionet.errors import MarionetError

CROPS = ("face", "body", "none")
DRIVING_CROPS = ("fixed", "track")
MARGIN = {"face": 1.9, "body": 1.25}   # square side / subject size: a face crop shows hair and chin, as in VoxCeleb


def default_crop(config: dict) -> str:
    """``animate_params.crop`` when a config says it; otherwise guessed from the dataset the config was made
    for (official configs name it in dataset_params.root_dir): faces for VoxCeleb-like data, bodies for
    Tai-Chi and fashion, none for the rest (puppets, cartoons)."""
    explicit = (config.get("animate_params") or {}).get("crop")
    if explicit is not None:
        return str(explicit)
    root = str((config.get("dataset_params") or {}).get("root_dir", "")).lower()
    if any(word in root for word in ("vox", "face", "nemo", "celeb")):
        return "face"
    if any(word in root for word in ("taichi", "fashion", "body", "dance")):
        return "body"
    return "none"


class SubjectFinder:
    """The subject's box in an image: mediapipe's face detector, or the box of its pose landmarks."""

    def __init__(self, kind: str, video: bool = False):
        if kind not in ("face", "body"):
            raise ValueError(f"kind must be face or body, got {kind!r}")
        from marionet.landmarks import FaceBoxes, PoseLandmarks

        self.kind = kind
        self._find = FaceBoxes() if kind == "face" else PoseLandmarks(video=video)

    def __call__(self, image) -> np.ndarray | None:
        if self.kind == "face":
            boxes = self._find(image)
            return boxes[0][0] if boxes else None
        pose = self._find(image)
        if pose is None:
            return None
        points = pose[0][pose[1] > 0.5]
        if len(points) < 4:
            return None
        return np.concatenate([points.min(0), points.max(0)]).astype(np.float32)


def square_around(box, kind: str, extent=None) -> np.ndarray:
    """The square (x0, y0, x1, y1), whole pixels, centred on ``box`` (a face box moved up a little, to take
    in the forehead and hair): its side is MARGIN[kind] times the box's larger side, or, given the
    ``extent`` box the subject moves over, that extent's larger side plus the same margin."""
    x0, y0, x1, y1 = map(float, box)
    size = max(x1 - x0, y1 - y0)
    up = 0.1 * (y1 - y0) if kind == "face" else 0.0
    if extent is not None:
        x0, y0, x1, y1 = map(float, extent)
    side = max(2, round(max(x1 - x0, y1 - y0) + (MARGIN[kind] - 1) * size))
    left, top = round((x0 + x1 - side) / 2), round((y0 + y1 - side) / 2 - up)
    return np.array([left, top, left + side, top + side], np.int64)


def cut(image: np.ndarray, square, size: tuple[int, int]) -> np.ndarray:
    """The ``square`` of ``image`` (H, W, 3) resized to ``size`` (h, w), float32 in [0, 1]; where the square
    leaves the image, the image's edge pixels continue."""
    x0, y0, x1, y1 = (int(v) for v in square)
    h, w = image.shape[:2]
    pads = (max(0, -x0), max(0, x1 - w), max(0, -y0), max(0, y1 - h))         # left, right, top, bottom
    x = frames_to_tensor(image[max(0, y0):min(h, y1), max(0, x0):min(w, x1)])
    if any(pads):
        x = F.pad(x, pads, mode="replicate")
    return tensor_to_frames(resize_frames(x, size))[0]


def feather(size: tuple[int, int], width: float = 0.08) -> np.ndarray:
    """(h, w) blending weights: 1 inside, falling smoothly to 0 over ``width`` of the side at the edges."""
    def ramp(n):
        t = (np.arange(n) + 0.5) / n
        edge = np.clip(np.minimum(t, 1 - t) / width, 0, 1)
        return edge * edge * (3 - 2 * edge)   # smoothstep
    return np.outer(ramp(size[0]), ramp(size[1])).astype(np.float32)


def paste(background: np.ndarray, patch: np.ndarray, square, weight: np.ndarray | None = None) -> np.ndarray:
    """``background`` (H, W, 3) float with ``patch`` (h, w, 3) resized onto ``square`` and blended with
    feathered edges (``weight``: ``feather`` of the square's size, computed when not given); every
    pixel outside the square is returned unchanged."""
    x0, y0, x1, y1 = (int(v) for v in square)
    h, w = background.shape[:2]
    left, top, right, bottom = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if right <= left or bottom <= top:
        return background
    resized = tensor_to_frames(resize_frames(frames_to_tensor(patch), (y1 - y0, x1 - x0)))[0]
    weight = (feather((y1 - y0, x1 - x0)) if weight is None else weight)[..., None]
    inside = (slice(top - y0, bottom - y0), slice(left - x0, right - x0))
    out = background.copy()
    region = out[top:bottom, left:right]
    out[top:bottom, left:right] = region * (1 - weight[inside]) + resized[inside] * weight[inside]
    return out


def subject_square(image: np.ndarray, kind: str, name: str) -> np.ndarray:
    """The crop square of the subject in a still image; MarionetError naming ``name`` if none is found."""
    box = SubjectFinder(kind)(image)
    if box is None:
        raise MarionetError(f"{name}: no {kind} found (use --crop none to animate the whole picture)")
    return square_around(box, kind)


def driving_squares(frames: Iterable[np.ndarray], kind: str, mode: str, name: str) -> list[np.ndarray]:
    """One crop square per driving frame (read once, only boxes kept): ``fixed``, one square around the
    subject's extent over the clip; ``track``, per-frame squares smoothed over time (frames without a
    detection take the nearest one's). MarionetError naming the frame range when no frame shows it."""
    if mode not in DRIVING_CROPS:
        raise ValueError(f"mode must be one of {DRIVING_CROPS}, got {mode!r}")
    finder = SubjectFinder(kind, video=True)
    boxes = [finder(frame) for frame in frames]
    found = [i for i, b in enumerate(boxes) if b is not None]
    if not found:
        raise MarionetError(f"{name}: no {kind} found in frames 0-{len(boxes) - 1} (use --crop none)")
    if mode == "fixed":
        found_boxes = np.stack([boxes[i] for i in found])
        typical = np.median(found_boxes, axis=0)
        extent = np.concatenate([found_boxes[:, :2].min(0), found_boxes[:, 2:].max(0)])
        return [square_around(typical, kind, extent)] * len(boxes)
    filled = np.stack([boxes[i] if boxes[i] is not None else boxes[min(found, key=lambda j: abs(j - i))]
                       for i in range(len(boxes))])
    smooth = np.stack([np.convolve(np.pad(filled[:, k], 4, mode="edge"), np.ones(9) / 9, mode="valid")
                       for k in range(4)], 1)                      # a moving average over ~0.3 s at 30 fps
    return [square_around(box, kind) for box in smooth]


def animate_in_place(pipeline, source: np.ndarray, open_driving, crop: str = "face", driving_crop: str = "fixed",
                     best: bool = False, relative: bool = True, adapt_scale: bool = True, batch_size: int = 4,
                     fit: str = "crop", names: tuple[str, str] = ("the source", "the driving video"),
                     still_background: bool = False) -> Iterator:
    """Animate the subject of ``source`` (H, W, 3) in place: yields (H, W, 3) float32 frames, the source
    everywhere but the feathered square around its face or body (``crop`` face|body), or the model's
    frames as they are (``crop="none"``). ``open_driving()`` returns a fresh iterator over the driving
    frames (read twice when cropping: boxes first, then frames). ``best``: start from the driving frame
    whose face pose is closest to the source's and animate forward and backward from it."""
    if crop not in CROPS:
        raise MarionetError(f"--crop {crop}: choose from {', '.join(CROPS)}")
    size = pipeline.frame_shape
    if crop == "none":
        source_in, frames = source, open_driving
    else:
        square = subject_square(source, crop, names[0])
        if pipeline.model.native_resolution:   # e.g. faces: the square at its own size, no resampling
            size = (int(square[3] - square[1]), int(square[2] - square[0]))
        source_in = cut(source, square, size)
        squares = driving_squares(open_driving(), crop, driving_crop, names[1])

        def frames():
            return (cut(frame, s, size) for frame, s in zip(open_driving(), squares))
    animate = dict(relative=relative, adapt_scale=adapt_scale, batch_size=batch_size, fit=fit,
                   still_background=still_background)
    if best:
        driving = [tensor_to_frames(pipeline.to_tensor(f, fit))[0] for f in frames()]     # at the model's size
        start = best_frame(source_in, driving)
        forward, backward = around_best(driving, start)
        results = join_around_best(pipeline.animate_stream(source_in, forward, **animate),
                                   pipeline.animate_stream(source_in, backward, **animate))
    else:
        results = pipeline.animate_stream(source_in, frames(), **animate)
    if crop == "none":
        yield from results
        return
    background = source.astype(np.float32) / 255 if source.dtype == np.uint8 else source.astype(np.float32)
    x0, y0, x1, y1 = (int(v) for v in square)
    weight = feather((y1 - y0, x1 - x0))      # the same square for every frame
    for frame in results:
        yield paste(background, frame, square, weight)


# ------------------------------------------------------------------------------------------------ best frame

def normalised_landmarks(points: np.ndarray) -> np.ndarray:
    """Landmarks centred and scaled to unit RMS radius: comparable across face positions and sizes."""
    centred = points - points.mean(0)
    return centred / np.sqrt((centred ** 2).sum(1).mean())


def best_frame(source: np.ndarray, frames: Iterable[np.ndarray]) -> int:
    """The index of the driving frame whose normalised face-mesh landmarks are closest to the source's
    (the official demo's --find_best_frame, with mediapipe's face mesh)."""
    from marionet.landmarks import FaceMesh

    mesh = FaceMesh(video=False)
    reference = mesh(source)
    if reference is None:
        raise MarionetError("the source: no face found for --best-frame")
    reference = normalised_landmarks(reference)
    best, best_distance = 0, np.inf
    tracker = FaceMesh(video=True)
    for i, frame in enumerate(frames):
        points = tracker(frame)
        if points is not None:
            distance = float(((normalised_landmarks(points) - reference) ** 2).sum())
            if distance < best_distance:
                best, best_distance = i, distance
    return best


def around_best(frames: list, best: int) -> tuple[list, list]:
    """(forward, backward): the clip from ``best`` to the end, and from ``best`` back to the start; each
    starts at the best frame, so relative motion is measured from it in both directions."""
    return frames[best:], frames[best::-1]


def join_around_best(forward: Iterator, backward: Iterator) -> list:
    """The frames in the driving video's order: the backward pass reversed (its first frame, the best
    one, last), then the forward pass without its first (the same best frame)."""
    before = list(backward)[::-1]
    after = list(forward)[1:]
    return before + after
