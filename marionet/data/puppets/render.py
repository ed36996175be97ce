"""Vectorised, deterministic rasteriser for puppets.

A puppet is a back-to-front list of primitives (:class:`Prim`): capsules with a linearly varying
radius (limbs, bodies) and ellipses (heads, eyes). Each primitive is rasterised for all frames of a
chunk at once, inside a per-frame window just large enough to hold it, with analytic anti-aliasing:
a pixel's coverage is ``clip(0.5 - d, 0, 1)`` where ``d`` is the signed distance (in pixels) from the
pixel centre to the shape's edge.

Determinism: the geometry arrives quantised to 1/4096 px (see :func:`quantize`), and the per-pixel
path uses only IEEE-exact float32 operations (+ - * / sqrt floor min max abs) in a fixed order, so
the output bytes do not depend on the machine, the SIMD level or the number of threads. Textures are
built from triangle waves (``floor``), never from sin/cos/exp.
"""
from __future__ import annotations

import math

import numpy as np

PLAIN, STRIPES, DOTS, CHECKER, GRADIENT = range(5)

_Q = 4096.0


def quantize(x) -> np.ndarray:
    """Round to a 1/4096 grid (float64). Values from sin/cos may differ by an ulp between machines;
    after quantisation they agree (a tie would need a 1e-12 coincidence)."""
    return np.round(np.asarray(x, np.float64) * _Q) / _Q


def _q32(x) -> np.ndarray:
    return quantize(x).astype(np.float32)


def _tri(x: np.ndarray) -> np.ndarray:
    """Triangle wave with period 1: 1 at integers, 0 at half-integers (in place on a temporary)."""
    y = x - np.floor(x)
    y -= 0.5
    np.abs(y, out=y)
    y *= 2.0
    return y


def _clip01(x: np.ndarray) -> np.ndarray:
    np.maximum(x, 0.0, out=x)
    np.minimum(x, 1.0, out=x)
    return x


class Fill:
    """How a primitive is painted: two colours mixed by a texture, optional shading and outline.

    ``period`` is in puppet units (fraction of the image at scale 1), so a texture looks the same at
    every resolution; ``angle`` is relative to the primitive's own axis, so it moves with the part.
    """

    __slots__ = ("c1", "c2", "texture", "period", "cos", "sin", "duty", "phase", "shade", "outline",
                 "outline_color")

    def __init__(self, c1, c2=None, texture=PLAIN, period=0.1, angle=0.0, duty=0.5, phase=0.0,
                 shade=0.0, outline=0.0, outline_color=None):
        self.c1 = _q32(c1)
        self.c2 = self.c1 if c2 is None else _q32(c2)
        self.texture = int(texture) if c2 is not None else PLAIN
        self.period = float(period)
        self.cos = float(quantize(math.cos(angle)))
        self.sin = float(quantize(math.sin(angle)))
        self.duty = float(quantize(duty))
        self.phase = float(quantize(phase))
        self.shade = float(quantize(shade))
        self.outline = float(outline)
        self.outline_color = _q32(outline_color if outline_color is not None else self.c1 * 0.35)

    def colors(self) -> list[np.ndarray]:
        out = [self.c1, self.c2]
        if self.outline > 0:
            out.append(self.outline_color)
        return out

    def with_colors(self, c1, c2=None) -> "Fill":
        f = Fill(c1, c2 if c2 is not None else c1)
        for k in ("texture", "period", "cos", "sin", "duty", "phase", "shade", "outline",
                  "outline_color"):
            setattr(f, k, getattr(self, k))
        if c2 is None:
            f.texture = PLAIN
        return f


CAPSULE, ELLIPSE = 0, 1


class Prim:
    """One primitive over T frames. ``geom`` (T, 6) in pixels:

    - capsule: ax, ay, bx, by, ra, rb (radius ra at A, rb at B, linear in between)
    - ellipse: cx, cy, rx, ry, cos(angle), sin(angle) of the ellipse's x axis
    ``unit`` (T,) is the pixel length of one puppet unit (texture scale); ``clip`` an optional ellipse
    geometry (T, 6) the primitive is intersected with (pupils inside eyes).
    """

    __slots__ = ("shape", "label", "geom", "fill", "unit", "clip")

    def __init__(self, shape, label, geom, fill, unit, clip=None):
        self.shape = shape
        self.label = int(label)
        self.geom = quantize(geom)
        self.fill = fill
        self.unit = quantize(unit)
        self.clip = None if clip is None else quantize(clip)

    def bbox(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        g = self.geom
        if self.shape == CAPSULE:
            r = np.maximum(g[:, 4], g[:, 5])
            x0, x1 = np.minimum(g[:, 0], g[:, 2]) - r, np.maximum(g[:, 0], g[:, 2]) + r
            y0, y1 = np.minimum(g[:, 1], g[:, 3]) - r, np.maximum(g[:, 1], g[:, 3]) + r
        else:
            r = np.maximum(g[:, 2], g[:, 3])
            x0, x1, y0, y1 = g[:, 0] - r, g[:, 0] + r, g[:, 1] - r, g[:, 1] + r
        return x0 - 1.0, x1 + 1.0, y0 - 1.0, y1 + 1.0


def capsule(label, a, b, ra, rb, fill, unit) -> Prim:
    """a, b: (T, 2) pixel points; ra, rb: (T,) or scalars in pixels."""
    T = len(a)
    geom = np.stack([a[:, 0], a[:, 1], b[:, 0], b[:, 1],
                     np.broadcast_to(ra, (T,)), np.broadcast_to(rb, (T,))], 1)
    return Prim(CAPSULE, label, geom, fill, unit)


def ellipse(label, c, rx, ry, angle, fill, unit, clip=None) -> Prim:
    T = len(c)
    angle = np.broadcast_to(angle, (T,))
    geom = np.stack([c[:, 0], c[:, 1], np.broadcast_to(rx, (T,)), np.broadcast_to(ry, (T,)),
                     np.cos(angle), np.sin(angle)], 1)
    return Prim(ELLIPSE, label, geom, fill, unit, clip=None if clip is None else clip.geom)


class Background:
    """A full-frame pattern in image units (fraction of the image side), optionally panning."""

    def __init__(self, c1, c2, c3, pattern=PLAIN, period=0.2, angle=0.0, duty=0.5, gradient=0.0,
                 pan=(0.0, 0.0), waves=()):
        self.c1, self.c2, self.c3 = _q32(c1), _q32(c2), _q32(c3)
        self.pattern = int(pattern)
        self.period = float(quantize(period))
        self.cos, self.sin = float(quantize(math.cos(angle))), float(quantize(math.sin(angle)))
        self.duty = float(quantize(duty))
        self.gradient = float(quantize(gradient))
        self.pan = (float(quantize(pan[0])), float(quantize(pan[1])))
        # "blobs": (cos, sin, 1/period, phase) of three triangle waves
        self.waves = [tuple(float(quantize(v)) for v in w) for w in waves]

    def colors(self) -> list[np.ndarray]:
        return [self.c1, self.c2, self.c3]

    def render(self, t0: int, t1: int, size: int) -> np.ndarray:
        """(3, n, S, S) float32 for frames t0..t1-1."""
        S = size
        n = t1 - t0
        g = ((np.arange(S, dtype=np.float64) + 0.5) / S).astype(np.float32)
        moving = self.pan != (0.0, 0.0) and self.pattern != PLAIN
        if moving:
            t = np.arange(t0, t1, dtype=np.float64)
            ox = _q32(self.pan[0] * t).reshape(n, 1, 1)
            oy = _q32(self.pan[1] * t).reshape(n, 1, 1)
            x = g.reshape(1, 1, S) + ox
            y = g.reshape(1, S, 1) + oy
        else:
            x, y = g.reshape(1, 1, S), g.reshape(1, S, 1)
        per_px = np.float32(self.period * S)
        inv = np.float32(1.0 / self.period)
        c, s = np.float32(self.cos), np.float32(self.sin)
        if self.pattern == PLAIN:
            v = None
        elif self.pattern == STRIPES:
            v = _tri((x * c + y * s) * inv)
            v -= np.float32(self.duty)
            v *= per_px * np.float32(0.5)
            v += np.float32(0.5)
            _clip01(v)
        elif self.pattern == DOTS:
            su = (x * c + y * s) * inv
            sv = (y * c - x * s) * inv
            su -= np.floor(su)
            su -= np.float32(0.5)
            sv -= np.floor(sv)
            sv -= np.float32(0.5)
            d = np.sqrt(su * su + sv * sv)
            v = (np.float32(self.duty * 0.5) - d) * per_px + np.float32(0.5)
            _clip01(v)
        elif self.pattern == CHECKER:
            a = _tri((x * c + y * s) * inv) - np.float32(0.5)
            b = _tri((y * c - x * s) * inv) - np.float32(0.5)
            v = a * b * (per_px * np.float32(2.0)) + np.float32(0.5)
            _clip01(v)
        else:  # blobs: mean of three triangle waves, soft
            v = None
            for wc, ws, wi, wp in self.waves:
                w = _tri((x * np.float32(wc) + y * np.float32(ws)) * np.float32(wi) + np.float32(wp))
                v = w if v is None else v + w
            v *= np.float32(1.0 / max(1, len(self.waves)))
        out = np.empty((3, n, S, S), np.float32)
        yy = g.reshape(1, S, 1)
        for k in range(3):
            ch = np.full((1, 1, 1), self.c1[k], np.float32) if v is None else \
                self.c1[k] + v * (self.c2[k] - self.c1[k])
            if self.gradient:
                ch = ch + (yy * np.float32(self.gradient)) * (self.c3[k] - ch)
            out[k] = ch
        return out


def rasterize(prims: list[Prim], background: Background, T: int, size: int,
              chunk_pixels: int = 1 << 18) -> tuple[np.ndarray, np.ndarray]:
    """Render T frames: returns (frames uint8 (T,S,S,3), labels uint8 (T,S,S)); label 0 = background,
    otherwise the label of the top-most primitive covering at least half of the pixel."""
    S = size
    frames = np.empty((T, S, S, 3), np.uint8)
    labels = np.empty((T, S, S), np.uint8)
    windows = [_window(p, S) for p in prims]
    tc = max(1, chunk_pixels // (S * S))
    for t0 in range(0, T, tc):
        t1 = min(T, t0 + tc)
        n = t1 - t0
        canvas = background.render(t0, t1, S).reshape(3, n * S * S)
        lab = np.zeros(n * S * S, np.uint8)
        for p, win in zip(prims, windows):
            _draw(p, win, t0, t1, canvas, lab, S)
        canvas *= np.float32(255.0)
        canvas += np.float32(0.5)
        np.floor(canvas, out=canvas)
        np.clip(canvas, 0, 255, out=canvas)
        frames[t0:t1] = canvas.reshape(3, n, S, S).transpose(1, 2, 3, 0).astype(np.uint8)
        labels[t0:t1] = lab.reshape(n, S, S)
    return frames, labels


def _window(p: Prim, S: int):
    x0, x1, y0, y1 = p.bbox()
    w = int(min(S, math.ceil(float(np.max(x1 - x0))) + 1))
    h = int(min(S, math.ceil(float(np.max(y1 - y0))) + 1))
    xs = np.clip(np.floor(x0), 0, S - w).astype(np.int64)
    ys = np.clip(np.floor(y0), 0, S - h).astype(np.int64)
    return xs, ys, w, h


def _ellipse_sd(g, xs, ys):
    """Approximate signed distance to an ellipse (exact on the boundary's first order)."""
    cx, cy, rx, ry, c, s = (g[:, k].reshape(-1, 1, 1) for k in range(6))
    dx = xs - cx
    dy = ys - cy
    qx = dx * c + dy * s
    qy = dy * c - dx * s
    irx, iry = np.float32(1.0) / rx, np.float32(1.0) / ry
    a = qx * irx
    b = qy * iry
    k0 = np.sqrt(a * a + b * b)
    a *= irx
    b *= iry
    k1 = np.sqrt(a * a + b * b)
    rmin = np.minimum(rx, ry)
    eps = np.float32(1e-3)
    k1 += eps / rmin
    sd = k0 - np.float32(1.0)
    sd *= k0 + eps
    sd /= k1
    return sd, qx, qy, k0


def _draw(p: Prim, win, t0: int, t1: int, canvas: np.ndarray, lab: np.ndarray, S: int):
    x0s, y0s, w, h = win
    n = t1 - t0
    x0 = x0s[t0:t1].reshape(n, 1, 1)
    y0 = y0s[t0:t1].reshape(n, 1, 1)
    xs = (x0 + np.arange(w).reshape(1, 1, w)).astype(np.float32) + np.float32(0.5)
    ys = (y0 + np.arange(h).reshape(1, h, 1)).astype(np.float32) + np.float32(0.5)
    g = p.geom[t0:t1].astype(np.float32)
    f = p.fill
    if p.shape == CAPSULE:
        ax, ay, bx, by, ra, rb = (g[:, k].reshape(n, 1, 1) for k in range(6))
        ex, ey = bx - ax, by - ay
        L = np.sqrt(ex * ex + ey * ey)
        L = np.maximum(L, np.float32(1e-3))
        ex, ey = ex / L, ey / L
        kr = (rb - ra) / L
        dx = xs - ax
        dy = ys - ay
        u = dx * ex + dy * ey
        v = dy * ex - dx * ey
        uc = np.minimum(np.maximum(u, np.float32(0.0)), L)
        res = u - uc
        res *= res
        v2 = v * v
        res += v2
        sd = np.sqrt(res)
        r = uc * kr
        r += ra
        sd -= r
        if f.shade:
            r *= r
            rr = v2 / r
            np.minimum(rr, np.float32(1.0), out=rr)
        gg = uc / L if f.texture == GRADIENT else None
    else:
        sd, u, v, k0 = _ellipse_sd(g, xs, ys)
        if f.shade:
            rr = k0 * k0
            np.minimum(rr, np.float32(1.0), out=rr)
        if f.texture == GRADIENT:
            gg = v * (np.float32(0.5) / g[:, 3].reshape(n, 1, 1)) + np.float32(0.5)
            _clip01(gg)
        else:
            gg = None
    if p.clip is not None:
        sd2 = _ellipse_sd(p.clip[t0:t1].astype(np.float32), xs, ys)[0]
        np.maximum(sd, sd2, out=sd)

    alpha = np.float32(0.5) - sd
    _clip01(alpha)

    tex = None
    if f.texture != PLAIN:
        per = (p.unit[t0:t1] * f.period).astype(np.float32).reshape(n, 1, 1)
        inv = np.float32(1.0) / per
        c, s = np.float32(f.cos), np.float32(f.sin)
        if f.texture == STRIPES:
            tex = _tri((u * c + v * s) * inv + np.float32(f.phase))
            tex -= np.float32(f.duty)
            tex *= per * np.float32(0.5)
            tex += np.float32(0.5)
            _clip01(tex)
        elif f.texture == DOTS:
            su = (u * c + v * s) * inv + np.float32(f.phase)
            sv = (v * c - u * s) * inv + np.float32(f.phase)
            su -= np.floor(su)
            su -= np.float32(0.5)
            sv -= np.floor(sv)
            sv -= np.float32(0.5)
            su *= su
            sv *= sv
            su += sv
            d = np.sqrt(su)
            tex = (np.float32(f.duty * 0.5) - d) * per + np.float32(0.5)
            _clip01(tex)
        elif f.texture == CHECKER:
            a = _tri((u * c + v * s) * inv + np.float32(f.phase))
            a -= np.float32(0.5)
            b = _tri((v * c - u * s) * inv)
            b -= np.float32(0.5)
            a *= b
            a *= per * np.float32(2.0)
            a += np.float32(0.5)
            tex = _clip01(a)
        else:
            tex = gg

    inner = None
    if f.outline > 0:
        ow = (p.unit[t0:t1] * f.outline).astype(np.float32).reshape(n, 1, 1)
        inner = np.float32(0.5) - ow - sd
        _clip01(inner)
    if f.shade:
        shade = np.float32(1.0) - np.float32(f.shade) * rr

    idx = ((np.arange(t0, t1) - t0).reshape(n, 1, 1) * (S * S)
           + (y0 + np.arange(h).reshape(1, h, 1)) * S + (x0 + np.arange(w).reshape(1, 1, w)))
    idx = idx.reshape(-1)
    a = alpha.reshape(-1)
    for k in range(3):
        if tex is None:
            col = np.float32(f.c1[k])
        else:
            col = tex * np.float32(f.c2[k] - f.c1[k])
            col += np.float32(f.c1[k])
        if f.shade:
            col = col * shade
        if inner is not None:
            oc = np.float32(f.outline_color[k])
            col = (col - oc) * inner
            col += oc
        dst = canvas[k]
        bg = dst[idx]
        col = np.broadcast_to(col, alpha.shape).reshape(-1) - bg
        col *= a
        col += bg
        dst[idx] = col
    lab[idx[a >= np.float32(0.5)]] = p.label
