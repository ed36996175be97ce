"""Puppet kinds: skeletons, identity sampling (shape + look) and motion sampling.

Conventions
-----------
- Puppets are built in *canonical units*: the image is the unit square, x right, y down.
- ``shape`` (proportions) and ``look`` (colours, textures, background, draw order) make an identity;
  ``angles`` (T, A) and ``glob`` (T, 4) make a motion. Pixel joints depend on shape + motion only.
- ``glob`` columns: tx, ty (fraction of the image), rot (radians, clockwise on screen), scale.
  A canonical point p maps to ``size * (0.5 + t + scale * R(rot) (p - anchor))`` where ``anchor``
  is the centre of the identity's rest pose.
- "l_"/"r_" joints of humanoid and face are on the image's left/right side (not anatomical).
"""
from __future__ import annotations

import colorsys
import math

import numpy as np

from .render import (CHECKER, DOTS, GRADIENT, PLAIN, STRIPES, Background, Fill, capsule, ellipse)

TAU = 2.0 * math.pi


# ----------------------------------------------------------------------------------- helpers
def _hsv(h, s, v) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0)))


def _color(rng, s=(0.3, 0.9), v=(0.3, 0.95)) -> np.ndarray:
    return _hsv(rng.uniform(), rng.uniform(*s), rng.uniform(*v))


def _near(rng, c, amount=0.25) -> np.ndarray:
    """A colour related to c (lighter/darker, slightly shifted hue)."""
    h, s, v = colorsys.rgb_to_hsv(*c)
    return _hsv(h + rng.uniform(-0.08, 0.08), s * rng.uniform(0.6, 1.2),
                v + rng.choice([-1, 1]) * rng.uniform(0.5, 1.0) * amount)


def _skin(rng) -> np.ndarray:
    if rng.uniform() < 0.15:  # cartoon skin
        return _color(rng, (0.3, 0.7), (0.5, 0.95))
    return _hsv(rng.uniform(0.02, 0.1), rng.uniform(0.25, 0.6), rng.uniform(0.35, 0.97))


def _fill(rng, base=None, textures=(PLAIN, STRIPES, DOTS, CHECKER, GRADIENT),
          p=None, period=(0.04, 0.12), shade=(0.0, 0.3), outline=0.0, outline_color=None) -> Fill:
    c1 = _color(rng) if base is None else base
    tex = int(rng.choice(textures, p=p))
    c2 = _near(rng, c1, 0.35) if rng.uniform() < 0.5 else _color(rng)
    duty = rng.uniform(0.35, 0.65) if tex != DOTS else rng.uniform(0.4, 0.75)
    return Fill(c1, c2 if tex != PLAIN else None, tex, period=rng.uniform(*period),
                angle=rng.uniform(0, math.pi), duty=duty, phase=rng.uniform(),
                shade=rng.uniform(*shade), outline=outline, outline_color=outline_color)


def _outline(rng):
    """(width in units, colour) shared by all parts of an identity; width 0 for no outline."""
    if rng.uniform() < 0.5:
        return 0.0, None
    return rng.uniform(0.006, 0.012), _hsv(rng.uniform(), rng.uniform(0, 0.6), rng.uniform(0, 0.25))


def _background(rng) -> Background:
    c1 = _color(rng, (0.0, 0.6), (0.2, 0.95))
    c2 = _near(rng, c1, 0.3) if rng.uniform() < 0.6 else _color(rng, (0.0, 0.6), (0.2, 0.95))
    c3 = _color(rng, (0.0, 0.5), (0.1, 0.9))
    pattern = int(rng.choice([PLAIN, STRIPES, DOTS, CHECKER, 5], p=[0.15, 0.25, 0.2, 0.15, 0.25]))
    pan = (0.0, 0.0)
    if rng.uniform() < 0.5:  # slowly panning (fraction of the image per frame)
        a = rng.uniform(0, TAU)
        sp = rng.uniform(0.001, 0.005)
        pan = (sp * math.cos(a), sp * math.sin(a))
    waves = [(math.cos(a), math.sin(a), 1.0 / rng.uniform(0.15, 0.6), rng.uniform())
             for a in rng.uniform(0, TAU, 3)]
    return Background(c1, c2, c3, pattern, period=rng.uniform(0.05, 0.25),
                      angle=rng.uniform(0, math.pi), duty=rng.uniform(0.3, 0.7),
                      gradient=rng.uniform(0, 0.8) if rng.uniform() < 0.6 else 0.0, pan=pan,
                      waves=waves)


def _wave(rng, t, f=(0.15, 0.9), n=3) -> np.ndarray:
    """A smooth signal in [-1, 1]: a weighted sum of n sinusoids (weights sum to <= 1)."""
    fr = rng.uniform(f[0], f[1], n)
    ph = rng.uniform(0, TAU, n)
    w = rng.uniform(0.2, 1.0, n)
    w /= w.sum()
    out = np.zeros_like(t)
    for k in range(n):
        out += w[k] * np.sin(TAU * fr[k] * t + ph[k])
    return out


def _angle(rng, t, lo, hi, amp=(0.25, 1.0), f=(0.15, 0.9), energy=1.0) -> np.ndarray:
    """A joint-angle trajectory that stays within [lo, hi]."""
    half = 0.5 * (hi - lo) * min(1.0, rng.uniform(*amp) * energy)
    mid = lo + half + rng.uniform() * max(0.0, (hi - lo) - 2.0 * half)
    return mid + half * _wave(rng, t, f)


def _down(a):
    """Unit vector at angle a from straight down, turning towards +x."""
    return np.sin(a), np.cos(a)


def _fwd(a):
    """Unit vector at angle a from +x, turning upwards (towards -y)."""
    return np.cos(a), -np.sin(a)


class _Xf:
    """Similarity transform from canonical units to pixels (per frame)."""

    def __init__(self, glob, anchor, size, mirror=1.0):
        self.tx, self.ty, rot, self.sc = (glob[:, k] for k in range(4))
        self.c, self.s = np.cos(rot), np.sin(rot)
        self.rot = rot
        self.ax, self.ay = anchor
        self.size = float(size)
        self.mirror = float(mirror)
        self.unit = self.size * self.sc

    def pt(self, x, y) -> np.ndarray:
        x = (np.asarray(x, np.float64) - self.ax) * self.mirror
        y = np.asarray(y, np.float64) - self.ay
        x, y = np.broadcast_arrays(x, y)
        e = (-1,) + (1,) * (x.ndim - 1)
        tx, ty, sc = self.tx.reshape(e), self.ty.reshape(e), self.sc.reshape(e)
        c, s = self.c.reshape(e), self.s.reshape(e)
        X = self.size * (0.5 + tx + sc * (c * x - s * y))
        Y = self.size * (0.5 + ty + sc * (s * x + c * y))
        return np.stack([X, Y], -1)

    def ln(self, r) -> np.ndarray:
        return np.asarray(r, np.float64) * self.unit

    def ang(self, a) -> np.ndarray:
        """Canonical orientation (radians, image coords) -> pixel orientation."""
        a = np.asarray(a, np.float64)
        if self.mirror < 0:
            a = math.pi - a
        return a + self.rot


def sample_global(rng, t, shift=0.08, rot=0.12, scale=(0.85, 1.05), f=(0.05, 0.4)) -> np.ndarray:
    tx = rng.uniform(-shift, shift) * 0.6 + shift * 0.6 * _wave(rng, t, f)
    ty = rng.uniform(-shift, shift) * 0.3 + shift * 0.3 * _wave(rng, t, f)
    r = rng.uniform(-rot, rot) * 0.5 + rot * 0.5 * _wave(rng, t, f)
    s = rng.uniform(*scale) * (1.0 + 0.06 * _wave(rng, t, f))
    return np.stack([tx, ty, r, s], 1)


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
        return [tuple(self.parts.index(p) + 1 for p in self.joint_parts[j]) for j in self.joints]

    def sample_shape(self, rng) -> dict:
        raise NotImplementedError

    def sample_look(self, rng) -> dict:
        raise NotImplementedError

    def sample_motion(self, rng, T, fps) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def build(self, shape, look, angles, glob, size):
        """-> joints (T, J, 2) pixels, primitives back to front, background."""
        raise NotImplementedError

    def label(self, part: str) -> int:
        return self.parts.index(part) + 1

    def _posed_joints(self, sh, ang, glob, size, mirror=1.0):
        """-> (image transform, joints in rig units, joints (T, J, 2) in pixels, {name: (T, 2)})."""
        xf = _Xf(glob, self.anchor(sh), size, mirror=mirror)
        Jc = self._pose(sh, ang)
        J = xf.pt(Jc[..., 0], Jc[..., 1])
        return xf, Jc, J, {n: J[:, i] for i, n in enumerate(self.joints)}


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
    _ranges = {"torso": (-0.25, 0.25), "head": (-0.35, 0.35), "l_shoulder": (-2.7, 0.8),
               "l_elbow": (-2.0, 1.6), "r_shoulder": (-0.8, 2.7), "r_elbow": (-1.6, 2.0),
               "l_hip": (-0.75, 0.3), "l_knee": (-0.15, 1.3), "r_hip": (-0.3, 0.75),
               "r_knee": (-1.3, 0.15)}

    def sample_shape(self, rng):
        u = rng.uniform
        sh = dict(torso=u(0.19, 0.26), sw=u(0.055, 0.095), hw=u(0.035, 0.06),
                  r_top=u(0.05, 0.085), r_bot=u(0.04, 0.075), neck=u(0.015, 0.045),
                  head_r=u(0.05, 0.075), head_aspect=u(0.95, 1.25),
                  upper_arm=u(0.1, 0.15), forearm=u(0.095, 0.14), arm_r=u(0.022, 0.034),
                  thigh=u(0.13, 0.19), shin=u(0.12, 0.18), leg_r=u(0.026, 0.042), size=1.0)
        sh["r_top"] = max(sh["r_top"], 0.8 * sh["sw"])
        sh["r_bot"] = max(sh["r_bot"], 0.9 * sh["hw"])
        lo, hi = self._extent(sh)
        sh["size"] = u(0.7, 0.86) / (hi[1] - lo[1])
        return sh

    def _rest(self):
        return np.array([[0.0, 0.0, -0.3, -0.3, 0.3, 0.3, -0.2, 0.3, 0.2, -0.3]])

    def _extent(self, sh):
        J = self._pose(sh, self._rest())[0]
        lo, hi = J.min(0), J.max(0)
        lo[1] -= sh["head_r"] * sh["head_aspect"] * sh["size"]
        hi[1] += sh["leg_r"] * sh["size"]
        return lo, hi

    def sample_look(self, rng):
        ow, oc = _outline(rng)
        skin = _skin(rng)
        kw = dict(outline=ow, outline_color=oc, shade=(0.0, 0.3))
        shirt = _fill(rng, **kw)
        trousers = _fill(rng, textures=(PLAIN, STRIPES, CHECKER, GRADIENT), **kw)
        skin_f = _fill(rng, skin, textures=(PLAIN, GRADIENT), p=(0.7, 0.3), period=(0.1, 0.1), **kw)
        skin_f = skin_f.with_colors(skin, _near(rng, skin, 0.12)) if skin_f.texture == GRADIENT \
            else skin_f
        hair_c = _hsv(rng.uniform(0.0, 0.15), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.6)) \
            if rng.uniform() < 0.8 else _color(rng)
        hair = _fill(rng, hair_c, textures=(PLAIN, STRIPES), period=(0.02, 0.04), **kw)
        return dict(background=_background(rng), skin=skin_f, shirt=shirt, trousers=trousers,
                    hair=hair, hair_style=int(rng.integers(0, 3)), long_sleeves=rng.uniform() < 0.5,
                    shorts=rng.uniform() < 0.3, back_arm=int(rng.integers(0, 2)),
                    back_leg=int(rng.integers(0, 2)))

    def sample_motion(self, rng, T, fps):
        t = np.arange(T) / fps
        energy = rng.uniform(0.5, 1.3)
        cols = [_angle(rng, t, *self._ranges[a], energy=energy, f=(0.15, 0.9)) for a in self.angles]
        return np.stack(cols, 1), sample_global(rng, t)

    def _pose(self, sh, ang):
        """Canonical joints (T, J, 2) with the pelvis at the origin."""
        A = {k: ang[:, i] for i, k in enumerate(self.angles)}
        T = ang.shape[0]
        z = np.zeros(T)
        P = {"pelvis": (z, z)}
        lean = A["torso"]
        dx, dy = _down(lean + math.pi)  # up along the spine
        neck = (sh["torso"] * dx, sh["torso"] * dy)
        P["neck"] = neck
        hx, hy = _down(lean + A["head"] + math.pi)
        hd = sh["neck"] + sh["head_r"] * sh["head_aspect"]
        P["head"] = (neck[0] + hd * hx, neck[1] + hd * hy)
        c, s = np.cos(lean), np.sin(lean)
        for side, sgn in (("l", -1.0), ("r", 1.0)):
            ox, oy = sgn * sh["sw"], 0.15 * sh["r_top"]
            sx, sy = neck[0] + c * ox + s * oy, neck[1] - s * ox + c * oy
            P[f"{side}_shoulder"] = (sx, sy)
            a1 = lean + A[f"{side}_shoulder"]
            ux, uy = _down(a1)
            ex, ey = sx + sh["upper_arm"] * ux, sy + sh["upper_arm"] * uy
            P[f"{side}_elbow"] = (ex, ey)
            fx, fy = _down(a1 + A[f"{side}_elbow"])
            P[f"{side}_wrist"] = (ex + sh["forearm"] * fx, ey + sh["forearm"] * fy)
            pc, ps = np.cos(0.3 * lean), np.sin(0.3 * lean)
            hx_, hy_ = sgn * sh["hw"], -0.2 * sh["r_bot"]
            hpx, hpy = pc * hx_ + ps * hy_, -ps * hx_ + pc * hy_
            P[f"{side}_hip"] = (hpx, hpy)
            a2 = A[f"{side}_hip"]
            tx_, ty_ = _down(a2)
            kx, ky = hpx + sh["thigh"] * tx_, hpy + sh["thigh"] * ty_
            P[f"{side}_knee"] = (kx, ky)
            qx, qy = _down(a2 + A[f"{side}_knee"])
            P[f"{side}_ankle"] = (kx + sh["shin"] * qx, ky + sh["shin"] * qy)
        J = np.stack([np.stack(P[j], -1) for j in self.joints], 1) * sh["size"]
        return J

    def anchor(self, sh):
        lo, hi = self._extent(sh)
        return 0.5 * (lo + hi)

    def build(self, sh, lk, ang, glob, size):
        xf, _, J, j = self._posed_joints(sh, ang, glob, size)
        k = sh["size"]
        u = xf.unit
        L = self.label
        prims = {}
        # head, hair
        lean_head = xf.ang(-(ang[:, 0] + ang[:, 1]))
        hr, ha = sh["head_r"] * k, sh["head_aspect"]
        prims["head"] = ellipse(L("head"), j["head"], xf.ln(hr), xf.ln(hr * ha), lean_head,
                                lk["skin"], u)
        style = lk["hair_style"]
        if style > 0:
            up = np.stack([np.sin(lean_head), -np.cos(lean_head)], -1)
            off = xf.ln(hr * (0.22 if style == 1 else 0.05))[:, None]
            prims["hair"] = ellipse(L("hair"), j["head"] + off * up, xf.ln(hr * 1.1),
                                    xf.ln(hr * ha * (0.95 if style == 1 else 1.25)), lean_head,
                                    lk["hair"], u)
        prims["torso"] = capsule(L("torso"), j["neck"], j["pelvis"], xf.ln(sh["r_top"] * k),
                                 xf.ln(sh["r_bot"] * k), lk["shirt"], u)
        ar, lr = xf.ln(sh["arm_r"] * k), xf.ln(sh["leg_r"] * k)
        fore = lk["shirt"] if lk["long_sleeves"] else lk["skin"]
        shin = lk["skin"] if lk["shorts"] else lk["trousers"]
        for s in "lr":
            prims[f"{s}_upper_arm"] = capsule(L(f"{s}_upper_arm"), j[f"{s}_shoulder"],
                                              j[f"{s}_elbow"], ar * 1.1, ar, lk["shirt"], u)
            prims[f"{s}_forearm"] = capsule(L(f"{s}_forearm"), j[f"{s}_elbow"], j[f"{s}_wrist"],
                                            ar, ar * 0.85, fore, u)
            prims[f"{s}_thigh"] = capsule(L(f"{s}_thigh"), j[f"{s}_hip"], j[f"{s}_knee"],
                                          lr * 1.15, lr, lk["trousers"], u)
            prims[f"{s}_shin"] = capsule(L(f"{s}_shin"), j[f"{s}_knee"], j[f"{s}_ankle"],
                                         lr, lr * 0.8, shin, u)
        ba, fa = ("l", "r") if lk["back_arm"] == 0 else ("r", "l")
        bl, fl = ("l", "r") if lk["back_leg"] == 0 else ("r", "l")
        order = ["hair", f"{ba}_upper_arm", f"{ba}_forearm", f"{bl}_shin", f"{bl}_thigh",
                 f"{fl}_shin", f"{fl}_thigh", "torso", "head", f"{fa}_upper_arm", f"{fa}_forearm"]
        return J, [prims[o] for o in order if o in prims], lk["background"]


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
    for _l in ("fn", "ff", "hn", "hf"):
        _a, _b = ("shoulder", "knee") if _l[0] == "f" else ("hip", "hock")
        joint_parts[f"{_l}_{_a}"] = ("body", f"{_l}_upper")
        joint_parts[f"{_l}_{_b}"] = (f"{_l}_upper", f"{_l}_lower")
        joint_parts[f"{_l}_paw"] = (f"{_l}_lower",)
    del _l, _a, _b
    angles = ("body", "neck", "head", "tail_base", "tail_bend", "fn_upper", "fn_lower", "ff_upper",
              "ff_lower", "hn_upper", "hn_lower", "hf_upper", "hf_lower", "facing")

    def sample_shape(self, rng):
        sh = self._raw_shape(rng)
        lo, hi = self._extent(sh)
        w, h = hi - lo
        sh["size"] = min(rng.uniform(0.68, 0.84) / w, 0.8 / h)
        return sh

    def _raw_shape(self, rng):
        u = rng.uniform
        return dict(body=u(0.26, 0.4), r_front=u(0.065, 0.1), r_back=u(0.055, 0.095),
                    neck=u(0.07, 0.15), neck_r=u(0.03, 0.048), head_r=u(0.05, 0.075),
                    snout=u(0.035, 0.09), snout_r=u(0.022, 0.038), ear=u(0.03, 0.08),
                    ear_r=u(0.014, 0.026), tail=u(0.14, 0.3), tail_r=u(0.012, 0.026),
                    upper=u(0.09, 0.14), lower=u(0.08, 0.14), leg_r=u(0.02, 0.032), size=1.0)

    def sample_look(self, rng):
        ow, oc = _outline(rng)
        kw = dict(outline=ow, outline_color=oc, shade=(0.0, 0.3))
        coat_c = _color(rng, (0.1, 0.8), (0.25, 0.95))
        coat = _fill(rng, coat_c, p=(0.3, 0.25, 0.25, 0.05, 0.15), period=(0.04, 0.1), **kw)
        legs = coat if rng.uniform() < 0.6 else _fill(rng, textures=(PLAIN, STRIPES), **kw)
        head = coat if rng.uniform() < 0.6 else _fill(rng, _near(rng, coat_c, 0.2),
                                                       textures=(PLAIN, GRADIENT), **kw)
        snout = head if rng.uniform() < 0.5 else _fill(rng, _near(rng, coat_c, 0.4),
                                                        textures=(PLAIN,), **kw)
        ear = _fill(rng, _near(rng, coat_c, 0.3), textures=(PLAIN,), **kw)
        tail_tip = coat if rng.uniform() < 0.6 else _fill(rng, _near(rng, coat_c, 0.4),
                                                           textures=(PLAIN,), **kw)
        dark = rng.uniform(0.65, 0.85)  # far legs are darker
        legs_far = legs.with_colors(legs.c1 * dark, legs.c2 * dark)
        return dict(background=_background(rng), coat=coat, legs=legs, legs_far=legs_far, head=head,
                    snout=snout, ear=ear, tail_tip=tail_tip)

    def sample_motion(self, rng, T, fps):
        t = np.arange(T) / fps
        gait = rng.uniform(0.5, 1.8)
        phases = {0: (0.0, 0.5, 0.5, 0.0), 1: (0.0, 0.5, 0.75, 0.25), 2: (0.0, 0.1, 0.55, 0.65)}[
            int(rng.integers(0, 3))]
        amp = rng.uniform(0.15, 1.0)
        A = {}
        A["body"] = rng.uniform(-0.12, 0.12) + 0.06 * amp * np.sin(TAU * 2 * gait * t)
        A["neck"] = _angle(rng, t, 0.35, 1.3, f=(0.2, 0.8))
        A["head"] = _angle(rng, t, -1.4, -0.2, f=(0.2, 1.0))
        A["tail_base"] = _angle(rng, t, -0.9, 0.9, f=(0.3, 1.5))
        A["tail_bend"] = _angle(rng, t, -0.8, 0.8, f=(0.5, 2.0))
        legs = (("fn", 0, (-0.55, 0.6), (-1.2, 0.05)), ("ff", 1, (-0.55, 0.6), (-1.2, 0.05)),
                ("hn", 2, (-0.6, 0.55), (-0.05, 1.1)), ("hf", 3, (-0.6, 0.55), (-0.05, 1.1)))
        for name, i, up, lo in legs:
            ph = TAU * (gait * t + phases[i] + rng.uniform(-0.05, 0.05))
            half = 0.5 * (up[1] - up[0]) * amp
            mid = up[0] + half + rng.uniform() * (up[1] - up[0] - 2.0 * half)
            A[f"{name}_upper"] = mid + half * (0.85 * np.sin(ph) + 0.15 * _wave(rng, t, (0.2, 1.0)))
            half = 0.5 * (lo[1] - lo[0]) * amp
            mid = lo[0] + half + rng.uniform() * (lo[1] - lo[0] - 2.0 * half)
            sgn = -1.0 if name[0] == "f" else 1.0
            A[f"{name}_lower"] = mid + half * np.sin(ph + sgn * 1.4)
        A["facing"] = np.full(T, 1.0 if rng.uniform() < 0.5 else -1.0)
        return (np.stack([A[a] for a in self.angles], 1),
                sample_global(rng, t, shift=0.06, rot=0.1, scale=(0.85, 1.05)))

    def _pose(self, sh, ang):
        A = {k: ang[:, i] for i, k in enumerate(self.angles)}
        P = {}
        pitch = A["body"]
        bx, by = _fwd(pitch)
        half = 0.5 * sh["body"]
        P["neck"] = (half * bx, half * by)
        P["rump"] = (-half * bx, -half * by)
        nx, ny = _fwd(pitch + A["neck"])
        hx, hy = P["neck"][0] + sh["neck"] * nx, P["neck"][1] + sh["neck"] * ny
        P["head"] = (hx, hy)
        sx, sy = _fwd(pitch + A["neck"] + A["head"])
        d = 0.4 * sh["head_r"] + sh["snout"]
        P["nose"] = (hx + d * sx, hy + d * sy)
        tx, ty = _fwd(pitch + math.pi - A["tail_base"])
        seg = 0.5 * sh["tail"]
        mx, my = P["rump"][0] + seg * tx, P["rump"][1] + seg * ty
        P["tail_mid"] = (mx, my)
        tx, ty = _fwd(pitch + math.pi - A["tail_base"] - A["tail_bend"])
        P["tail_tip"] = (mx + seg * tx, my + seg * ty)
        c, s = np.cos(pitch), np.sin(pitch)
        for name in ("fn", "ff", "hn", "hf"):
            front = name[0] == "f"
            far = name[1] == "f"
            r = sh["r_front"] if front else sh["r_back"]
            ox = (half - 0.7 * r) if front else -(half - 0.7 * r)
            ox += (-0.035 if front else 0.035) if far else 0.0
            oy = 0.4 * r
            # rotate (ox, oy) by the body pitch (pitch is counter-clockwise on screen)
            jx, jy = c * ox + s * oy, -s * ox + c * oy
            a, b = ("shoulder", "knee") if front else ("hip", "hock")
            P[f"{name}_{a}"] = (jx, jy)
            ux, uy = _down(pitch + A[f"{name}_upper"])
            kx, ky = jx + sh["upper"] * ux, jy + sh["upper"] * uy
            P[f"{name}_{b}"] = (kx, ky)
            lx, ly = _down(pitch + A[f"{name}_upper"] + A[f"{name}_lower"])
            P[f"{name}_paw"] = (kx + sh["lower"] * lx, ky + sh["lower"] * ly)
        return np.stack([np.stack(P[j], -1) for j in self.joints], 1) * sh["size"]

    def _extent(self, sh):
        rest = np.zeros((1, len(self.angles)))
        rest[0, 1], rest[0, 2] = 0.8, -0.8
        J = self._pose(sh, rest)[0]
        lo, hi = J.min(0), J.max(0)
        lo[1] -= (sh["head_r"] + sh["ear"]) * sh["size"]
        hi[1] += sh["leg_r"] * sh["size"]
        return lo, hi

    def anchor(self, sh):
        lo, hi = self._extent(sh)
        return 0.5 * (lo + hi)

    def build(self, sh, lk, ang, glob, size):
        facing = float(ang[0, self.angles.index("facing")])
        xf, Jc, J, j = self._posed_joints(sh, ang, glob, size, mirror=facing)
        k = sh["size"]
        u = xf.unit
        L = self.label
        ln = lambda r: xf.ln(r * k)  # noqa: E731
        P = {}
        P["body"] = capsule(L("body"), j["neck"], j["rump"], ln(sh["r_front"]), ln(sh["r_back"]),
                            lk["coat"], u)
        P["neck"] = capsule(L("neck"), j["neck"], j["head"], ln(sh["neck_r"] * 1.3),
                            ln(sh["neck_r"]), lk["coat"], u)
        P["head"] = ellipse(L("head"), j["head"], ln(sh["head_r"]), ln(sh["head_r"] * 0.9),
                            xf.ang(np.zeros(len(J))), lk["head"], u)
        P["snout"] = capsule(L("snout"), j["head"], j["nose"], ln(sh["snout_r"] * 1.2),
                             ln(sh["snout_r"]), lk["snout"], u)
        # ear: from the head centre, pointing up and back
        hdir = ang[:, 0] + ang[:, 1] + ang[:, 2]
        ex, ey = _fwd(hdir + 1.9)
        e1 = Jc[:, 2] + 0.3 * sh["head_r"] * k * np.stack([ex, ey], -1)
        ex2, ey2 = _fwd(hdir + 2.1)
        e2 = Jc[:, 2] + (sh["head_r"] + sh["ear"]) * k * np.stack([ex2, ey2], -1)
        P["ear"] = capsule(L("ear"), xf.pt(e1[:, 0], e1[:, 1]), xf.pt(e2[:, 0], e2[:, 1]),
                           ln(sh["ear_r"] * 1.6), ln(sh["ear_r"]), lk["ear"], u)
        tr = sh["tail_r"]
        P["tail_base"] = capsule(L("tail_base"), j["rump"], j["tail_mid"], ln(tr * 1.3), ln(tr),
                                 lk["coat"], u)
        P["tail_tip"] = capsule(L("tail_tip"), j["tail_mid"], j["tail_tip"], ln(tr),
                                ln(tr * 0.8), lk["tail_tip"], u)
        lr = sh["leg_r"]
        for name in ("fn", "ff", "hn", "hf"):
            a, b = ("shoulder", "knee") if name[0] == "f" else ("hip", "hock")
            fill = lk["legs_far"] if name[1] == "f" else lk["legs"]
            P[f"{name}_upper"] = capsule(L(f"{name}_upper"), j[f"{name}_{a}"], j[f"{name}_{b}"],
                                         ln(lr * 1.35), ln(lr), fill, u)
            P[f"{name}_lower"] = capsule(L(f"{name}_lower"), j[f"{name}_{b}"], j[f"{name}_paw"],
                                         ln(lr), ln(lr * 0.9), fill, u)
        order = ["ff_lower", "ff_upper", "hf_lower", "hf_upper", "neck", "body", "tail_tip",
                 "tail_base", "ear", "head", "snout", "hn_lower", "hn_upper", "fn_lower", "fn_upper"]
        return J, [P[o] for o in order], lk["background"]


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

    def sample_shape(self, rng):
        u = rng.uniform
        rx = u(0.19, 0.25)
        return dict(rx=rx, ry=rx * u(1.1, 1.4), rz=rx * u(0.85, 1.0), eye_x=u(0.3, 0.42),
                    eye_y=u(-0.16, 0.0), eye_rx=u(0.14, 0.21), eye_ry=u(0.6, 0.9),
                    iris=u(0.45, 0.7), pupil=u(0.35, 0.6), brow_y=u(0.16, 0.24),
                    brow_len=u(0.14, 0.24), brow_r=u(0.016, 0.024), nose_len=u(0.16, 0.3),
                    nose_r=u(0.05, 0.09), mouth_y=u(0.46, 0.6), mouth_w=u(0.22, 0.38),
                    lip=u(0.05, 0.08), ear_rx=u(0.16, 0.26), ear_ry=u(0.22, 0.35),
                    ear_y=u(-0.05, 0.12), neck_r=u(0.38, 0.55), shoulders=u(1.5, 2.2))

    def sample_look(self, rng):
        ow, oc = _outline(rng)
        kw = dict(outline=ow, outline_color=oc)
        skin = _skin(rng)
        skin_f = Fill(skin, _near(rng, skin, 0.15), GRADIENT if rng.uniform() < 0.4 else PLAIN,
                      shade=rng.uniform(0.0, 0.25), **kw)
        hair_c = _hsv(rng.uniform(0.0, 0.15), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.7)) \
            if rng.uniform() < 0.8 else _color(rng)
        hair = _fill(rng, hair_c, textures=(PLAIN, STRIPES), p=(0.5, 0.5), period=(0.015, 0.04),
                     shade=(0.0, 0.2), **kw)
        iris_c = _color(rng, (0.3, 0.9), (0.2, 0.7))
        lips = _near(rng, _hsv(rng.uniform(-0.05, 0.03), rng.uniform(0.3, 0.7),
                               rng.uniform(0.4, 0.8)), 0.15)
        return dict(
            background=_background(rng), skin=skin_f,
            ear=skin_f.with_colors(skin * rng.uniform(0.8, 0.95)),
            neck=skin_f.with_colors(skin * rng.uniform(0.75, 0.9)),
            clothes=_fill(rng, shade=(0.0, 0.2), **kw), hair=hair,
            hair_back=int(rng.integers(0, 3)), fringe=rng.uniform() < 0.6,
            fringe_depth=rng.uniform(0.38, 0.5),
            sclera=Fill(_hsv(rng.uniform(0.05, 0.15), rng.uniform(0, 0.1), rng.uniform(0.85, 1.0))),
            iris=Fill(iris_c, _near(rng, iris_c, 0.2), GRADIENT),
            pupil=Fill(_hsv(0, 0, rng.uniform(0.0, 0.12))),
            lid=Fill(hair_c * 0.6),
            brow=Fill(hair_c * rng.uniform(0.6, 1.0)),
            nose=skin_f.with_colors(skin * rng.uniform(0.8, 0.95)),
            lips=Fill(lips, **kw), mouth_in=Fill(_hsv(0.98, 0.6, rng.uniform(0.1, 0.35))))

    def sample_motion(self, rng, T, fps):
        t = np.arange(T) / fps
        A = {}
        blink_rng = np.random.default_rng(int(rng.integers(2**62)))
        A["yaw"] = _angle(rng, t, -0.6, 0.6, f=(0.1, 0.6))
        A["pitch"] = _angle(rng, t, -0.3, 0.3, f=(0.1, 0.6))
        # blinks: a Poisson process of ~0.25 s closures
        eye = np.full(T, rng.uniform(0.75, 1.0))
        rate = rng.uniform(0.2, 0.8)
        tb = -0.3
        while True:  # own generator: the other trajectories do not depend on T
            tb += blink_rng.exponential(1.0 / rate)
            if tb > t[-1] + 0.3:
                break
            w = blink_rng.uniform(0.1, 0.16)
            bump = np.clip(1.0 - np.abs(t - tb) / w, 0.0, 1.0)
            eye = eye * (1.0 - 0.95 * bump * bump * (3 - 2 * bump))
        A["eye_open"] = eye
        A["l_brow"] = _angle(rng, t, 0.0, 1.0, f=(0.2, 1.2))
        A["r_brow"] = 0.6 * A["l_brow"] + 0.4 * _angle(rng, t, 0.0, 1.0, f=(0.2, 1.2))
        talk = rng.uniform(0.2, 1.0)
        A["mouth_open"] = np.clip(talk * (0.5 + 0.5 * _wave(rng, t, (1.5, 4.5))), 0.0, 1.0)
        A["mouth_width"] = _angle(rng, t, -0.3, 1.0, f=(0.1, 0.6))
        A["gaze_x"] = _angle(rng, t, -1.0, 1.0, f=(0.1, 0.8))
        A["gaze_y"] = _angle(rng, t, -0.6, 0.6, f=(0.1, 0.8))
        return (np.stack([A[a] for a in self.angles], 1),
                sample_global(rng, t, shift=0.08, rot=0.25, scale=(0.85, 1.1), f=(0.05, 0.5)))

    def anchor(self, sh):
        return np.array([0.5, 0.5])

    def build(self, sh, lk, ang, glob, size):
        A = {k: ang[:, i] for i, k in enumerate(self.angles)}
        xf = _Xf(glob, self.anchor(sh), size)
        u = xf.unit
        L = self.label
        T = len(ang)
        rx, ry, rz = sh["rx"], sh["ry"], sh["rz"]
        cx, cy = 0.5, 0.45
        yaw, pitch = A["yaw"], A["pitch"]
        cyw, syw, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)

        def proj(x, y, z=None, dz=0.0):
            """Face point (head-relative units) on/above the ellipsoid -> (pixels, foreshortening)."""
            x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
            if z is None:
                z = rz * np.sqrt(np.maximum(0.0, 1.0 - (x / rx) ** 2 - (y / ry) ** 2))
            z = z + dz
            x1 = x * cyw + z * syw
            z1 = z * cyw - x * syw
            y2 = y * cp - z1 * sp
            alpha = np.arctan2(x / rx, np.maximum(z, 1e-6) / rz)
            fx = np.maximum(np.cos(alpha + yaw), 0.15)
            return xf.pt(cx + x1, cy + y2), fx

        ang0 = xf.ang(np.zeros(T))
        P = {}
        pts = {}
        # hair behind the head
        style = lk["hair_back"]
        if style:
            c, _ = proj(0.0, -0.12 * ry if style == 1 else 0.12 * ry, z=0.0)
            P["hair_back"] = ellipse(L("hair"), c, xf.ln(rx * (1.12 if style == 1 else 1.22)),
                                     xf.ln(ry * (1.0 if style == 1 else 1.25)), ang0, lk["hair"], u)
        # neck and clothes: follow translation/roll/scale but not yaw
        P["neck"] = capsule(L("neck"), xf.pt(cx + 0 * yaw, cy + 0.6 * ry + 0 * yaw),
                            xf.pt(cx + 0 * yaw, cy + 1.6 * ry + 0 * yaw),
                            xf.ln(sh["neck_r"] * rx), xf.ln(sh["neck_r"] * rx * 1.1), lk["neck"], u)
        P["clothes"] = ellipse(L("clothes"), xf.pt(cx + 0 * yaw, cy + 2.0 * ry + 0 * yaw),
                               xf.ln(sh["shoulders"] * rx), xf.ln(0.9 * ry), ang0, lk["clothes"], u)
        for side, sgn in (("l", -1.0), ("r", 1.0)):
            x = sgn * (rx + 0.45 * sh["ear_rx"] * rx)
            c, _ = proj(x, sh["ear_y"] * ry, z=-0.3 * rz)
            pts[f"{side}_ear"] = c
            P[f"{side}_ear"] = ellipse(L(f"{side}_ear"), c, xf.ln(sh["ear_rx"] * rx * np.ones(T)),
                                       xf.ln(sh["ear_ry"] * ry), ang0, lk["ear"], u)
        head_c = xf.pt(cx + 0 * yaw, cy + 0 * yaw)
        P["head"] = ellipse(L("head"), head_c, xf.ln(rx), xf.ln(ry), ang0, lk["skin"], u)
        pts["chin"], _ = proj(0.0, 0.86 * ry)
        # eyes
        ey = sh["eye_y"] * ry
        erx, ery = sh["eye_rx"] * rx, sh["eye_ry"] * sh["eye_rx"] * rx
        for side, sgn in (("l", -1.0), ("r", 1.0)):
            ex = sgn * sh["eye_x"] * rx
            c, fx = proj(ex, ey)
            pts[f"{side}_eye"] = c
            h = np.maximum(ery * A["eye_open"], 0.02 * erx)
            sclera = ellipse(L(f"{side}_eye"), c, xf.ln(erx * fx), xf.ln(h), ang0, lk["sclera"], u)
            g = np.stack([A["gaze_x"] * 0.45 * erx * fx, A["gaze_y"] * 0.3 * ery], -1)
            ic = c + xf.ln(1.0)[:, None] * _rot(g, xf.rot)
            ir = sh["iris"] * ery
            iris = ellipse(L(f"{side}_eye"), ic, xf.ln(ir * fx), xf.ln(ir), ang0, lk["iris"], u,
                           clip=sclera)
            pupil = ellipse(L(f"{side}_eye"), ic, xf.ln(ir * sh["pupil"] * fx),
                            xf.ln(ir * sh["pupil"]), ang0, lk["pupil"], u, clip=sclera)
            up = _rot(np.stack([np.zeros(T), -h], -1), xf.rot)
            side_v = _rot(np.stack([erx * fx * 1.05, np.zeros(T)], -1), xf.rot)
            lid_c = c + xf.ln(1.0)[:, None] * up * 0.9
            w = xf.ln(1.0)[:, None] * side_v
            lr = xf.ln(0.012 + 0 * yaw)
            lid = capsule(L(f"{side}_eye"), lid_c - w, lid_c + w, lr, lr, lk["lid"], u)
            P[f"{side}_eye"] = [sclera, iris, pupil, lid]
            # brow: inner end rises with the brow raise
            raise_ = A[f"{side}_brow"]
            by = ey - sh["brow_y"] * ry - 0.06 * ry * raise_
            bl = sh["brow_len"] * rx
            c, fx = proj(ex, by)
            pts[f"{side}_brow"] = c
            tilt = -sgn * 0.25 * (raise_ - 0.3)
            d = np.stack([bl * fx * np.cos(tilt), bl * np.sin(tilt)], -1)
            d = xf.ln(1.0)[:, None] * _rot(d, xf.rot)
            br = xf.ln(sh["brow_r"] + 0 * yaw)
            P[f"{side}_brow"] = capsule(L(f"{side}_brow"), c - d, c + d, br, br * 0.8,
                                        lk["brow"], u)
        # nose: bridge between the eyes to a protruding tip
        nb, _ = proj(0.0, ey + 0.3 * ery, dz=0.02 * rz)
        nt, _ = proj(0.0, ey + sh["nose_len"] * ry, dz=0.25 * rz)
        pts["nose"] = nt
        nr = sh["nose_r"] * rx
        P["nose"] = capsule(L("nose"), nb, nt, xf.ln(0.45 * nr + 0 * yaw), xf.ln(nr + 0 * yaw),
                            lk["nose"], u)
        # mouth: lips ellipse with a dark opening
        mc, fx = proj(0.0, sh["mouth_y"] * ry)
        mw = sh["mouth_w"] * rx * (1.0 + 0.15 * A["mouth_width"]) * fx
        open_ = A["mouth_open"] * 0.13 * ry
        lip = sh["lip"] * ry
        lips = ellipse(L("mouth"), mc, xf.ln(mw), xf.ln(open_ + lip), ang0, lk["lips"], u)
        inner = ellipse(L("mouth"), mc, xf.ln(mw * 0.8), xf.ln(np.maximum(open_, 1e-3 * ry)), ang0,
                        lk["mouth_in"], u)
        P["mouth"] = [lips, inner]
        s1 = xf.ln(1.0)[:, None]
        for name, v in (("mouth_l", (-0.8 * mw, 0 * mw)), ("mouth_r", (0.8 * mw, 0 * mw)),
                        ("upper_lip", (0 * mw, -(open_ + 0.5 * lip))),
                        ("lower_lip", (0 * mw, open_ + 0.5 * lip))):
            pts[name] = mc + s1 * _rot(np.stack(v, -1), xf.rot)
        if lk["fringe"]:
            c, _ = proj(0.0, -0.85 * ry, z=0.35 * rz)
            P["fringe"] = ellipse(L("hair"), c, xf.ln(rx * 1.06 + 0 * yaw),
                                  xf.ln(ry * lk["fringe_depth"] + 0 * yaw), ang0, lk["hair"], u,
                                  clip=P["head"])
        order = ["hair_back", "neck", "clothes", "l_ear", "r_ear", "head", "l_eye", "r_eye",
                 "l_brow", "r_brow", "nose", "mouth", "fringe"]
        prims = []
        for o in order:
            if o in P:
                prims.extend(P[o] if isinstance(P[o], list) else [P[o]])
        J = np.stack([pts[n] for n in self.joints], 1)
        return J, prims, lk["background"]


def _rot(v, a):
    """Rotate (T, 2) vectors by per-frame angles a (image coords)."""
    c, s = np.cos(a), np.sin(a)
    return np.stack([c * v[:, 0] - s * v[:, 1], s * v[:, 0] + c * v[:, 1]], -1)


KINDS = {k.name: k() for k in (Humanoid, Quadruped, Face)}
