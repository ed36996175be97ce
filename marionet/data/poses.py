"""Pose-guided transfer, the data side (after posewarp, Balakrishnan et al., CVPR 2018).

Joints are the 14 MPII joints in the original order (``MPII_JOINTS``), as (14, 2) arrays of (x, y)
**0-based pixel centres** (pixel (row i, column j) has its centre at x = j, y = i; NaN = unknown).
Two other conventions meet this one at the edges, and are converted there:
- the original ``.mat`` info files store MATLAB's 1-based pixels (``read_info`` subtracts 1);
- the puppets' ground truth, JSON joints files and mediapipe measure from the image's top-left
  corner (pixel centre at j + 0.5): ``joints - 0.5``.

What one training pair goes through (``prepare_pair``), in the original's order and conventions:
person-scale normalisation and centring (``center_and_scale``), the paired augmentations (flip
with a left/right swap, scale about the top-left origin, integer shift, rotation about the centre,
"saturation"), then the network's inputs: Gaussian pose maps at reduced resolution
(``joint_heatmaps``), oriented Gaussian limb masks and their log prior (``limb_masks``,
``mask_prior``), and per-limb similarity transforms from the target to the source
(``limb_transforms``). Images are HxWx3 (uint8 for the raw frames, float in [-1, 1] after
centring); their channel order passes through unchanged. Everything is float64 numpy, like the
original; the resampling is exact bilinear where the original used OpenCV's fixed-point version.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from marionet.errors import MarionetError

MPII_JOINTS = ("head", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
               "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle")
FLIP_SWAP = ((2, 5), (3, 6), (4, 7), (8, 11), (9, 12), (10, 13))   # right <-> left slots


@dataclass(frozen=True)
class JointSet:
    """The joints a model sees (pose-map channels, in this order) and its limbs (MPII indices; a
    4-joint limb is the torso: shoulder midpoint to hip midpoint)."""
    name: str
    joints: tuple[int, ...]
    limbs: tuple[tuple[int, ...], ...]


JOINT_SETS = {
    "full": JointSet("full", tuple(range(14)),
                     ((0, 1), (2, 3), (3, 4), (5, 6), (6, 7), (8, 9), (9, 10), (11, 12), (12, 13), (2, 5, 8, 11))),
    "upper": JointSet("upper", tuple(range(8)), ((0, 1), (2, 3), (3, 4), (5, 6), (6, 7))),
}

# puppets' humanoid joints -> MPII slots ('r_' joints, on the image's right, to MPII's right slots; no pelvis)
PUPPET_TO_MPII = {"head": 0, "neck": 1, "r_shoulder": 2, "r_elbow": 3, "r_wrist": 4, "l_shoulder": 5,
                  "l_elbow": 6, "l_wrist": 7, "r_hip": 8, "r_knee": 9, "r_ankle": 10, "l_hip": 11,
                  "l_knee": 12, "l_ankle": 13}
# mediapipe's 33 pose landmarks (the person's own left/right, as MPII's) -> MPII slots; head and
# neck have no landmark: the ears' and the shoulders' midpoints stand in for them
MEDIAPIPE_TO_MPII = {2: 12, 3: 14, 4: 16, 5: 11, 6: 13, 7: 15, 8: 24, 9: 26, 10: 28, 11: 23, 12: 25, 13: 27}
MEDIAPIPE_MIDPOINTS = {0: (7, 8), 1: (11, 12)}


@dataclass(frozen=True)
class Augmentation:
    """Ranges of the paired augmentations (the original's param.py values, for 256x256 frames)."""
    flip: bool = True                                  # with probability 1/2
    scale: tuple[float, ...] = (0.90, 1.05)
    shift: float = 10                                  # int(shift * (u - 0.5)) pixels, each axis
    rotate: float = 5                                  # degrees, uniform in +-rotate
    saturation: float = 0.05                           # all channels times U(1 - s, 1 + s)


@dataclass(frozen=True)
class PoseParams:
    """``pose_params`` of a posewarp config: how joints become the network's inputs. Lengths are in
    pixels of the model's frame; the defaults are the original's (256x256 frames)."""
    joint_set: str = "full"                            # full (14 joints, 10 limbs) | upper (8 joints, 5 limbs)
    normalize: bool = True                             # person-scale normalisation and centring of each pair
    obj_scale_factor: float = 1.14                     # person scale after normalisation (x 200 px)
    sigma_joint: float = 1.75                          # pose-map Gaussians, in pose-map pixels
    posemap_downsample: int = 2
    limb_width: float = 11                             # limb masks' standard deviation across a limb
    torso_width: float = 13
    min_gap: float = 0.02                              # pair frames more than this fraction of the video apart
    augment: Augmentation | None = field(default_factory=Augmentation)

    def validate(self, where: str) -> None:
        if self.joint_set not in JOINT_SETS:
            raise MarionetError(f"{where}.joint_set: {self.joint_set!r} is not one of {', '.join(JOINT_SETS)}")
        for name in ("obj_scale_factor", "sigma_joint", "limb_width", "torso_width", "posemap_downsample"):
            if not getattr(self, name) > 0:
                raise MarionetError(f"{where}.{name}: must be > 0, got {getattr(self, name)!r}")
        if not 0 <= self.min_gap < 1:
            raise MarionetError(f"{where}.min_gap: must be in [0, 1), got {self.min_gap!r}")
        a = self.augment
        if a is not None and (len(a.scale) != 2 or not 0 < a.scale[0] <= a.scale[1] or a.shift < 0 or a.rotate < 0
                              or not 0 <= a.saturation < 1):
            raise MarionetError(f"{where}.augment: scale must be [low, high] with 0 < low <= high, shift and rotate "
                                ">= 0, saturation in [0, 1)")

    @property
    def joints(self) -> JointSet:
        return JOINT_SETS[self.joint_set]

    def widths(self) -> list[float]:
        return [self.torso_width if len(limb) == 4 else self.limb_width for limb in self.joints.limbs]


# ------------------------------------------------------------------------------------------------
# Person scale, centring
# ------------------------------------------------------------------------------------------------

def person_scale(joints: np.ndarray, joint_set: str = "full") -> float:
    """The original's person size / 200: max(2.5 x (hip y - head y), 5 x calf length) / 200. The
    upper-body set, which has no hips, uses max(10 x head-neck, 4 x shoulder width) / 200 (about a
    standing adult's height, as the full-body measure)."""
    j = np.asarray(joints, np.float64)
    if joint_set == "upper":
        size = max(10.0 * np.linalg.norm(j[0] - j[1]), 4.0 * np.linalg.norm(j[2] - j[5]))
    else:
        upper_body = (j[8, 1] + j[11, 1]) / 2.0 - j[0, 1]
        calf = (np.linalg.norm(j[9] - j[10]) + np.linalg.norm(j[12] - j[13])) / 2.0
        size = max(2.5 * upper_body, 5.0 * calf)
    return float(size / 200.0)


def joints_bbox(joints: np.ndarray) -> np.ndarray:
    """(x, y, w, h) around the known joints (the info files' ``bbox`` for data that has none)."""
    j = np.asarray(joints, np.float64)
    j = j[np.isfinite(j).all(-1)]
    low, high = j.min(0), j.max(0)
    return np.array([low[0], low[1], high[0] - low[0], high[1] - low[1]])


def bbox_center(bbox) -> np.ndarray:
    """The original's ``pos``: (x + w/2, y + h/2), the bbox taken as stored (not shifted by 1)."""
    b = np.asarray(bbox, np.float64)
    return np.array([b[0] + b[2] / 2.0, b[1] + b[3] / 2.0])


def pair_frame(joints_src, joints_tgt, bbox_src, bbox_tgt, image_shape, size, params: PoseParams):
    """(scale, centre) bringing both frames of a pair into the model's frame: the original's
    1.14 / max(person scales) about the mean bbox centre; without ``normalize``, the whole image
    letterboxed (scale size / max(H, W) about the image centre, the identity at the model's size)."""
    if params.normalize:
        scale = params.obj_scale_factor / max(person_scale(joints_src, params.joint_set),
                                              person_scale(joints_tgt, params.joint_set))
        return scale, (bbox_center(bbox_src) + bbox_center(bbox_tgt)) / 2.0
    h, w = image_shape[:2]
    return max(size) / max(h, w), np.array([(w - 1) / 2.0, (h - 1) / 2.0])


def frame_offset(scale: float, center, size) -> np.ndarray:
    """The translation that puts ``center`` (scaled) at the model frame's centre ((W-1)/2, (H-1)/2)."""
    height, width = size
    return np.array([(width - 1.0) / 2.0 - center[0] * scale, (height - 1.0) / 2.0 - center[1] * scale])


# ------------------------------------------------------------------------------------------------
# Resampling (exact bilinear versions of the original's OpenCV calls)
# ------------------------------------------------------------------------------------------------

def _sample(image: np.ndarray, x: np.ndarray, y: np.ndarray, border: float | None) -> np.ndarray:
    """Bilinear samples of HxWxC ``image`` at float pixel positions; outside the image the constant
    ``border`` (OpenCV's BORDER_CONSTANT, blended at the edge), or the edge pixel when None."""
    h, w = image.shape[:2]
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    out = 0.0
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            value = image[np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)].astype(np.float64)
            if border is not None:
                inside = ((xi >= 0) & (xi < w) & (yi >= 0) & (yi < h))[..., None]
                value = np.where(inside, value, border)
            out = out + wx * wy * value
    return out


def resize(image: np.ndarray, scale: float) -> np.ndarray:
    """``cv2.resize(image, (0, 0), fx=scale, fy=scale)``, INTER_LINEAR: round(W x scale) wide,
    samples at (dst + 0.5) / scale - 0.5, edges replicated, no anti-aliasing. uint8 in, uint8 out."""
    h, w = image.shape[:2]
    out_h, out_w = int(np.rint(h * scale)), int(np.rint(w * scale))
    xs = np.clip((np.arange(out_w) + 0.5) / scale - 0.5, 0, w - 1)
    ys = np.clip((np.arange(out_h) + 0.5) / scale - 0.5, 0, h - 1)
    out = _sample(image, xs[None, :].repeat(out_h, 0), ys[:, None].repeat(out_w, 1), None)
    return _like(out, image)


def warp_affine(image: np.ndarray, matrix: np.ndarray, size, border: float = 0.0) -> np.ndarray:
    """``cv2.warpAffine(image, matrix, (W, H))``: out(p) = image(M^-1 p), bilinear, constant border."""
    height, width = size
    inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    y = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    return _like(_sample(image, x, y, border), image)


def _like(values: np.ndarray, image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return np.clip(np.floor(values + 0.5), 0, 255).astype(np.uint8)
    return values


def center_and_scale(image: np.ndarray, joints: np.ndarray, center, scale: float, size):
    """The original's centring: resize by ``scale`` about the origin, then translate ``center`` to
    the frame's centre into a ``size`` (H, W) frame, black outside. Joints: j x scale + offset (no
    half-pixel term, as the original)."""
    offset = frame_offset(scale, center, size)
    scaled = image if scale == 1 else resize(image, scale)
    if scale == 1 and np.all(offset == 0) and image.shape[:2] == tuple(size):
        moved = image.copy()
    else:
        moved = warp_affine(scaled, np.array([[1.0, 0.0, offset[0]], [0.0, 1.0, offset[1]]]), size, 0.0)
    return moved, np.asarray(joints, np.float64) * scale + offset


def rotation_matrix(center, degrees: float) -> np.ndarray:
    """``cv2.getRotationMatrix2D(center, degrees, 1)`` (positive = counter-clockwise on screen)."""
    a, b = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    cx, cy = center
    return np.array([[a, b, (1 - a) * cx - b * cy], [-b, a, b * cx + (1 - a) * cy]])


# ------------------------------------------------------------------------------------------------
# Augmentation
# ------------------------------------------------------------------------------------------------

def random_augmentation(rng: np.random.Generator, augment: Augmentation) -> dict:
    """One draw of the paired augmentation, in the original's order (flip, scale, shift, rotation, saturation)."""
    u = rng.random(6)
    low, high = augment.scale
    return dict(flip=bool(augment.flip and u[0] >= 0.5), scale=low + (high - low) * u[1],
                shift=(int(augment.shift * (u[2] - 0.5)), int(augment.shift * (u[3] - 0.5))),
                rotate_deg=(u[4] - 0.5) * 2 * augment.rotate,
                sat=u[5] * 2 * augment.saturation + 1 - augment.saturation)


def flip_joints(joints: np.ndarray, width: int) -> np.ndarray:
    """x -> W - 1 - x, then the right and left slots swap."""
    j = np.asarray(joints, np.float64).copy()
    j[:, 0] = width - 1 - j[:, 0]
    for r, l in FLIP_SWAP:
        j[[r, l]] = j[[l, r]]
    return j


def augment_frame(image: np.ndarray, joints: np.ndarray, aug: dict, size) -> tuple[np.ndarray, np.ndarray]:
    """The original ``augment``: flip, scale about the top-left origin, integer shift and rotation
    about the centre (grey = 0 fill), "saturation" (x sat, clipped above 1 only). image in [-1, 1]."""
    j = np.asarray(joints, np.float64)
    if aug.get("flip"):
        image, j = image[:, ::-1], flip_joints(j, image.shape[1])
    if aug.get("scale", 1) != 1:
        image, j = resize(image, aug["scale"]), j * aug["scale"]
    sx, sy = aug.get("shift", (0, 0))
    image = warp_affine(image, np.array([[1.0, 0, sx], [0, 1.0, sy]]), size, 0.0)
    j = j + np.array([sx, sy], np.float64)
    h, w = image.shape[:2]
    matrix = rotation_matrix(((w - 1.0) / 2.0, (h - 1.0) / 2.0), aug.get("rotate_deg", 0.0))
    image = warp_affine(image, matrix, size, 0.0)
    j = j @ matrix[:, :2].T + matrix[:, 2]
    image = image * aug.get("sat", 1.0)
    return np.minimum(image, 1.0), j


# ------------------------------------------------------------------------------------------------
# Network inputs
# ------------------------------------------------------------------------------------------------

def _gaussian(width: int, height: int, center, var_along: float, var_across: float, direction) -> np.ndarray:
    """exp(-(a^2 / var_along + c^2 / var_across) / 2) on the integer grid; a along ``direction``."""
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float64) - center[0],
                         np.arange(height, dtype=np.float64) - center[1])
    ux, uy = direction
    along, across = xs * ux + ys * uy, -xs * uy + ys * ux
    return np.exp(-0.5 * (along ** 2 / var_along + across ** 2 / var_across))


def joint_heatmaps(joints: np.ndarray, size, downsample: int = 2, sigma: float = 1.75,
                   joint_set: str = "full") -> np.ndarray:
    """(J, H/d, W/d) Gaussians exp(-r^2 / 2 sigma^2) at joint / d on the pose map's integer grid
    (pose-map pixel k <-> frame coordinate d k). A joint not strictly inside (0, w-1) x (0, h-1) of
    the pose map, or unknown, gives an all-zero channel."""
    height, width = int(size[0] / downsample), int(size[1] / downsample)
    maps = np.zeros((len(JOINT_SETS[joint_set].joints), height, width))
    for c, k in enumerate(JOINT_SETS[joint_set].joints):
        x, y = np.asarray(joints[k], np.float64) / downsample
        if not (0 < x < width - 1 and 0 < y < height - 1):   # False for NaN too
            continue
        maps[c] = _gaussian(width, height, (x, y), sigma ** 2, sigma ** 2, (1.0, 0.0))
    return maps


def limb_endpoints(joints: np.ndarray, limb) -> tuple[np.ndarray, np.ndarray]:
    j = np.asarray(joints, np.float64)
    if len(limb) == 4:   # torso: shoulder midpoint to hip midpoint
        return (j[limb[0]] + j[limb[1]]) / 2.0, (j[limb[2]] + j[limb[3]]) / 2.0
    return j[limb[0]], j[limb[1]]


def limb_masks(joints: np.ndarray, size, joint_set: str = "full", limb_width: float = 11,
               torso_width: float = 13) -> np.ndarray:
    """(L, H, W) oriented Gaussians, one per limb: centred at the segment's midpoint, variance
    max(5, length^2 / 1.5) along it and width^2 across, each divided by its maximum over the frame
    (+1e-6)."""
    height, width = size
    limbs = JOINT_SETS[joint_set].limbs
    masks = np.zeros((len(limbs), height, width))
    for i, limb in enumerate(limbs):
        p0, p1 = limb_endpoints(joints, limb)
        d = p1 - p0
        length = float(np.hypot(*d))
        # the original's angle atan2(dy, -dx) puts the long axis along the limb; a point limb: x
        direction = d / length if length > 0 else np.array([1.0, 0.0])
        across = torso_width if len(limb) == 4 else limb_width
        mask = _gaussian(width, height, (p0 + p1) / 2.0, max(5.0, length ** 2 / 1.5), across ** 2, direction)
        masks[i] = mask / (mask.max() + 1e-6)
    return masks


def mask_prior(joints: np.ndarray, size, joint_set: str = "full", limb_width: float = 11,
               torso_width: float = 13) -> np.ndarray:
    """(L+1, H, W) log([1 - max over limbs, limbs] + 1e-10): channel 0 the background."""
    masks = limb_masks(joints, size, joint_set, limb_width, torso_width)
    return np.log(np.concatenate([1.0 - masks.max(0, keepdims=True), masks]) + 1e-10)


def limb_transforms(joints_src: np.ndarray, joints_tgt: np.ndarray, joint_set: str = "full") -> np.ndarray:
    """(L+1, 2, 3) least-squares similarities [[a, -b, tx], [b, a, ty]] mapping each limb's **target**
    joints onto its source joints (backward maps: a target-pose pixel p samples the source at M (p, 1));
    slot 0, the background, is the identity. The torso fits its 4 joints."""
    limbs = JOINT_SETS[joint_set].limbs
    out = np.zeros((len(limbs) + 1, 2, 3))
    out[0] = np.eye(2, 3)
    src, tgt = np.asarray(joints_src, np.float64), np.asarray(joints_tgt, np.float64)
    for i, limb in enumerate(limbs, start=1):
        q, p = tgt[list(limb)], src[list(limb)]
        # unknowns (tx, a, ty, b): x' = a x - b y + tx, y' = b x + a y + ty
        rows = [[1.0, x, 0.0, -y] for x, y in q] + [[0.0, y, 1.0, x] for x, y in q]
        solution = np.linalg.lstsq(np.array(rows), np.concatenate([p[:, 0], p[:, 1]]), rcond=None)[0]
        tx, a, ty, b = solution
        out[i] = [[a, -b, tx], [b, a, ty]]
    return out


# ------------------------------------------------------------------------------------------------
# One training pair
# ------------------------------------------------------------------------------------------------

def prepare_pair(frame_src: np.ndarray, frame_tgt: np.ndarray, joints_src, joints_tgt, bbox_src=None, bbox_tgt=None,
                 params: PoseParams = PoseParams(), size=(256, 256), augment: dict | None = None) -> dict:
    """A pair of raw frames (HxWx3 uint8) and their joints (0-based pixel centres) -> the network's
    inputs, as the original's ``warp_example_generator`` makes them:

    {"src_image", "tgt_image": (3, H, W) in [-1, 1]; "pose_src", "pose_tgt": (J, H/d, W/d);
     "mask_prior": (L+1, H, W) of the source; "trans": (L+1, 2, 3) target -> source;
     "joints_src", "joints_tgt": (14, 2) after centring and augmentation}.

    ``augment``: dict(flip, scale, shift, rotate_deg, sat) (``random_augmentation``), or None. A
    missing bbox is the joints' box."""
    bbox_src = joints_bbox(joints_src) if bbox_src is None else bbox_src
    bbox_tgt = joints_bbox(joints_tgt) if bbox_tgt is None else bbox_tgt
    scale, center = pair_frame(joints_src, joints_tgt, bbox_src, bbox_tgt, frame_src.shape, size, params)
    out = {}
    for name, frame, joints in (("src", frame_src, joints_src), ("tgt", frame_tgt, joints_tgt)):
        image, j = center_and_scale(frame, joints, center, scale, size)
        image = (image / 255.0 - 0.5) * 2.0
        if augment is not None:
            image, j = augment_frame(image, j, augment, size)
        out[f"{name}_image"] = np.ascontiguousarray(image.transpose(2, 0, 1))
        out[f"joints_{name}"] = j
        out[f"pose_{name}"] = joint_heatmaps(j, size, params.posemap_downsample, params.sigma_joint, params.joint_set)
    out["mask_prior"] = mask_prior(out["joints_src"], size, params.joint_set, params.limb_width, params.torso_width)
    out["trans"] = limb_transforms(out["joints_src"], out["joints_tgt"], params.joint_set)
    return out


def sample_pair(rng: np.random.Generator, frames: int, min_gap: float = 0.02) -> tuple[int, int]:
    """Two distinct frames more than ``min_gap`` of the video apart (source first), as the original draws them."""
    if frames < 2:
        raise ValueError("a pair needs a video of at least 2 frames")
    while True:
        a, b = rng.choice(frames, 2, replace=False)
        if abs(int(a) - int(b)) / frames > min_gap:
            return int(a), int(b)


# ------------------------------------------------------------------------------------------------
# Info files and joints files
# ------------------------------------------------------------------------------------------------

def read_info(path) -> tuple[np.ndarray, np.ndarray]:
    """An original info file (a struct ``data`` with ``X`` (14, 2, T) in 1-based pixels and ``bbox``
    (T, 4)) -> (joints (T, 14, 2) 0-based, bbox (T, 4))."""
    from marionet.errors import require

    sio = require("scipy.io", "pose")
    path = Path(path)
    if not path.is_file():
        raise MarionetError(f"{path}: no such info file")
    try:
        data = sio.loadmat(str(path))["data"]
        x, bbox = np.asarray(data["X"][0][0], np.float64), np.asarray(data["bbox"][0][0], np.float64)
    except Exception as e:  # noqa: BLE001 -- scipy raises many types for a bad file
        raise MarionetError(f"{path}: not a posewarp info file (a struct 'data' with X and bbox; "
                            f"{str(e).splitlines()[0][:120] if str(e) else type(e).__name__})") from None
    if x.ndim == 2:
        x = x[..., None]   # MATLAB drops a trailing singleton (one frame)
    bbox = bbox.reshape(-1, 4) if bbox.size % 4 == 0 else bbox
    if x.ndim != 3 or x.shape[:2] != (14, 2) or bbox.shape != (x.shape[2], 4):
        raise MarionetError(f"{path}: X must be (14, 2, T) and bbox (T, 4), got {x.shape} and {bbox.shape}")
    return x.transpose(2, 0, 1) - 1.0, bbox


def write_info(path, joints: np.ndarray, bbox: np.ndarray, visibility: np.ndarray | None = None) -> None:
    """Write an original info file atomically: joints (T, 14, 2) 0-based -> X (14, 2, T) 1-based."""
    from marionet.files import atomic_write
    from marionet.errors import require

    sio = require("scipy.io", "pose")
    data = {"X": np.asarray(joints, np.float64).transpose(1, 2, 0) + 1.0, "bbox": np.asarray(bbox, np.float64)}
    if visibility is not None:
        data["visibility"] = np.asarray(visibility, np.float64)

    def write(tmp):
        with open(tmp, "wb") as f:
            sio.savemat(f, {"data": data})

    atomic_write(path, write)


def read_joints_file(path, joint_set: str = "full") -> np.ndarray:
    """A joints file (JSON ``{"joints": [[x, y] | null, ... 14 in MPII order]}``, pixels from the
    image's top-left corner) -> (14, 2) 0-based pixel centres; NaN where null. A joint the set
    needs that is null, or a file of another shape, is a one-line error."""
    import json

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise MarionetError(f"{path}: no such joints file") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise MarionetError(f"{path}: not a JSON joints file ({str(e).splitlines()[0][:120]})") from None
    joints = data.get("joints") if isinstance(data, dict) else None
    if not isinstance(joints, list) or len(joints) != 14:
        raise MarionetError(f"{path}: expected {{\"joints\": [[x, y], ...]}} with 14 joints in MPII order "
                            f"({', '.join(MPII_JOINTS)}), got "
                            f"{len(joints) if isinstance(joints, list) else type(joints).__name__}")
    out = np.full((14, 2), np.nan)
    for k, point in enumerate(joints):
        if point is None:
            continue
        if (not isinstance(point, list) or len(point) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                           for v in point)):
            raise MarionetError(f"{path}: joint {k} ({MPII_JOINTS[k]}) must be [x, y] (two numbers) or null, "
                                f"got {point!r}")
        out[k] = np.array(point, np.float64) - 0.5
    check_joints(out, joint_set, str(path))
    return out


def check_joints(joints: np.ndarray, joint_set: str, where: str) -> None:
    """One-line error naming the first joint the set needs that is unknown."""
    for k in sorted({k for limb in JOINT_SETS[joint_set].limbs for k in limb} | set(JOINT_SETS[joint_set].joints)):
        if not np.isfinite(joints[k]).all():
            raise MarionetError(f"{where}: joint {k} ({MPII_JOINTS[k]}) is missing; the {joint_set}-body model "
                                "needs it")


def joints_to_json(joints: np.ndarray) -> dict:
    """(14, 2) 0-based pixel centres -> the joints-file dict (corner convention, null for NaN)."""
    return {"joints": [None if not np.isfinite(p).all() else [round(float(p[0]) + 0.5, 3), round(float(p[1]) + 0.5, 3)]
                       for p in np.asarray(joints, np.float64)]}


def puppet_joints(gt: dict) -> np.ndarray:
    """A humanoid puppet's ground truth -> (T, 14, 2) MPII joints, 0-based pixel centres."""
    if gt.get("kind") != "humanoid":
        raise MarionetError(f"pose transfer needs humanoid puppets, not {gt.get('kind')!r} ones")
    names = [str(n) for n in gt["joint_names"]]
    order = [names.index(name) for name in sorted(PUPPET_TO_MPII, key=PUPPET_TO_MPII.get)]
    return np.asarray(gt["joints"], np.float64)[:, order] - 0.5


def mediapipe_joints(points: np.ndarray) -> np.ndarray:
    """mediapipe's 33 pose landmarks (pixels from the corner) -> (14, 2) MPII joints, 0-based pixel centres."""
    p = np.asarray(points, np.float64)
    out = np.zeros((14, 2))
    for k, m in MEDIAPIPE_TO_MPII.items():
        out[k] = p[m]
    for k, (a, b) in MEDIAPIPE_MIDPOINTS.items():
        out[k] = (p[a] + p[b]) / 2.0
    return out - 0.5


def mediapipe_visibility(visibility: np.ndarray) -> np.ndarray:
    """mediapipe's 33 visibilities -> (14,) for the MPII joints (a midpoint: the less visible of its two)."""
    v = np.asarray(visibility, np.float64)
    out = np.zeros(14)
    for k, m in MEDIAPIPE_TO_MPII.items():
        out[k] = v[m]
    for k, (a, b) in MEDIAPIPE_MIDPOINTS.items():
        out[k] = min(v[a], v[b])
    return out


def retarget(joints: np.ndarray, reference: np.ndarray, own_reference: np.ndarray, joint_set: str = "full") -> np.ndarray:
    """Another person's joints (T, 14, 2) brought to this person, as the original's normalisation
    brings both to one size: scaled by the ratio of the person scales of the two reference poses
    (this person's ``own_reference``, the other's ``reference``, e.g. both first frames) about the
    other's bbox centre, which lands on this person's."""
    ratio = person_scale(own_reference, joint_set) / person_scale(reference, joint_set)
    center, own_center = bbox_center(joints_bbox(reference)), bbox_center(joints_bbox(own_reference))
    return (np.asarray(joints, np.float64) - center) * ratio + own_center
