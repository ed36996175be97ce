"""Landmark-driven warping with no trained weights: the ``faces`` and ``bodies`` families.

- Keypoints come from mediapipe's offline detectors (``marionet.landmarks``): the face mesh's 468
  points (``faces``) or the pose's 33 points with a visibility each (``bodies``).
- Motion is transferred as in FOMM, but in a frame normalised for the head's (the torso's) position,
  scale and roll, so that the driver's face shape does not leak into the source's. Faces: the
  driver's motion splits into a similarity of the rigid points (forehead, temples, nose bridge, eye
  corners) and the rest, the expression, which is carried into the source's head frame. Bodies: the
  torso follows the spine's similarity and each bone turns as the driver's, at the source's lengths.
- Dense motion from the sparse points: piecewise-affine on their Delaunay triangulation inside the
  point cloud; outside it a thin-plate spline through the cloud's outline and the identity at the
  image borders, so hair, neck and shoulders follow and the motion falls off smoothly; a band
  blends the two. With ``still_background`` the motion applies only where mediapipe's person
  segmentation of the source, or its warped copy, shows the person.
- The source's own pixels are sampled at its own resolution (``native_resolution``).

Nothing is learned: the networks hold no weights and checkpoints carry only the config.

Keypoints: {"value": (B, K, 2) (x, y) in [-1, 1], NaN for a frame where nothing was found; "size":
(B, 2) the frame's (width, height) in pixels, which the normalised frame needs (the frames of
source and driver differ in size and aspect); bodies also "visibility": (B, K) in [0, 1]}.
Inside, points are in pixels with pixel i's centre at i.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from marionet.config import check_values, construct
from marionet.errors import ConfigError, MarionetError
from marionet.geometry import fit_similarity, make_coordinate_grid, thin_plate_spline
from marionet.models.family import ModelFamily

# mediapipe face-mesh points that move with the skull, not the expression: the upper face oval
# (forehead to cheekbones), the nose bridge and the eye corners
FACE_RIGID = (10, 338, 297, 332, 284, 251, 389, 356, 454, 234, 127, 162, 21, 54, 103, 67, 109,
              168, 6, 197, 195, 5, 33, 133, 362, 263)
# bones (parent, child), each parent placed before its children, outward from shoulders and hips
POSE_BONES = ((11, 13), (13, 15), (15, 17), (15, 19), (15, 21), (12, 14), (14, 16), (16, 18), (16, 20), (16, 22),
              (23, 25), (25, 27), (27, 29), (27, 31), (24, 26), (26, 28), (28, 30), (28, 32))
# pieces that carry a grid of points, as fractions (along, across) of a bone from one point to another:
# the limbs across their width, and the head (right ear to left ear) up to the hair and down to the chin
LIMB_GRID = tuple((u, v) for u in (0.25, 0.5, 0.75) for v in (-0.2, 0.0, 0.2))
POSE_PIECES = tuple(((i, j), LIMB_GRID) for i, j in ((11, 13), (13, 15), (12, 14), (14, 16), (23, 25), (25, 27),
                                                     (24, 26), (26, 28))) \
    + (((8, 7), tuple((u, v) for u in (-0.1, 0.5, 1.1) for v in (-1.1, -0.6, 0.7))),)
FALL_OFF_GRID = 64                                                     # points a side of the spline's grid
VISIBLE = 0.5                                                          # pose points used above this visibility

_VALUES = {"warp_params.grid": "count", "warp_params.band": "fraction", "warp_params.border_points": "count0",
           "warp_params.regularization": "positive", "transfer_params.expression": "fraction"}


def to_pixels(value: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """(..., K, 2) in [-1, 1] and (..., 2) (width, height) -> pixel-centre coordinates."""
    return (value + 1) / 2 * (size[..., None, :] - 1)


def to_normalised(pixels: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    return 2 * pixels / (size[..., None, :] - 1) - 1


def similarity(source: torch.Tensor, target: torch.Tensor, weights: torch.Tensor):
    """``geometry.fit_similarity`` for points given as complex numbers (..., N)."""
    return fit_similarity(torch.view_as_real(source), torch.view_as_real(target), weights)


# ------------------------------------------------------------------------------------------------
# Keypoint detector
# ------------------------------------------------------------------------------------------------

class LandmarkDetector(nn.Module):
    """frames (B, 3, H, W) in [0, 1] -> {"value": (B, K, 2), "size": (B, 2)[, "visibility": (B, K)]}, NaN
    values for a frame without a face (person). mediapipe is started on first use, in still-image mode:
    every frame is found afresh, so the same image gives the same points (its video mode tracks from
    the last frame, and moves a pose's points by several pixels between two identical frames)."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind                      # "face" | "pose"
        self._detector = None

    def forward(self, frames: torch.Tensor) -> dict:
        from marionet.landmarks import FaceMesh, PoseLandmarks

        if self._detector is None:
            self._detector = FaceMesh() if self.kind == "face" else PoseLandmarks()
        b, _, h, w = frames.shape
        images = (frames.float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        k = FaceMesh.POINTS if self.kind == "face" else PoseLandmarks.POINTS
        points, visibility = np.full((b, k, 2), np.nan, np.float32), np.zeros((b, k), np.float32)
        for i, image in enumerate(images):
            found = self._detector(image)
            if found is not None and self.kind == "pose":
                found, visibility[i] = found
            if found is not None:
                points[i] = found - 0.5                               # corner-based -> pixel centres
        size = torch.tensor([w, h], dtype=torch.float32).expand(b, 2)
        kp = {"value": to_normalised(torch.from_numpy(points), size).to(frames.device), "size": size.to(frames.device)}
        if self.kind == "pose":
            kp["visibility"] = torch.from_numpy(visibility).to(frames.device)
        return kp


# ------------------------------------------------------------------------------------------------
# Dense motion and warp
# ------------------------------------------------------------------------------------------------

class LandmarkWarp(nn.Module):
    """Warps the source so that control points ``source_points`` land on ``target_points``.

    grid: the dense motion is computed on at most grid x grid points spanning the image, then
        upsampled (bilinear) to full resolution for sampling the source;
    band: the depth, as a fraction of the point cloud's size (square root of its hull's area), over
        which piecewise-affine motion inside the cloud blends into the fall-off outside it; border
        anchors nearer the cloud than that are dropped;
    border_points: identity anchors per image side;
    regularization: the fall-off spline's smoothing (in units of the image's longer side);
    still_background: the motion applies only where the source or the result shows the person (the
        family's person mask of the source); elsewhere the background keeps still. Without it the
        whole image follows the fall-off."""

    def __init__(self, grid: int = 256, band: float = 0.1, border_points: int = 8, regularization: float = 1e-3,
                 still_background: bool = True):
        super().__init__()
        self.grid, self.band, self.border_points, self.regularization = grid, band, border_points, regularization
        if not isinstance(still_background, bool):
            raise ConfigError("model_params.warp_params.still_background: must be true or false, "
                              f"got {still_background!r}")
        self.still_background = still_background

    def forward(self, source: torch.Tensor, source_points: torch.Tensor, target_points: torch.Tensor,
                person: torch.Tensor | None = None) -> dict:
        """source (1, 3, H, W); source_points (N, 2), target_points (B, N, 2) in pixels (a NaN target: no
        motion); person (1, 1, H, W) in [0, 1] or None -> {"prediction": (B, 3, H, W), "deformation":
        (B, H, W, 2) where each pixel is sampled from, in [-1, 1]}."""
        h, w = source.shape[2:]
        src = source_points.detach().double().cpu().numpy()
        fields = [self.displacement(src, t, h, w) for t in target_points.detach().double().cpu().numpy()]
        field = torch.from_numpy(np.stack(fields)).to(source.device, source.dtype)      # (B, 2, gh, gw) pixels
        field = F.interpolate(field, size=(h, w), mode="bilinear", align_corners=True)   # (B, 2, H, W)
        half = torch.tensor([(w - 1) / 2, (h - 1) / 2], dtype=source.dtype, device=source.device)
        identity = make_coordinate_grid(h, w, source.dtype, source.device)
        deformation = identity + field.permute(0, 2, 3, 1) / half                       # (B, H, W, 2)
        if person is not None and self.still_background:
            # where the person is in the source, or lands in the result (B, 1, H, W), with a soft edge
            moved = F.grid_sample(person.expand(len(field), -1, -1, -1), deformation, align_corners=True)
            extent = (source_points.max(0).values - source_points.min(0).values).prod().sqrt()
            weight = self.soften(torch.maximum(moved, person), float(self.band * extent), FALL_OFF_GRID)
            deformation = identity + weight.permute(0, 2, 3, 1) * (deformation - identity)
        prediction = F.grid_sample(source.expand(len(field), -1, -1, -1), deformation, mode="bilinear",
                                   padding_mode="border", align_corners=True)
        return {"prediction": prediction, "deformation": deformation}

    @staticmethod
    def soften(mask: torch.Tensor, radius: float, points: int) -> torch.Tensor:
        """(B, 1, H, W) -> the mask grown by ``radius`` pixels and blurred over as many outside its edge,
        worked out on a grid of at most ``points`` a side (a smooth ramp; the edge stays the mask's own)."""
        h, w = mask.shape[2:]
        scale = min(1.0, points / max(h, w))
        size = (max(2, round(h * scale)), max(2, round(w * scale)))
        k = 2 * int(round(radius * (size[1] - 1) / max(w - 1, 1))) + 1
        if k <= 1:
            return mask
        small = F.interpolate(mask, size=size, mode="bilinear", align_corners=True)
        small = F.avg_pool2d(F.max_pool2d(small, k, 1, k // 2), k, 1, k // 2, count_include_pad=False)
        return torch.maximum(mask, F.interpolate(small, size=(h, w), mode="bilinear", align_corners=True))

    def grid_points(self, h: int, w: int, points: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """x (gw,) and y (gh,) pixel coordinates of the working grid (at most ``points`` a side, default
        ``grid``), corner to corner."""
        scale = min(1.0, (points or self.grid) / max(h, w))
        return (np.linspace(0, w - 1, max(2, round(w * scale))), np.linspace(0, h - 1, max(2, round(h * scale))))

    def displacement(self, src: np.ndarray, dst: np.ndarray, h: int, w: int) -> np.ndarray:
        """Backward motion on the working grid: output pixel q shows source pixel q + d(q).
        src, dst (N, 2) pixels -> d (2, gh, gw) in pixels."""
        from scipy.spatial import Delaunay, QhullError

        xs, ys = self.grid_points(h, w)
        grid = np.stack(np.meshgrid(xs, ys), -1)                                         # (gh, gw, 2)
        if not np.isfinite(dst).all():
            return np.zeros((2, len(ys), len(xs)))
        try:
            triangles = Delaunay(dst)
            corners = dst[triangles.simplices]                                           # (T, 3, 2)
            e1, e2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
            area = np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]).sum() / 2           # the hull's
        except QhullError:                                                               # fewer than 3 distinct points
            triangles, area = None, 0.0
        margin = self.band * max(np.sqrt(area), 1.0)
        outline_src, outline_dst = self.outline(triangles, src, dst, margin)
        # the fall-off is smooth: computed on a coarser grid
        coarse = np.stack(np.meshgrid(*self.grid_points(h, w, FALL_OFF_GRID)), -1)
        d = torch.from_numpy(self.fall_off(outline_src, outline_dst, coarse, margin, h, w)).permute(2, 0, 1)
        d = F.interpolate(d[None], size=grid.shape[:2], mode="bilinear", align_corners=True)[0]
        d = d.permute(1, 2, 0).numpy()                                                   # (gh, gw, 2)
        if triangles is not None:
            d = self.blend_inside(d, triangles, src, dst, grid, xs, ys, margin)
        return d.transpose(2, 0, 1)

    @staticmethod
    def outline(triangles, src, dst, spacing: float) -> tuple[np.ndarray, np.ndarray]:
        """The hull of ``dst`` with points every ``spacing`` pixels along its edges, where the
        piecewise-affine motion is linear, so that the fall-off meets it along the whole edge."""
        if triangles is None:
            return src, dst
        edges = triangles.convex_hull                                                    # (E, 2) point indices
        steps = np.ceil(np.linalg.norm(dst[edges[:, 1]] - dst[edges[:, 0]], axis=1) / spacing).astype(int)
        i, j = np.repeat(edges[:, 0], steps.clip(1) - 1), np.repeat(edges[:, 1], steps.clip(1) - 1)
        t = np.concatenate([np.arange(1, n) / n for n in steps.clip(1)])[:, None]       # inside each edge
        corners = np.unique(edges)
        return (np.concatenate([src[corners], src[i] + t * (src[j] - src[i])]),
                np.concatenate([dst[corners], dst[i] + t * (dst[j] - dst[i])]))

    def fall_off(self, src, dst, grid, margin, h, w) -> np.ndarray:
        """Thin-plate spline through the outline's motion and zero motion at the image borders."""
        unit = max(h, w) - 1
        side = np.linspace(0, 1, self.border_points + 1)[:-1] if self.border_points else np.zeros(0)
        corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)
        anchors = np.concatenate([c0 + side[:, None] * (c1 - c0) for c0, c1 in zip(corners, np.roll(corners, -1, 0))])
        near = np.linalg.norm(anchors[:, None] - dst[None], axis=-1).min(1) < margin
        anchors = anchors[~near]
        control = torch.from_numpy(np.concatenate([dst, anchors]) / unit)
        values = torch.from_numpy(np.concatenate([src - dst, np.zeros_like(anchors)]) / unit)
        d = thin_plate_spline(control, values, torch.from_numpy(grid.reshape(-1, 2) / unit), self.regularization)
        return d.numpy().reshape(grid.shape) * unit

    def blend_inside(self, d, triangles, src, dst, grid, xs, ys, margin) -> np.ndarray:
        """Piecewise-affine motion inside the triangulation, ramping in from the fall-off ``d`` over ``margin``."""
        (x0, y0), (x1, y1) = dst.min(0), dst.max(0)
        cols = slice(np.searchsorted(xs, x0), np.searchsorted(xs, x1, side="right"))
        rows = slice(np.searchsorted(ys, y0), np.searchsorted(ys, y1, side="right"))
        box = grid[rows, cols]                                                           # the cloud's bounding box
        simplex = triangles.find_simplex(box.reshape(-1, 2)).reshape(box.shape[:2])
        found = simplex >= 0
        affine = triangles.transform[simplex[found]]                                     # (n, 3, 2)
        bary = np.einsum("nij,nj->ni", affine[:, :2], box[found] - affine[:, 2])
        bary = np.concatenate([bary, 1 - bary.sum(1, keepdims=True)], 1)                 # (n, 3)
        inner, inside = d.copy(), np.zeros(grid.shape[:2])
        inner[rows, cols][found] = (bary[..., None] * src[triangles.simplices[simplex[found]]]).sum(1) - box[found]
        inside[rows, cols][found] = 1
        # ramp: 0 at the outline, 1 at a depth of ``margin`` (a box filter of twice that width, doubled, less 1)
        step = xs[1] - xs[0] if len(xs) > 1 else 1.0
        k = 2 * int(round(margin / step)) + 1
        ramp = F.avg_pool2d(torch.from_numpy(inside)[None, None], k, stride=1, padding=k // 2,
                            count_include_pad=True)[0, 0].numpy()
        ramp = np.clip(2 * ramp - 1, 0, 1) * inside
        return d + ramp[..., None] * (inner - d)


# ------------------------------------------------------------------------------------------------
# Families
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FaceTransfer:
    """``model_params.transfer_params`` of ``faces``. expression: the share of the driver's non-rigid
    motion (expressions, and the foreshortening of head turns, which a 2-D warp can only imitate)
    that reaches the source in relative mode: 1 carries all of it, as FOMM's relative motion; less
    keeps more of the source's identity (with 1, the astronaut driven by carphone is nearer the
    driver than herself by dlib's face descriptors on 9 of 117 frames, mostly strong head turns)."""
    expression: float = 0.7


class LandmarkFamily(ModelFamily):
    """Shared by ``faces`` and ``bodies``: what differs is the detector and how motion is transferred."""

    native_resolution = True
    detector_kind: ClassVar[str]          # "face" | "pose": LandmarkDetector's kind
    detector_name: ClassVar[str]          # in messages
    subject: ClassVar[str]                # "face" | "person", in messages
    sections: ClassVar[tuple[str, ...]] = ("warp_params",)               # of model_params

    @classmethod
    def from_config(cls, config: dict, with_discriminator: bool = True) -> "LandmarkFamily":
        check_values(config["model_params"], _VALUES)
        return cls(config["model_params"], with_discriminator=with_discriminator)

    def __init__(self, model_params: dict, with_discriminator: bool = True):
        super().__init__()
        unknown = sorted(set(model_params) - set(self.sections))
        if unknown:
            raise MarionetError(f"model_params: unknown key {unknown[0]!r} (the {self.family} model reads "
                                f"{', '.join(self.sections)})")
        self.kp_detector = LandmarkDetector(self.detector_kind)
        self.generator = construct(LandmarkWarp, model_params.get("warp_params"), "warp_params")
        self.discriminator = None
        self._held = None                 # (first driving frame's keypoints, the last driving frame found)
        self._segmenter = None            # mediapipe, started on first use

    # ------------------------------------------------------------------------------ motion transfer

    def transfer_keypoints(self, kp_source: dict, kp_driving: dict, kp_initial: dict, relative: bool = True,
                           scale: float = 1.0) -> dict:
        """The source's keypoints in each driving frame, in [-1, 1] of the source frame. Absolute: the
        driving points as they are. Relative: the driver's motion since ``kp_initial``, taken in a frame
        normalised for the head's (torso's) position, scale and roll (``relative_motion``); that
        normalisation replaces ``scale`` (adapt_scale). Checks that source and first frame have points;
        a later frame without them keeps the last found (``hold_missing``)."""
        self.require_found(kp_source, "the source image")
        self.require_found(kp_initial, "the first driving frame")
        kp_driving = self.hold_missing(kp_driving, kp_initial)
        size = kp_source["size"][:1].expand(len(kp_driving["value"]), 2)
        out = {"value": kp_driving["value"], "size": size}
        for key in set(kp_source) - {"value", "size"}:
            out[key] = kp_source[key][:1].expand_as(kp_driving[key])
        if not relative:
            return out
        points = lambda kp: torch.view_as_complex(to_pixels(kp["value"], kp["size"]).double().contiguous())
        moved = self.relative_motion(points(kp_source)[:1], points(kp_initial)[:1], points(kp_driving),
                                     kp_source, kp_initial, kp_driving)
        out["value"] = to_normalised(torch.view_as_real(moved).to(kp_driving["value"].dtype), size)
        return out

    def head_motion(self, source, initial, driving, kp_source, kp_initial, kp_driving):
        """Points as complex numbers x + iy. -> (a, b): the driver's head (torso) similarity z -> a z + b
        since its first frame, (B, 1) each; (n, m): the similarity from the driver's first frame to the
        source, (1, 1) each."""
        raise NotImplementedError

    def relative_motion(self, source, initial, driving, kp_source, kp_initial, kp_driving) -> torch.Tensor:
        """source, initial (1, K), driving (B, K) complex -> (B, K): the source's points in each frame."""
        raise NotImplementedError

    def require_found(self, kp: dict, what: str) -> None:
        if torch.isnan(kp["value"]).any():
            raise MarionetError(f"no {self.subject} found in {what}: the {self.family} model needs one that "
                                f"mediapipe's {self.detector_name} detects")

    def hold_missing(self, kp_driving: dict, kp_initial: dict) -> dict:
        """A driving frame where nothing was found keeps the keypoints of the last frame that had them
        (across the batches of one animation: they share ``kp_initial``)."""
        missing = torch.isnan(kp_driving["value"]).flatten(1).any(1)
        held = self._held[1] if self._held is not None and self._held[0] is kp_initial["value"] else None
        last = held or {k: v[:1] for k, v in kp_initial.items()}
        out = {k: v.clone() for k, v in kp_driving.items()}
        for i in range(len(missing)):
            if missing[i]:
                for k in out:
                    out[k][i] = last[k][0]
            else:
                last = {k: v[i:i + 1] for k, v in out.items()}
        self._held = (kp_initial["value"], last)
        return out

    # ------------------------------------------------------------------------------ generation

    def control_points(self, kp: dict, size: torch.Tensor, used: torch.Tensor) -> torch.Tensor:
        """(B, K, 2) keypoints -> (B, N, 2) the warp's control points in pixels (``used`` (K,) bool)."""
        return to_pixels(kp["value"], size)[:, used]

    def used_points(self, kp_source: dict) -> torch.Tensor:
        return torch.ones(kp_source["value"].shape[1], dtype=torch.bool)

    def encode_source(self, source: torch.Tensor) -> torch.Tensor | None:
        """The source's person mask (1, 1, H, W) when the background keeps still, else None."""
        if not self.generator.still_background:
            return None
        from marionet.landmarks import PersonMask

        if self._segmenter is None:
            self._segmenter = PersonMask()
        image = source[0].float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
        return torch.from_numpy(self._segmenter(image))[None, None].to(source.device, source.dtype)

    def generate(self, source, kp_source, kp_driving, source_features=None, background=None) -> dict:
        """Keypoints (raw detections of the driving frames, or ``transfer_keypoints``'s) in [-1, 1] of the
        source frame -> the warped source. A frame without keypoints shows the source unchanged.
        ``source_features``: ``encode_source``'s person mask, or None (the whole image follows)."""
        self.require_found(kp_source, "the source image")
        h, w = source.shape[2:]
        size = torch.tensor([w, h], dtype=torch.float32)
        used = self.used_points(kp_source)
        src = self.control_points({k: v[:1] for k, v in kp_source.items()}, size[None], used)[0]
        dst = self.control_points(kp_driving, size.expand(len(kp_driving["value"]), 2), used)
        return self.generator(source[:1], src, dst, source_features)

    def objective(self, train_params):
        raise MarionetError(f"the {self.family} model has no weights to train (it warps by landmarks); use it "
                            f"with --model {self.family}")


class Faces(LandmarkFamily):
    """Faces: mediapipe's 468 face-mesh points; the head's similarity from the rigid upper face."""

    family = "faces"
    keypoint_fields = ("value", "size")
    detector_kind, detector_name, subject = "face", "face mesh", "face"
    sections = ("warp_params", "transfer_params")

    def __init__(self, model_params: dict, with_discriminator: bool = True):
        super().__init__(model_params, with_discriminator)
        self.transfer = construct(FaceTransfer, model_params.get("transfer_params"), "transfer_params")

    def head_motion(self, source, initial, driving, kp_source, kp_initial, kp_driving):
        """Fitted to the rigid points (upper face oval, nose bridge, eye corners)."""
        weights = torch.zeros(source.shape[-1], dtype=torch.float64)
        weights[list(FACE_RIGID)] = 1
        a, b = similarity(initial.expand_as(driving), driving, weights)
        n, m = similarity(initial, source, weights)
        return a[:, None], b[:, None], n[:, None], m[:, None]

    def relative_motion(self, source, initial, driving, kp_source, kp_initial, kp_driving) -> torch.Tensor:
        """The driver's expression is its points in its first frame's head pose, less their first
        positions; turned and scaled into the source's head frame (n), a share of it moves the source's
        points, which then follow the driver's head similarity carried into the source's frame,
        a z + n b + m (1 - a)."""
        a, b, n, m = self.head_motion(source, initial, driving, kp_source, kp_initial, kp_driving)
        expression = ((driving - b) / a - initial) * self.transfer.expression
        return a * (source + n * expression) + n * b + m * (1 - a)


class Bodies(LandmarkFamily):
    """Bodies: mediapipe's 33 pose points with their visibility. The torso's similarity from its spine;
    points hidden in the source are left out of the warp, and a bone hidden in a driving frame turns
    with the torso rather than as the pose model guesses; limbs and the head carry grids of points,
    so that each moves as a piece."""

    family = "bodies"
    keypoint_fields = ("value", "size", "visibility")
    detector_kind, detector_name, subject = "pose", "pose", "person"

    def head_motion(self, source, initial, driving, kp_source, kp_initial, kp_driving):
        """The torso's similarity from its spine (mid-hips to mid-shoulders), which keeps its length when
        the person turns sideways, as the shoulders' and hips' widths do not; from the neck to the head's
        centre when the hips are hidden in the source or the first driving frame."""
        hips = bool(torch.minimum(kp_source["visibility"][0, [23, 24]], kp_initial["visibility"][0, [23, 24]]).min()
                    > VISIBLE)

        def axis(z):                            # (..., K) -> origin (the neck) and direction, (...,) each
            neck = z[..., [11, 12]].mean(-1)
            return neck, neck - (z[..., [23, 24]] if hips else z[..., :11]).mean(-1)

        (o0, e0), (o, e), (os, es) = axis(initial), axis(driving), axis(source)
        a, n = e / e0, es / e0
        return a[:, None], (o - a * o0)[:, None], n[:, None], (os - n * o0)[:, None]

    def relative_motion(self, source, initial, driving, kp_source, kp_initial, kp_driving) -> torch.Tensor:
        """Kinematic: the torso, and the head with it, follow the driver's torso similarity (as a face its
        head); each bone outward from the torso turns as the driver's turned since its first frame, at
        the source's own length (scaled with the torso), so the driver's proportions do not leak. A bone
        the pose model is unsure of in the driver turns with the torso instead. The head does not turn
        on its own (the pose's face points are few and unsteady; turning heads is the faces model's)."""
        a, b, n, m = self.head_motion(source, initial, driving, kp_source, kp_initial, kp_driving)
        moved = (a * source + n * b + m * (1 - a)).clone()                              # (B, K)
        zoom, turn = a.abs()[:, 0], (a / a.abs())[:, 0]                                 # (B,)
        sure = ((torch.minimum(kp_driving["visibility"], kp_initial["visibility"]).double() - 0.25) / 0.5).clamp(0, 1)

        def turned(rotation, points):           # rotation (B,) complex, toward the torso's where unsure
            weight = sure[:, points].min(1).values
            rotation = weight * rotation / rotation.abs().clamp_min(1e-12) + (1 - weight) * turn
            return rotation / rotation.abs().clamp_min(1e-12)

        for parent, child in POSE_BONES:
            change = (driving[:, child] - driving[:, parent]) / (initial[:, child] - initial[:, parent])
            moved[:, child] = (moved[:, parent]
                               + zoom * turned(change, [parent, child]) * (source[:, child] - source[:, parent]))
        return moved

    def used_points(self, kp_source: dict) -> torch.Tensor:
        used = kp_source["visibility"][0] > VISIBLE
        if used.sum() < 3:
            raise MarionetError(f"only {int(used.sum())} body landmarks are visible in the source image: the bodies "
                                "model needs at least 3")
        return used

    def control_points(self, kp: dict, size: torch.Tensor, used: torch.Tensor) -> torch.Tensor:
        points = to_pixels(kp["value"], size)                                          # (B, 33, 2)
        extra = []
        for (i, j), fractions in POSE_PIECES:
            if used[i] and used[j]:
                along = points[:, j] - points[:, i]                                    # (B, 2)
                across = torch.stack([-along[:, 1], along[:, 0]], -1)                  # 90 degrees clockwise on screen
                extra += [points[:, i] + u * along + v * across for u, v in fractions]
        return torch.cat([points[:, used]] + [e[:, None] for e in extra], 1)
