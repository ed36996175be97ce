"""Puppet kinds: skeletons, identity sampling (shape + look) and motion sampling.

Conventions
-----------
- Puppets are built in *canonical units*: the image is the unit square, x right, y down.
- ``shape`` (proportions) and ``look`` (colours, textures, background, draw order) make an identity;
  ``angles`` (T, A) and ``global_motion`` (T, 4) make a motion. Pixel joints depend on shape +
  motion only.
- ``global_motion`` columns: tx, ty (fraction of the image), rot (radians, clockwise on screen),
  scale. A canonical point p maps to ``size * (0.5 + t + scale * R(rot) (p - anchor))`` where
  ``anchor`` is the centre of the identity's rest pose.
- "l_"/"r_" joints of humanoid and face are on the image's left/right side (not anatomical).

Determinism: every random draw comes from the ``rng`` handed in, in a fixed order. Changing the
order (or number) of draws, or the order of floating-point operations, changes the rendered bytes
of every existing seed.
"""
from __future__ import annotations

import colorsys
import math

import numpy as np

from .render import (CHECKER, DOTS, GRADIENT, PLAIN, STRIPES, Background, Fill, capsule, ellipse)

TAU = 2.0 * math.pi
_BLOBS = 5  # background pattern past the named ones: render.Background draws soft blobs
_SIDES = (("l", -1.0), ("r", 1.0))  # image-left side is towards -x


# ------------------------------------------------------------------------------ colours, fills
def _from_hsv(hue, saturation, value) -> np.ndarray:
    """RGB from HSV; the hue wraps around, saturation and value are clamped to [0, 1]."""
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, min(max(saturation, 0.0), 1.0),
                                        min(max(value, 0.0), 1.0)))


def _random_color(rng, saturation=(0.3, 0.9), value=(0.3, 0.95)) -> np.ndarray:
    return _from_hsv(rng.uniform(), rng.uniform(*saturation), rng.uniform(*value))


def _related_color(rng, color, amount=0.25) -> np.ndarray:
    """A colour related to ``color`` (lighter/darker, slightly shifted hue)."""
    hue, saturation, value = colorsys.rgb_to_hsv(*color)
    return _from_hsv(hue + rng.uniform(-0.08, 0.08), saturation * rng.uniform(0.6, 1.2),
                     value + rng.choice([-1, 1]) * rng.uniform(0.5, 1.0) * amount)


def _skin_color(rng) -> np.ndarray:
    if rng.uniform() < 0.15:  # cartoon skin
        return _random_color(rng, (0.3, 0.7), (0.5, 0.95))
    return _from_hsv(rng.uniform(0.02, 0.1), rng.uniform(0.25, 0.6), rng.uniform(0.35, 0.97))


def _hair_color(rng, value) -> np.ndarray:
    """Mostly natural hair (red to brown hues, ``value`` range dark to fair), else any colour."""
    if rng.uniform() < 0.8:
        return _from_hsv(rng.uniform(0.0, 0.15), rng.uniform(0.2, 0.8), rng.uniform(*value))
    return _random_color(rng)


def _random_fill(rng, base=None, textures=(PLAIN, STRIPES, DOTS, CHECKER, GRADIENT),
                 weights=None, period=(0.04, 0.12), shade=(0.0, 0.3), outline=0.0,
                 outline_color=None) -> Fill:
    """A textured fill of colour ``base`` (random if None); ``weights`` are the textures' odds."""
    color = _random_color(rng) if base is None else base
    texture = int(rng.choice(textures, p=weights))
    # the second colour and the pattern parameters are drawn even for a plain fill, so that the
    # draws that follow do not depend on the texture
    second = _related_color(rng, color, 0.35) if rng.uniform() < 0.5 else _random_color(rng)
    duty = rng.uniform(0.35, 0.65) if texture != DOTS else rng.uniform(0.4, 0.75)
    return Fill(color, second if texture != PLAIN else None, texture, period=rng.uniform(*period),
                angle=rng.uniform(0, math.pi), duty=duty, phase=rng.uniform(),
                shade=rng.uniform(*shade), outline=outline, outline_color=outline_color)


def _random_outline(rng):
    """(width in units, colour) shared by all parts of an identity; width 0 for no outline."""
    if rng.uniform() < 0.5:
        return 0.0, None
    return rng.uniform(0.006, 0.012), _from_hsv(rng.uniform(), rng.uniform(0, 0.6),
                                                rng.uniform(0, 0.25))


def _random_background(rng) -> Background:
    color1 = _random_color(rng, (0.0, 0.6), (0.2, 0.95))
    color2 = _related_color(rng, color1, 0.3) if rng.uniform() < 0.6 \
        else _random_color(rng, (0.0, 0.6), (0.2, 0.95))
    color3 = _random_color(rng, (0.0, 0.5), (0.1, 0.9))  # the vertical gradient's colour
    pattern = int(rng.choice([PLAIN, STRIPES, DOTS, CHECKER, _BLOBS],
                             p=[0.15, 0.25, 0.2, 0.15, 0.25]))
    pan = (0.0, 0.0)
    if rng.uniform() < 0.5:  # slowly panning (fraction of the image per frame)
        direction = rng.uniform(0, TAU)
        speed = rng.uniform(0.001, 0.005)
        pan = (speed * math.cos(direction), speed * math.sin(direction))
    # blobs: three plane waves (direction cosines, frequency, phase); drawn for every pattern
    waves = [(math.cos(direction), math.sin(direction), 1.0 / rng.uniform(0.15, 0.6), rng.uniform())
             for direction in rng.uniform(0, TAU, 3)]
    return Background(color1, color2, color3, pattern, period=rng.uniform(0.05, 0.25),
                      angle=rng.uniform(0, math.pi), duty=rng.uniform(0.3, 0.7),
                      gradient=rng.uniform(0, 0.8) if rng.uniform() < 0.6 else 0.0, pan=pan,
                      waves=waves)


# ----------------------------------------------------------------------------- trajectories
def _smooth_wave(rng, times, freq_range=(0.15, 0.9), n_sines=3) -> np.ndarray:
    """A smooth signal in [-1, 1]: a weighted sum of sinusoids (weights sum to <= 1)."""
    freqs = rng.uniform(freq_range[0], freq_range[1], n_sines)
    phases = rng.uniform(0, TAU, n_sines)
    weights = rng.uniform(0.2, 1.0, n_sines)
    weights /= weights.sum()
    out = np.zeros_like(times)
    for k in range(n_sines):
        out += weights[k] * np.sin(TAU * freqs[k] * times + phases[k])
    return out


def _angle_trajectory(rng, times, low, high, amplitude=(0.25, 1.0), freq_range=(0.15, 0.9),
                      energy=1.0) -> np.ndarray:
    """A joint-angle trajectory that stays within [low, high]."""
    half_swing = 0.5 * (high - low) * min(1.0, rng.uniform(*amplitude) * energy)
    # centre the swing anywhere that keeps it inside [low, high]
    centre = low + half_swing + rng.uniform() * max(0.0, (high - low) - 2.0 * half_swing)
    return centre + half_swing * _smooth_wave(rng, times, freq_range)


def _swing(rng, low, high, amplitude):
    """(centre, half range) of a swing ``amplitude`` times as wide as [low, high], inside it."""
    half_swing = 0.5 * (high - low) * amplitude
    centre = low + half_swing + rng.uniform() * (high - low - 2.0 * half_swing)
    return centre, half_swing


def sample_global(rng, times, shift=0.08, rotation=0.12, scale=(0.85, 1.05),
                  freq_range=(0.05, 0.4)) -> np.ndarray:
    """Global motion (T, 4): tx, ty, rot, scale, each a random offset plus a slow wobble (the
    vertical drift half the horizontal one)."""
    shift_x = rng.uniform(-shift, shift) * 0.6 + shift * 0.6 * _smooth_wave(rng, times, freq_range)
    shift_y = rng.uniform(-shift, shift) * 0.3 + shift * 0.3 * _smooth_wave(rng, times, freq_range)
    roll = rng.uniform(-rotation, rotation) * 0.5 + \
        rotation * 0.5 * _smooth_wave(rng, times, freq_range)
    zoom = rng.uniform(*scale) * (1.0 + 0.06 * _smooth_wave(rng, times, freq_range))
    return np.stack([shift_x, shift_y, roll, zoom], 1)


# -------------------------------------------------------------------------------- geometry
def _direction_from_down(angle):
    """Unit vector at ``angle`` from straight down, turning towards +x."""
    return np.sin(angle), np.cos(angle)


def _direction_from_right(angle):
    """Unit vector at ``angle`` from +x, turning upwards (towards -y)."""
    return np.cos(angle), -np.sin(angle)


def _rotate(vectors, angles):
    """Rotate (T, 2) vectors by per-frame angles (image coords: clockwise on screen)."""
    cos, sin = np.cos(angles), np.sin(angles)
    return np.stack([cos * vectors[:, 0] - sin * vectors[:, 1],
                     sin * vectors[:, 0] + cos * vectors[:, 1]], -1)


class _PixelTransform:
    """Per-frame similarity transform from canonical units to pixels (see the module docstring).

    ``mirror=-1`` flips the puppet about the anchor's vertical line before the transform (a
    quadruped facing left).
    """

    def __init__(self, global_motion, anchor, size, mirror=1.0):
        self.shift_x, self.shift_y, rotation, self.scale = (global_motion[:, k] for k in range(4))
        self.cos, self.sin = np.cos(rotation), np.sin(rotation)
        self.rotation = rotation
        self.anchor_x, self.anchor_y = anchor
        self.size = float(size)
        self.mirror = float(mirror)
        self.unit = self.size * self.scale  # pixels per canonical unit, (T,)

    def point(self, x, y) -> np.ndarray:
        """Canonical points -> pixels (T, ..., 2); x and y are scalars, (T,) or (T, N) arrays."""
        x = (np.asarray(x, np.float64) - self.anchor_x) * self.mirror
        y = np.asarray(y, np.float64) - self.anchor_y
        x, y = np.broadcast_arrays(x, y)
        per_frame = (-1,) + (1,) * (x.ndim - 1)  # the frame axis first, points broadcast after it
        shift_x, shift_y = self.shift_x.reshape(per_frame), self.shift_y.reshape(per_frame)
        scale = self.scale.reshape(per_frame)
        cos, sin = self.cos.reshape(per_frame), self.sin.reshape(per_frame)
        pixel_x = self.size * (0.5 + shift_x + scale * (cos * x - sin * y))
        pixel_y = self.size * (0.5 + shift_y + scale * (sin * x + cos * y))
        return np.stack([pixel_x, pixel_y], -1)

    def length(self, r) -> np.ndarray:
        """Canonical length(s) -> pixels (T,)."""
        return np.asarray(r, np.float64) * self.unit

    def orientation(self, angle) -> np.ndarray:
        """Canonical orientation (radians, image coords) -> pixel orientation."""
        angle = np.asarray(angle, np.float64)
        if self.mirror < 0:
            angle = math.pi - angle
        return angle + self.rotation


# ------------------------------------------------------------------------------------ kinds
class Kind:
    name: str = ""
    joints: tuple = ()
    parts: tuple = ()
    edges: tuple = ()
    joint_parts: dict = {}
    angles: tuple = ()

    def joint_part_labels(self) -> list[tuple[int, ...]]:
        """For each joint, the labels (1-based part indices) it may legitimately land on."""
        return [tuple(self.parts.index(part) + 1 for part in self.joint_parts[joint])
                for joint in self.joints]

    def sample_shape(self, rng) -> dict:
        raise NotImplementedError

    def sample_look(self, rng) -> dict:
        raise NotImplementedError

    def sample_motion(self, rng, T, fps) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def build(self, shape, look, angles, global_motion, size):
        """-> joints (T, J, 2) pixels, primitives back to front, background."""
        raise NotImplementedError

    def label(self, part: str) -> int:
        return self.parts.index(part) + 1

    def anchor(self, shape):
        """The canonical point that maps to the image centre: the middle of the rest pose."""
        low, high = self._extent(shape)
        return 0.5 * (low + high)

    def _angles_by_name(self, angles):
        return {name: angles[:, i] for i, name in enumerate(self.angles)}

    def _stack_joints(self, points, scale):
        """{joint: (x, y)} in rig units -> (T, J, 2) canonical units, in ``self.joints`` order."""
        return np.stack([np.stack(points[name], -1) for name in self.joints], 1) * scale

    def _posed_joints(self, shape, angles, global_motion, size, mirror=1.0):
        """-> (pixel transform, joints in canonical units, joints (T, J, 2) in pixels,
        {joint name: (T, 2) pixels})."""
        transform = _PixelTransform(global_motion, self.anchor(shape), size, mirror=mirror)
        canonical = self._pose(shape, angles)
        pixels = transform.point(canonical[..., 0], canonical[..., 1])
        by_name = {name: pixels[:, i] for i, name in enumerate(self.joints)}
        return transform, canonical, pixels, by_name


class Humanoid(Kind):
    name = "humanoid"
    joints = ("head", "neck", "pelvis", "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow",
              "r_wrist", "l_hip", "l_knee", "l_ankle", "r_hip", "r_knee", "r_ankle")
    parts = ("head", "hair", "torso", "l_upper_arm", "l_forearm", "r_upper_arm", "r_forearm",
             "l_thigh", "l_shin", "r_thigh", "r_shin")
    edges = ((0, 1), (1, 2), (1, 3), (3, 4), (4, 5), (1, 6), (6, 7), (7, 8), (2, 9), (9, 10),
             (10, 11), (2, 12), (12, 13), (13, 14))
    joint_parts = {
        "head": ("head",), "neck": ("torso", "head"), "pelvis": ("torso", "l_thigh", "r_thigh"),
        "l_shoulder": ("torso", "l_upper_arm"), "l_elbow": ("l_upper_arm", "l_forearm"),
        "l_wrist": ("l_forearm",), "r_shoulder": ("torso", "r_upper_arm"),
        "r_elbow": ("r_upper_arm", "r_forearm"), "r_wrist": ("r_forearm",),
        "l_hip": ("torso", "l_thigh"), "l_knee": ("l_thigh", "l_shin"), "l_ankle": ("l_shin",),
        "r_hip": ("torso", "r_thigh"), "r_knee": ("r_thigh", "r_shin"), "r_ankle": ("r_shin",)}
    angles = ("torso", "head", "l_shoulder", "l_elbow", "r_shoulder", "r_elbow", "l_hip", "l_knee",
              "r_hip", "r_knee")
    # angle limits (radians, from straight down towards +x); left and right mirror each other
    _ranges = {"torso": (-0.25, 0.25), "head": (-0.35, 0.35), "l_shoulder": (-2.7, 0.8),
               "l_elbow": (-2.0, 1.6), "r_shoulder": (-0.8, 2.7), "r_elbow": (-1.6, 2.0),
               "l_hip": (-0.75, 0.3), "l_knee": (-0.15, 1.3), "r_hip": (-0.3, 0.75),
               "r_knee": (-1.3, 0.15)}

    def sample_shape(self, rng):
        """Lengths and radii in rig units; ``size`` scales the rig to canonical units."""
        uniform = rng.uniform
        shape = dict(torso=uniform(0.19, 0.26), shoulder_half_width=uniform(0.055, 0.095),
                     hip_half_width=uniform(0.035, 0.06), torso_r_top=uniform(0.05, 0.085),
                     torso_r_bottom=uniform(0.04, 0.075), neck=uniform(0.015, 0.045),
                     head_r=uniform(0.05, 0.075), head_aspect=uniform(0.95, 1.25),
                     upper_arm=uniform(0.1, 0.15), forearm=uniform(0.095, 0.14),
                     arm_r=uniform(0.022, 0.034), thigh=uniform(0.13, 0.19),
                     shin=uniform(0.12, 0.18), leg_r=uniform(0.026, 0.042), size=1.0)
        # the torso must be wide enough to cover the shoulder and hip joints
        shape["torso_r_top"] = max(shape["torso_r_top"], 0.8 * shape["shoulder_half_width"])
        shape["torso_r_bottom"] = max(shape["torso_r_bottom"], 0.9 * shape["hip_half_width"])
        low, high = self._extent(shape)
        shape["size"] = uniform(0.7, 0.86) / (high[1] - low[1])  # rest pose: 70-86 % of the height
        return shape

    def _rest(self):
        return np.array([[0.0, 0.0, -0.3, -0.3, 0.3, 0.3, -0.2, 0.3, 0.2, -0.3]])

    def _extent(self, shape):
        """Bounding box (low, high corners) of the rest pose, head top and feet included."""
        joints = self._pose(shape, self._rest())[0]
        low, high = joints.min(0), joints.max(0)
        low[1] -= shape["head_r"] * shape["head_aspect"] * shape["size"]
        high[1] += shape["leg_r"] * shape["size"]
        return low, high

    def sample_look(self, rng):
        outline_width, outline_color = _random_outline(rng)
        skin = _skin_color(rng)
        common = dict(outline=outline_width, outline_color=outline_color, shade=(0.0, 0.3))
        shirt = _random_fill(rng, **common)
        trousers = _random_fill(rng, textures=(PLAIN, STRIPES, CHECKER, GRADIENT), **common)
        skin_fill = _random_fill(rng, skin, textures=(PLAIN, GRADIENT), weights=(0.7, 0.3),
                                 period=(0.1, 0.1), **common)
        if skin_fill.texture == GRADIENT:  # a subtle gradient: towards a close skin tone
            skin_fill = skin_fill.with_colors(skin, _related_color(rng, skin, 0.12))
        hair = _random_fill(rng, _hair_color(rng, (0.05, 0.6)), textures=(PLAIN, STRIPES),
                            period=(0.02, 0.04), **common)
        return dict(background=_random_background(rng), skin=skin_fill, shirt=shirt,
                    trousers=trousers, hair=hair, hair_style=int(rng.integers(0, 3)),
                    long_sleeves=rng.uniform() < 0.5, shorts=rng.uniform() < 0.3,
                    back_arm=int(rng.integers(0, 2)), back_leg=int(rng.integers(0, 2)))

    def sample_motion(self, rng, T, fps):
        times = np.arange(T) / fps
        energy = rng.uniform(0.5, 1.3)
        columns = [_angle_trajectory(rng, times, *self._ranges[name], energy=energy,
                                     freq_range=(0.15, 0.9)) for name in self.angles]
        return np.stack(columns, 1), sample_global(rng, times)

    def _pose(self, shape, angles):
        """Canonical joints (T, J, 2) with the pelvis at the origin."""
        angle = self._angles_by_name(angles)
        zero = np.zeros(angles.shape[0])
        points = {"pelvis": (zero, zero)}
        lean = angle["torso"]
        spine_x, spine_y = _direction_from_down(lean + math.pi)  # up along the spine
        neck = (shape["torso"] * spine_x, shape["torso"] * spine_y)
        points["neck"] = neck
        head_x, head_y = _direction_from_down(lean + angle["head"] + math.pi)
        head_distance = shape["neck"] + shape["head_r"] * shape["head_aspect"]
        points["head"] = (neck[0] + head_distance * head_x, neck[1] + head_distance * head_y)
        for side, sign in _SIDES:
            self._pose_arm(shape, angle, side, sign, neck, points)
            self._pose_leg(shape, angle, side, sign, points)
        return self._stack_joints(points, shape["size"])

    def _pose_arm(self, shape, angle, side, sign, neck, points):
        lean = angle["torso"]
        cos_lean, sin_lean = np.cos(lean), np.sin(lean)
        # the shoulder sits beside and a little below the neck, in the leaning torso's frame
        off_x, off_y = sign * shape["shoulder_half_width"], 0.15 * shape["torso_r_top"]
        shoulder_x = neck[0] + cos_lean * off_x + sin_lean * off_y
        shoulder_y = neck[1] - sin_lean * off_x + cos_lean * off_y
        points[f"{side}_shoulder"] = (shoulder_x, shoulder_y)
        # arm angles are relative to the torso, the elbow's relative to the upper arm
        upper_angle = lean + angle[f"{side}_shoulder"]
        upper_x, upper_y = _direction_from_down(upper_angle)
        elbow_x = shoulder_x + shape["upper_arm"] * upper_x
        elbow_y = shoulder_y + shape["upper_arm"] * upper_y
        points[f"{side}_elbow"] = (elbow_x, elbow_y)
        fore_x, fore_y = _direction_from_down(upper_angle + angle[f"{side}_elbow"])
        points[f"{side}_wrist"] = (elbow_x + shape["forearm"] * fore_x,
                                   elbow_y + shape["forearm"] * fore_y)

    def _pose_leg(self, shape, angle, side, sign, points):
        # the pelvis turns with only 30 % of the torso's lean; the hip sits beside and a little
        # above the pelvis joint
        lean = angle["torso"]
        cos_pelvis, sin_pelvis = np.cos(0.3 * lean), np.sin(0.3 * lean)
        off_x, off_y = sign * shape["hip_half_width"], -0.2 * shape["torso_r_bottom"]
        hip_x = cos_pelvis * off_x + sin_pelvis * off_y
        hip_y = -sin_pelvis * off_x + cos_pelvis * off_y
        points[f"{side}_hip"] = (hip_x, hip_y)
        # leg angles are absolute (legs keep standing when the torso leans)
        thigh_angle = angle[f"{side}_hip"]
        thigh_x, thigh_y = _direction_from_down(thigh_angle)
        knee_x, knee_y = hip_x + shape["thigh"] * thigh_x, hip_y + shape["thigh"] * thigh_y
        points[f"{side}_knee"] = (knee_x, knee_y)
        shin_x, shin_y = _direction_from_down(thigh_angle + angle[f"{side}_knee"])
        points[f"{side}_ankle"] = (knee_x + shape["shin"] * shin_x, knee_y + shape["shin"] * shin_y)

    def build(self, shape, look, angles, global_motion, size):
        transform, _, joints, joint = self._posed_joints(shape, angles, global_motion, size)
        scale = shape["size"]
        unit = transform.unit
        label = self.label
        prims = {"torso": capsule(label("torso"), joint["neck"], joint["pelvis"],
                                  transform.length(shape["torso_r_top"] * scale),
                                  transform.length(shape["torso_r_bottom"] * scale), look["shirt"],
                                  unit)}
        prims.update(self._head_and_hair(transform, shape, look, angles, joint))
        arm_r = transform.length(shape["arm_r"] * scale)
        leg_r = transform.length(shape["leg_r"] * scale)
        forearm_fill = look["shirt"] if look["long_sleeves"] else look["skin"]
        shin_fill = look["skin"] if look["shorts"] else look["trousers"]
        # limbs taper: thicker at the shoulder/hip than at the wrist/ankle
        limbs = (("upper_arm", "shoulder", "elbow", arm_r * 1.1, arm_r, look["shirt"]),
                 ("forearm", "elbow", "wrist", arm_r, arm_r * 0.85, forearm_fill),
                 ("thigh", "hip", "knee", leg_r * 1.15, leg_r, look["trousers"]),
                 ("shin", "knee", "ankle", leg_r, leg_r * 0.8, shin_fill))
        for side in "lr":
            for segment, start, end, start_r, end_r, fill in limbs:
                part = f"{side}_{segment}"
                prims[part] = capsule(label(part), joint[f"{side}_{start}"],
                                      joint[f"{side}_{end}"], start_r, end_r, fill, unit)
        # the back arm and both legs (back leg first) behind the torso, the front arm over it
        back_arm, front_arm = ("l", "r") if look["back_arm"] == 0 else ("r", "l")
        back_leg, front_leg = ("l", "r") if look["back_leg"] == 0 else ("r", "l")
        order = ["hair", f"{back_arm}_upper_arm", f"{back_arm}_forearm", f"{back_leg}_shin",
                 f"{back_leg}_thigh", f"{front_leg}_shin", f"{front_leg}_thigh", "torso", "head",
                 f"{front_arm}_upper_arm", f"{front_arm}_forearm"]
        return joints, [prims[part] for part in order if part in prims], look["background"]

    def _head_and_hair(self, transform, shape, look, angles, joint):
        angle = self._angles_by_name(angles)
        # the head's long axis follows the neck: _direction_from_down turns the other way round
        # from a screen orientation, hence the minus
        head_angle = transform.orientation(-(angle["torso"] + angle["head"]))
        head_r, aspect = shape["head_r"] * shape["size"], shape["head_aspect"]
        unit = transform.unit
        prims = {"head": ellipse(self.label("head"), joint["head"], transform.length(head_r),
                                 transform.length(head_r * aspect), head_angle, look["skin"], unit)}
        style = look["hair_style"]  # 0: bald, 1: short (a cap on top), 2: long (hangs lower)
        if style > 0:
            # hair is an ellipse behind the head, shifted up along the head's axis
            up = np.stack([np.sin(head_angle), -np.cos(head_angle)], -1)
            lift = transform.length(head_r * (0.22 if style == 1 else 0.05))[:, None]
            length = head_r * aspect * (0.95 if style == 1 else 1.25)
            prims["hair"] = ellipse(self.label("hair"), joint["head"] + lift * up,
                                    transform.length(head_r * 1.1), transform.length(length),
                                    head_angle, look["hair"], unit)
        return prims


def _leg_joint_names(leg):
    """(top, middle) joint names of a quadruped's leg: front legs shoulder/knee, hind hip/hock."""
    return ("shoulder", "knee") if leg[0] == "f" else ("hip", "hock")


class Quadruped(Kind):
    name = "quadruped"
    joints = ("neck", "rump", "head", "nose", "tail_mid", "tail_tip",
              "fn_shoulder", "fn_knee", "fn_paw", "ff_shoulder", "ff_knee", "ff_paw",
              "hn_hip", "hn_hock", "hn_paw", "hf_hip", "hf_hock", "hf_paw")
    parts = ("body", "neck", "head", "snout", "ear", "tail_base", "tail_tip",
             "fn_upper", "fn_lower", "ff_upper", "ff_lower", "hn_upper", "hn_lower",
             "hf_upper", "hf_lower")
    edges = ((0, 1), (0, 2), (2, 3), (1, 4), (4, 5), (0, 6), (6, 7), (7, 8), (0, 9), (9, 10),
             (10, 11), (1, 12), (12, 13), (13, 14), (1, 15), (15, 16), (16, 17))
    joint_parts = {
        "neck": ("body", "neck"), "rump": ("body", "tail_base"), "head": ("head", "snout"),
        "nose": ("snout",), "tail_mid": ("tail_base", "tail_tip"), "tail_tip": ("tail_tip",)}
    # legs: front/hind x near/far; front legs bend at the knee, hind legs at the hock
    _LEGS = ("fn", "ff", "hn", "hf")
    for _leg in _LEGS:
        _top, _middle = _leg_joint_names(_leg)
        joint_parts[f"{_leg}_{_top}"] = ("body", f"{_leg}_upper")
        joint_parts[f"{_leg}_{_middle}"] = (f"{_leg}_upper", f"{_leg}_lower")
        joint_parts[f"{_leg}_paw"] = (f"{_leg}_lower",)
    del _leg, _top, _middle
    angles = ("body", "neck", "head", "tail_base", "tail_bend", "fn_upper", "fn_lower", "ff_upper",
              "ff_lower", "hn_upper", "hn_lower", "hf_upper", "hf_lower", "facing")
    # phase offsets of the legs (fn, ff, hn, hf) in a stride: trot, walk, gallop
    _GAITS = ((0.0, 0.5, 0.5, 0.0), (0.0, 0.5, 0.75, 0.25), (0.0, 0.1, 0.55, 0.65))

    def sample_shape(self, rng):
        shape = self._raw_shape(rng)
        low, high = self._extent(shape)
        width, height = high - low
        shape["size"] = min(rng.uniform(0.68, 0.84) / width, 0.8 / height)
        return shape

    def _raw_shape(self, rng):
        """Lengths and radii in rig units (``size`` 1); r_front/r_back: the body's radii."""
        uniform = rng.uniform
        return dict(body=uniform(0.26, 0.4), r_front=uniform(0.065, 0.1),
                    r_back=uniform(0.055, 0.095), neck=uniform(0.07, 0.15),
                    neck_r=uniform(0.03, 0.048), head_r=uniform(0.05, 0.075),
                    snout=uniform(0.035, 0.09), snout_r=uniform(0.022, 0.038),
                    ear=uniform(0.03, 0.08), ear_r=uniform(0.014, 0.026), tail=uniform(0.14, 0.3),
                    tail_r=uniform(0.012, 0.026), upper=uniform(0.09, 0.14),
                    lower=uniform(0.08, 0.14), leg_r=uniform(0.02, 0.032), size=1.0)

    def sample_look(self, rng):
        outline_width, outline_color = _random_outline(rng)
        common = dict(outline=outline_width, outline_color=outline_color, shade=(0.0, 0.3))
        coat_color = _random_color(rng, (0.1, 0.8), (0.25, 0.95))
        coat = _random_fill(rng, coat_color, weights=(0.3, 0.25, 0.25, 0.05, 0.15),
                            period=(0.04, 0.1), **common)
        # each of these is the coat, or (draw permitting) a fill of its own
        legs = coat if rng.uniform() < 0.6 else _random_fill(rng, textures=(PLAIN, STRIPES),
                                                             **common)
        head = coat if rng.uniform() < 0.6 else _random_fill(
            rng, _related_color(rng, coat_color, 0.2), textures=(PLAIN, GRADIENT), **common)
        snout = head if rng.uniform() < 0.5 else _random_fill(
            rng, _related_color(rng, coat_color, 0.4), textures=(PLAIN,), **common)
        ear = _random_fill(rng, _related_color(rng, coat_color, 0.3), textures=(PLAIN,), **common)
        tail_tip = coat if rng.uniform() < 0.6 else _random_fill(
            rng, _related_color(rng, coat_color, 0.4), textures=(PLAIN,), **common)
        dark = rng.uniform(0.65, 0.85)  # far legs are darker
        legs_far = legs.with_colors(legs.c1 * dark, legs.c2 * dark)
        return dict(background=_random_background(rng), coat=coat, legs=legs, legs_far=legs_far,
                    head=head, snout=snout, ear=ear, tail_tip=tail_tip)

    def sample_motion(self, rng, T, fps):
        times = np.arange(T) / fps
        stride_freq = rng.uniform(0.5, 1.8)
        gait = self._GAITS[int(rng.integers(0, 3))]
        amplitude = rng.uniform(0.15, 1.0)
        angle = {}
        # the body bobs twice a stride
        angle["body"] = rng.uniform(-0.12, 0.12) + \
            0.06 * amplitude * np.sin(TAU * 2 * stride_freq * times)
        angle["neck"] = _angle_trajectory(rng, times, 0.35, 1.3, freq_range=(0.2, 0.8))
        angle["head"] = _angle_trajectory(rng, times, -1.4, -0.2, freq_range=(0.2, 1.0))
        angle["tail_base"] = _angle_trajectory(rng, times, -0.9, 0.9, freq_range=(0.3, 1.5))
        angle["tail_bend"] = _angle_trajectory(rng, times, -0.8, 0.8, freq_range=(0.5, 2.0))
        # (leg, upper range, lower range): front lower legs fold back, hind ones forward
        legs = (("fn", (-0.55, 0.6), (-1.2, 0.05)), ("ff", (-0.55, 0.6), (-1.2, 0.05)),
                ("hn", (-0.6, 0.55), (-0.05, 1.1)), ("hf", (-0.6, 0.55), (-0.05, 1.1)))
        for (leg, upper, lower), offset in zip(legs, gait):
            phase = TAU * (stride_freq * times + offset + rng.uniform(-0.05, 0.05))
            centre, half_swing = _swing(rng, upper[0], upper[1], amplitude)
            angle[f"{leg}_upper"] = centre + half_swing * (
                0.85 * np.sin(phase) + 0.15 * _smooth_wave(rng, times, (0.2, 1.0)))
            centre, half_swing = _swing(rng, lower[0], lower[1], amplitude)
            # the lower leg lags (front) or leads (hind) the upper leg by a fixed phase
            sign = -1.0 if leg[0] == "f" else 1.0
            angle[f"{leg}_lower"] = centre + half_swing * np.sin(phase + sign * 1.4)
        angle["facing"] = np.full(T, 1.0 if rng.uniform() < 0.5 else -1.0)
        return (np.stack([angle[name] for name in self.angles], 1),
                sample_global(rng, times, shift=0.06, rotation=0.1, scale=(0.85, 1.05)))

    def _pose(self, shape, angles):
        """Canonical joints (T, J, 2) with the body's centre at the origin, facing +x."""
        angle = self._angles_by_name(angles)
        points = {}
        pitch = angle["body"]
        body_x, body_y = _direction_from_right(pitch)
        half = 0.5 * shape["body"]
        points["neck"] = (half * body_x, half * body_y)
        points["rump"] = (-half * body_x, -half * body_y)
        # neck, head and tail angles each add to the one before
        neck_x, neck_y = _direction_from_right(pitch + angle["neck"])
        head_x = points["neck"][0] + shape["neck"] * neck_x
        head_y = points["neck"][1] + shape["neck"] * neck_y
        points["head"] = (head_x, head_y)
        snout_x, snout_y = _direction_from_right(pitch + angle["neck"] + angle["head"])
        nose_distance = 0.4 * shape["head_r"] + shape["snout"]
        points["nose"] = (head_x + nose_distance * snout_x, head_y + nose_distance * snout_y)
        # the tail points backwards (pitch + pi), raised by tail_base
        tail_x, tail_y = _direction_from_right(pitch + math.pi - angle["tail_base"])
        segment = 0.5 * shape["tail"]
        mid_x, mid_y = points["rump"][0] + segment * tail_x, points["rump"][1] + segment * tail_y
        points["tail_mid"] = (mid_x, mid_y)
        tail_x, tail_y = _direction_from_right(pitch + math.pi - angle["tail_base"] -
                                               angle["tail_bend"])
        points["tail_tip"] = (mid_x + segment * tail_x, mid_y + segment * tail_y)
        for leg in self._LEGS:
            self._pose_leg(shape, angle, leg, points)
        return self._stack_joints(points, shape["size"])

    def _pose_leg(self, shape, angle, leg, points):
        pitch = angle["body"]
        cos_pitch, sin_pitch = np.cos(pitch), np.sin(pitch)
        front = leg[0] == "f"
        far = leg[1] == "f"
        # the leg hangs from the lower half of the body, inset from its end; the far legs sit a
        # little further in, so they do not hide exactly behind the near ones
        half_body = 0.5 * shape["body"]
        body_r = shape["r_front"] if front else shape["r_back"]
        off_x = (half_body - 0.7 * body_r) if front else -(half_body - 0.7 * body_r)
        off_x += (-0.035 if front else 0.035) if far else 0.0
        off_y = 0.4 * body_r
        # rotate (off_x, off_y) by the body pitch (pitch is counter-clockwise on screen)
        top_x = cos_pitch * off_x + sin_pitch * off_y
        top_y = -sin_pitch * off_x + cos_pitch * off_y
        top, middle = _leg_joint_names(leg)
        points[f"{leg}_{top}"] = (top_x, top_y)
        upper_x, upper_y = _direction_from_down(pitch + angle[f"{leg}_upper"])
        middle_x, middle_y = top_x + shape["upper"] * upper_x, top_y + shape["upper"] * upper_y
        points[f"{leg}_{middle}"] = (middle_x, middle_y)
        lower_x, lower_y = _direction_from_down(pitch + angle[f"{leg}_upper"] +
                                                angle[f"{leg}_lower"])
        points[f"{leg}_paw"] = (middle_x + shape["lower"] * lower_x,
                                middle_y + shape["lower"] * lower_y)

    def _extent(self, shape):
        """Bounding box (low, high corners) of the rest pose, ears and paws included."""
        rest = np.zeros((1, len(self.angles)))
        rest[0, 1], rest[0, 2] = 0.8, -0.8  # neck raised, head level
        joints = self._pose(shape, rest)[0]
        low, high = joints.min(0), joints.max(0)
        low[1] -= (shape["head_r"] + shape["ear"]) * shape["size"]
        high[1] += shape["leg_r"] * shape["size"]
        return low, high

    def build(self, shape, look, angles, global_motion, size):
        # the rig faces +x; a puppet facing left is the mirror image
        facing = float(angles[0, self.angles.index("facing")])
        transform, canonical, joints, joint = self._posed_joints(shape, angles, global_motion,
                                                                 size, mirror=facing)
        scale = shape["size"]
        unit = transform.unit
        label = self.label

        def pixels(r):  # a rig length (before ``size``) in pixels
            return transform.length(r * scale)

        prims = {}
        prims["body"] = capsule(label("body"), joint["neck"], joint["rump"],
                                pixels(shape["r_front"]), pixels(shape["r_back"]), look["coat"],
                                unit)
        prims["neck"] = capsule(label("neck"), joint["neck"], joint["head"],
                                pixels(shape["neck_r"] * 1.3), pixels(shape["neck_r"]),
                                look["coat"], unit)
        prims["head"] = ellipse(label("head"), joint["head"], pixels(shape["head_r"]),
                                pixels(shape["head_r"] * 0.9),
                                transform.orientation(np.zeros(len(joints))), look["head"], unit)
        prims["snout"] = capsule(label("snout"), joint["head"], joint["nose"],
                                 pixels(shape["snout_r"] * 1.2), pixels(shape["snout_r"]),
                                 look["snout"], unit)
        ear_base, ear_tip = self._ear(shape, angles, canonical)
        prims["ear"] = capsule(label("ear"), transform.point(ear_base[:, 0], ear_base[:, 1]),
                               transform.point(ear_tip[:, 0], ear_tip[:, 1]),
                               pixels(shape["ear_r"] * 1.6), pixels(shape["ear_r"]), look["ear"],
                               unit)
        tail_r = shape["tail_r"]
        prims["tail_base"] = capsule(label("tail_base"), joint["rump"], joint["tail_mid"],
                                     pixels(tail_r * 1.3), pixels(tail_r), look["coat"], unit)
        prims["tail_tip"] = capsule(label("tail_tip"), joint["tail_mid"], joint["tail_tip"],
                                    pixels(tail_r), pixels(tail_r * 0.8), look["tail_tip"], unit)
        leg_r = shape["leg_r"]
        for leg in self._LEGS:
            top, middle = _leg_joint_names(leg)
            fill = look["legs_far"] if leg[1] == "f" else look["legs"]
            prims[f"{leg}_upper"] = capsule(label(f"{leg}_upper"), joint[f"{leg}_{top}"],
                                            joint[f"{leg}_{middle}"], pixels(leg_r * 1.35),
                                            pixels(leg_r), fill, unit)
            prims[f"{leg}_lower"] = capsule(label(f"{leg}_lower"), joint[f"{leg}_{middle}"],
                                            joint[f"{leg}_paw"], pixels(leg_r),
                                            pixels(leg_r * 0.9), fill, unit)
        # far legs behind the body, near legs in front of it
        order = ["ff_lower", "ff_upper", "hf_lower", "hf_upper", "neck", "body", "tail_tip",
                 "tail_base", "ear", "head", "snout", "hn_lower", "hn_upper", "fn_lower",
                 "fn_upper"]
        return joints, [prims[part] for part in order], look["background"]

    def _ear(self, shape, angles, canonical):
        """Ear base and tip (T, 2) in canonical units: from the head centre, pointing up and
        back (relative to the direction the head points in)."""
        angle = self._angles_by_name(angles)
        head_direction = angle["body"] + angle["neck"] + angle["head"]
        head = canonical[:, self.joints.index("head")]
        base_x, base_y = _direction_from_right(head_direction + 1.9)
        base = head + 0.3 * shape["head_r"] * shape["size"] * np.stack([base_x, base_y], -1)
        tip_x, tip_y = _direction_from_right(head_direction + 2.1)
        tip = head + (shape["head_r"] + shape["ear"]) * shape["size"] * np.stack([tip_x, tip_y],
                                                                                 -1)
        return base, tip


class _HeadView:
    """A face's head as the camera sees it: an ellipsoid that yaws and pitches in place.

    Face points are given relative to the head's centre in canonical units (x right, y down, z
    towards the viewer) and projected orthographically; the global motion then moves, rolls and
    scales the result like any puppet.
    """

    centre = (0.5, 0.45)  # canonical; a little above the image centre, leaving room for the neck

    def __init__(self, shape, yaw, pitch, transform):
        self.half_width = shape["head_half_width"]
        self.half_height = shape["head_half_height"]
        self.half_depth = shape["head_half_depth"]
        self.yaw = yaw
        self.cos_yaw, self.sin_yaw = np.cos(yaw), np.sin(yaw)
        self.cos_pitch, self.sin_pitch = np.cos(pitch), np.sin(pitch)
        self.transform = transform
        self.unit = transform.unit
        # the face's ellipses keep the image's axes (plus the global roll): yaw and pitch only
        # move and squeeze them
        self.upright = transform.orientation(np.zeros(len(yaw)))

    def project(self, x, y, z=None, dz=0.0):
        """Face point -> (pixels (T, 2), horizontal foreshortening (T,)).

        ``z`` defaults to the ellipsoid's front surface at (x, y); ``dz`` lifts the point off it.
        The foreshortening is the factor by which a small width at the point shrinks as the
        surface there turns away from the viewer.
        """
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if z is None:
            z = self.half_depth * np.sqrt(np.maximum(
                0.0, 1.0 - (x / self.half_width) ** 2 - (y / self.half_height) ** 2))
        z = z + dz
        # yaw about the vertical axis, then pitch about the horizontal one; depth is dropped
        x_turned = x * self.cos_yaw + z * self.sin_yaw
        z_turned = z * self.cos_yaw - x * self.sin_yaw
        y_turned = y * self.cos_pitch - z_turned * self.sin_pitch
        # the point's azimuth on the ellipsoid, plus the yaw, is its angle away from the viewer;
        # floored so that features at the side shrink but never vanish
        azimuth = np.arctan2(x / self.half_width, np.maximum(z, 1e-6) / self.half_depth)
        foreshortening = np.maximum(np.cos(azimuth + self.yaw), 0.15)
        return self.fixed(x_turned, y_turned), foreshortening

    def fixed(self, x, y) -> np.ndarray:
        """A point that follows the global motion but not the yaw or pitch -> pixels (T, 2)."""
        return self.transform.point(self.centre[0] + x, self.centre[1] + y)

    def offset(self, vectors) -> np.ndarray:
        """Per-frame offsets (T, 2) along the head's upright axes -> pixel offsets (T, 2)."""
        return self.transform.length(1.0)[:, None] * _rotate(vectors, self.transform.rotation)

    def length(self, r) -> np.ndarray:
        return self.transform.length(r)


class Face(Kind):
    name = "face"
    joints = ("l_eye", "r_eye", "l_brow", "r_brow", "nose", "mouth_l", "mouth_r", "upper_lip",
              "lower_lip", "chin", "l_ear", "r_ear")
    parts = ("hair", "clothes", "neck", "l_ear", "r_ear", "head", "l_eye", "r_eye", "l_brow",
             "r_brow", "nose", "mouth")
    edges = ((0, 1), (0, 2), (1, 3), (0, 4), (1, 4), (4, 7), (5, 7), (6, 7), (5, 8), (6, 8),
             (8, 9), (0, 10), (1, 11))
    joint_parts = {"l_eye": ("l_eye",), "r_eye": ("r_eye",), "l_brow": ("l_brow",),
                   "r_brow": ("r_brow",), "nose": ("nose",), "mouth_l": ("mouth",),
                   "mouth_r": ("mouth",), "upper_lip": ("mouth",), "lower_lip": ("mouth",),
                   "chin": ("head",), "l_ear": ("l_ear",), "r_ear": ("r_ear",)}
    angles = ("yaw", "pitch", "eye_open", "l_brow", "r_brow", "mouth_open", "mouth_width",
              "gaze_x", "gaze_y")
    _DRAW_ORDER = ("hair_back", "neck", "clothes", "l_ear", "r_ear", "head", "l_eye", "r_eye",
                   "l_brow", "r_brow", "nose", "mouth", "fringe")

    def sample_shape(self, rng):
        """The head's half axes in canonical units; the rest relative to them: eye_x, eye_rx,
        ear_rx, brow_len, nose_r, mouth_w, neck_r and shoulders are fractions of the head's half
        width; eye_y, ear_y, ear_ry, brow_y, nose_len, mouth_y and lip of its half height; eye_ry
        of eye_rx; iris of the eye's half height; pupil of the iris; brow_r is in canonical
        units."""
        uniform = rng.uniform
        half_width = uniform(0.19, 0.25)
        return dict(head_half_width=half_width, head_half_height=half_width * uniform(1.1, 1.4),
                    head_half_depth=half_width * uniform(0.85, 1.0), eye_x=uniform(0.3, 0.42),
                    eye_y=uniform(-0.16, 0.0), eye_rx=uniform(0.14, 0.21),
                    eye_ry=uniform(0.6, 0.9), iris=uniform(0.45, 0.7), pupil=uniform(0.35, 0.6),
                    brow_y=uniform(0.16, 0.24), brow_len=uniform(0.14, 0.24),
                    brow_r=uniform(0.016, 0.024), nose_len=uniform(0.16, 0.3),
                    nose_r=uniform(0.05, 0.09), mouth_y=uniform(0.46, 0.6),
                    mouth_w=uniform(0.22, 0.38), lip=uniform(0.05, 0.08),
                    ear_rx=uniform(0.16, 0.26), ear_ry=uniform(0.22, 0.35),
                    ear_y=uniform(-0.05, 0.12), neck_r=uniform(0.38, 0.55),
                    shoulders=uniform(1.5, 2.2))

    def sample_look(self, rng):
        outline_width, outline_color = _random_outline(rng)
        outline = dict(outline=outline_width, outline_color=outline_color)
        skin = _skin_color(rng)
        skin_fill = Fill(skin, _related_color(rng, skin, 0.15),
                         GRADIENT if rng.uniform() < 0.4 else PLAIN,
                         shade=rng.uniform(0.0, 0.25), **outline)
        hair_color = _hair_color(rng, (0.05, 0.7))
        hair = _random_fill(rng, hair_color, textures=(PLAIN, STRIPES), weights=(0.5, 0.5),
                            period=(0.015, 0.04), shade=(0.0, 0.2), **outline)
        iris_color = _random_color(rng, (0.3, 0.9), (0.2, 0.7))
        lips = _related_color(rng, _from_hsv(rng.uniform(-0.05, 0.03), rng.uniform(0.3, 0.7),
                                             rng.uniform(0.4, 0.8)), 0.15)
        return dict(
            background=_random_background(rng), skin=skin_fill,
            ear=skin_fill.with_colors(skin * rng.uniform(0.8, 0.95)),
            neck=skin_fill.with_colors(skin * rng.uniform(0.75, 0.9)),
            clothes=_random_fill(rng, shade=(0.0, 0.2), **outline), hair=hair,
            hair_back=int(rng.integers(0, 3)), fringe=rng.uniform() < 0.6,
            fringe_depth=rng.uniform(0.38, 0.5),
            sclera=Fill(_from_hsv(rng.uniform(0.05, 0.15), rng.uniform(0, 0.1),
                                  rng.uniform(0.85, 1.0))),
            iris=Fill(iris_color, _related_color(rng, iris_color, 0.2), GRADIENT),
            pupil=Fill(_from_hsv(0, 0, rng.uniform(0.0, 0.12))),
            lid=Fill(hair_color * 0.6),
            brow=Fill(hair_color * rng.uniform(0.6, 1.0)),
            nose=skin_fill.with_colors(skin * rng.uniform(0.8, 0.95)),
            lips=Fill(lips, **outline), mouth_in=Fill(_from_hsv(0.98, 0.6, rng.uniform(0.1, 0.35))))

    def sample_motion(self, rng, T, fps):
        times = np.arange(T) / fps
        angle = {}
        blink_rng = np.random.default_rng(int(rng.integers(2**62)))
        angle["yaw"] = _angle_trajectory(rng, times, -0.6, 0.6, freq_range=(0.1, 0.6))
        angle["pitch"] = _angle_trajectory(rng, times, -0.3, 0.3, freq_range=(0.1, 0.6))
        angle["eye_open"] = self._eye_openness(rng, blink_rng, times)
        angle["l_brow"] = _angle_trajectory(rng, times, 0.0, 1.0, freq_range=(0.2, 1.2))
        # the brows move together, the right one with a little of its own motion
        angle["r_brow"] = 0.6 * angle["l_brow"] + \
            0.4 * _angle_trajectory(rng, times, 0.0, 1.0, freq_range=(0.2, 1.2))
        talk = rng.uniform(0.2, 1.0)
        angle["mouth_open"] = np.clip(talk * (0.5 + 0.5 * _smooth_wave(rng, times, (1.5, 4.5))),
                                      0.0, 1.0)
        angle["mouth_width"] = _angle_trajectory(rng, times, -0.3, 1.0, freq_range=(0.1, 0.6))
        angle["gaze_x"] = _angle_trajectory(rng, times, -1.0, 1.0, freq_range=(0.1, 0.8))
        angle["gaze_y"] = _angle_trajectory(rng, times, -0.6, 0.6, freq_range=(0.1, 0.8))
        return (np.stack([angle[name] for name in self.angles], 1),
                sample_global(rng, times, shift=0.08, rotation=0.25, scale=(0.85, 1.1),
                              freq_range=(0.05, 0.5)))

    @staticmethod
    def _eye_openness(rng, blink_rng, times):
        """A resting openness with blinks: a Poisson process of ~0.25 s closures."""
        eye = np.full(len(times), rng.uniform(0.75, 1.0))
        rate = rng.uniform(0.2, 0.8)  # blinks per second
        blink_time = -0.3
        # blinks use their own generator: how many there are depends on T, and the trajectories
        # drawn after them from ``rng`` must not
        while True:
            blink_time += blink_rng.exponential(1.0 / rate)
            if blink_time > times[-1] + 0.3:
                break
            half_width = blink_rng.uniform(0.1, 0.16)
            bump = np.clip(1.0 - np.abs(times - blink_time) / half_width, 0.0, 1.0)
            eye = eye * (1.0 - 0.95 * bump * bump * (3 - 2 * bump))  # smoothstep of the bump
        return eye

    def anchor(self, shape):
        return np.array([0.5, 0.5])

    def build(self, shape, look, angles, global_motion, size):
        pose = self._angles_by_name(angles)
        transform = _PixelTransform(global_motion, self.anchor(shape), size)
        head = _HeadView(shape, pose["yaw"], pose["pitch"], transform)
        prims, points = self._head_and_body(head, shape, look)
        for side, sign in _SIDES:
            prims[f"{side}_ear"], points[f"{side}_ear"] = self._ear(head, shape, look, side, sign)
            prims[f"{side}_eye"], points[f"{side}_eye"] = self._eye(head, shape, look, pose, side,
                                                                    sign)
            prims[f"{side}_brow"], points[f"{side}_brow"] = self._brow(head, shape, look, pose,
                                                                       side, sign)
        prims["nose"], points["nose"] = self._nose(head, shape, look)
        prims["mouth"], mouth_points = self._mouth(head, shape, look, pose)
        points.update(mouth_points)
        prims.update(self._hair(head, look, prims["head"]))
        drawn = []  # an entry of ``prims`` is one primitive or a list of them (eyes, mouth)
        for part in self._DRAW_ORDER:
            if part in prims:
                drawn.extend(prims[part] if isinstance(prims[part], list) else [prims[part]])
        return np.stack([points[name] for name in self.joints], 1), drawn, look["background"]

    def _head_and_body(self, head, shape, look):
        """Neck, clothes and the head's outline (they follow the global motion but not the yaw or
        pitch: a turning ellipsoid's outline hardly changes); the chin joint."""
        label, unit = self.label, head.unit
        width, height = head.half_width, head.half_height
        prims = {
            "neck": capsule(label("neck"), head.fixed(0.0, 0.6 * height),
                            head.fixed(0.0, 1.6 * height), head.length(shape["neck_r"] * width),
                            head.length(shape["neck_r"] * width * 1.1), look["neck"], unit),
            "clothes": ellipse(label("clothes"), head.fixed(0.0, 2.0 * height),
                               head.length(shape["shoulders"] * width), head.length(0.9 * height),
                               head.upright, look["clothes"], unit),
            "head": ellipse(label("head"), head.fixed(0.0, 0.0), head.length(width),
                            head.length(height), head.upright, look["skin"], unit)}
        chin, _ = head.project(0.0, 0.86 * height)
        return prims, {"chin": chin}

    def _ear(self, head, shape, look, side, sign):
        """An ear beside the head, set back (z < 0) so that it slides behind the head (which is
        drawn over it) as the head turns away -> (primitive, centre)."""
        width = head.half_width
        x = sign * (width + 0.45 * shape["ear_rx"] * width)
        centre, _ = head.project(x, shape["ear_y"] * head.half_height, z=-0.3 * head.half_depth)
        ear = ellipse(self.label(f"{side}_ear"), centre, head.length(shape["ear_rx"] * width),
                      head.length(shape["ear_ry"] * head.half_height), head.upright, look["ear"],
                      head.unit)
        return ear, centre

    @staticmethod
    def _eye_geometry(head, shape):
        """(eye height on the face, eye half width, eye half height), head-relative units."""
        return (shape["eye_y"] * head.half_height, shape["eye_rx"] * head.half_width,
                shape["eye_ry"] * shape["eye_rx"] * head.half_width)

    def _eye(self, head, shape, look, pose, side, sign):
        """Sclera, iris and pupil (both clipped to the sclera) and lid -> (primitives, centre)."""
        label, unit, upright = self.label(f"{side}_eye"), head.unit, head.upright
        eye_y, eye_rx, eye_ry = self._eye_geometry(head, shape)
        centre, foreshortening = head.project(sign * shape["eye_x"] * head.half_width, eye_y)
        opening = np.maximum(eye_ry * pose["eye_open"], 0.02 * eye_rx)  # shut: a thin slit
        sclera = ellipse(label, centre, head.length(eye_rx * foreshortening), head.length(opening),
                         upright, look["sclera"], unit)
        gaze = np.stack([pose["gaze_x"] * 0.45 * eye_rx * foreshortening,
                         pose["gaze_y"] * 0.3 * eye_ry], -1)
        iris_centre = centre + head.offset(gaze)
        iris_r = shape["iris"] * eye_ry
        iris = ellipse(label, iris_centre, head.length(iris_r * foreshortening),
                       head.length(iris_r), upright, look["iris"], unit, clip=sclera)
        pupil = ellipse(label, iris_centre, head.length(iris_r * shape["pupil"] * foreshortening),
                        head.length(iris_r * shape["pupil"]), upright, look["pupil"], unit,
                        clip=sclera)
        lid = self._lid(head, look, label, centre, eye_rx * foreshortening, opening)
        return [sclera, iris, pupil, lid], centre

    @staticmethod
    def _lid(head, look, label, centre, eye_half_width, opening):
        """The upper lid: a thin bar just inside the top of the open eye, a little wider."""
        zero = np.zeros(len(opening))
        lid_centre = centre + head.offset(np.stack([zero, -opening], -1)) * 0.9
        half_bar = head.offset(np.stack([eye_half_width * 1.05, zero], -1))
        lid_r = head.length(0.012)
        return capsule(label, lid_centre - half_bar, lid_centre + half_bar, lid_r, lid_r,
                       look["lid"], head.unit)

    def _brow(self, head, shape, look, pose, side, sign):
        """A brow above the eye; it moves up with the raise, and its inner end more so (a tilt);
        -> (primitive, centre)."""
        raise_ = pose[f"{side}_brow"]
        eye_y, _, _ = self._eye_geometry(head, shape)
        brow_y = eye_y - shape["brow_y"] * head.half_height - 0.06 * head.half_height * raise_
        half_length = shape["brow_len"] * head.half_width
        centre, foreshortening = head.project(sign * shape["eye_x"] * head.half_width, brow_y)
        tilt = -sign * 0.25 * (raise_ - 0.3)
        half_bar = head.offset(np.stack([half_length * foreshortening * np.cos(tilt),
                                         half_length * np.sin(tilt)], -1))
        brow_r = head.length(shape["brow_r"])
        brow = capsule(self.label(f"{side}_brow"), centre - half_bar, centre + half_bar, brow_r,
                       brow_r * 0.8, look["brow"], head.unit)
        return brow, centre

    def _nose(self, head, shape, look):
        """A tapering capsule from the bridge between the eyes to a tip raised off the face (the
        joint) -> (primitive, tip)."""
        eye_y, _, eye_ry = self._eye_geometry(head, shape)
        bridge, _ = head.project(0.0, eye_y + 0.3 * eye_ry, dz=0.02 * head.half_depth)
        tip, _ = head.project(0.0, eye_y + shape["nose_len"] * head.half_height,
                              dz=0.25 * head.half_depth)
        nose_r = shape["nose_r"] * head.half_width
        nose = capsule(self.label("nose"), bridge, tip, head.length(0.45 * nose_r),
                       head.length(nose_r), look["nose"], head.unit)
        return nose, tip

    def _mouth(self, head, shape, look, pose):
        """Lips (an ellipse) around a dark opening -> (primitives, {corner and lip joints})."""
        label, unit, height = self.label("mouth"), head.unit, head.half_height
        centre, foreshortening = head.project(0.0, shape["mouth_y"] * height)
        half_width = shape["mouth_w"] * head.half_width * (1.0 + 0.15 * pose["mouth_width"]) * \
            foreshortening
        opening = pose["mouth_open"] * 0.13 * height
        lip = shape["lip"] * height
        lips = ellipse(label, centre, head.length(half_width), head.length(opening + lip),
                       head.upright, look["lips"], unit)
        inner = ellipse(label, centre, head.length(half_width * 0.8),
                        head.length(np.maximum(opening, 1e-3 * height)), head.upright,
                        look["mouth_in"], unit)
        # the joints: corners a little inside the lips' ends, lips' middles halfway through them
        zero = np.zeros_like(half_width)
        offsets = {"mouth_l": (-0.8 * half_width, zero), "mouth_r": (0.8 * half_width, zero),
                   "upper_lip": (zero, -(opening + 0.5 * lip)),
                   "lower_lip": (zero, opening + 0.5 * lip)}
        points = {name: centre + head.offset(np.stack(offset, -1))
                  for name, offset in offsets.items()}
        return [lips, inner], points

    def _hair(self, head, look, head_prim):
        """Hair behind the head (none, short or long) and a fringe over the forehead."""
        prims = {}
        width, height = head.half_width, head.half_height
        style = look["hair_back"]  # 0: none, 1: short, 2: long (below the chin)
        if style:
            # in the head's middle plane (z = 0): it stays centred behind the head as it turns
            centre, _ = head.project(0.0, -0.12 * height if style == 1 else 0.12 * height, z=0.0)
            prims["hair_back"] = ellipse(
                self.label("hair"), centre, head.length(width * (1.12 if style == 1 else 1.22)),
                head.length(height * (1.0 if style == 1 else 1.25)), head.upright, look["hair"],
                head.unit)
        if look["fringe"]:
            # clipped to the head's outline: hair over the top of the forehead, not beyond it
            centre, _ = head.project(0.0, -0.85 * height, z=0.35 * head.half_depth)
            prims["fringe"] = ellipse(self.label("hair"), centre, head.length(width * 1.06),
                                      head.length(height * look["fringe_depth"]), head.upright,
                                      look["hair"], head.unit, clip=head_prim)
        return prims


KINDS = {kind.name: kind() for kind in (Humanoid, Quadruped, Face)}
