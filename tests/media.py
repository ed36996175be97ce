"""Small media files for tests, generated on the fly (nothing downloaded)."""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np


def moving_frames(n: int = 8, size: int = 64, seed: int = 0) -> np.ndarray:
    """(n, size, size, 3) uint8: a gradient background with two smoothly moving blobs."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    colours = rng.uniform(0.2, 1.0, size=(2, 3))
    out = []
    for t in range(n):
        frame = np.stack([x, y, 0.5 * np.ones_like(x)], -1) * 0.6
        for k, c in enumerate(colours):
            cx, cy = 0.5 + 0.25 * np.cos(t / 3 + k * 2), 0.5 + 0.25 * np.sin(t / 3 + k * 2)
            frame += c * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 0.01)[..., None]
        out.append(np.clip(frame, 0, 1))
    return (np.stack(out) * 255).round().astype(np.uint8)


def write_mp4(path, frames: np.ndarray, fps: int = 10, audio: bool = False) -> None:
    """H.264 mp4 (optionally with an AAC sine track as long as the video)."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.height, vs.width = frames.shape[1:3]
        vs.pix_fmt = "yuv420p"
        if audio:
            rate = 44100
            aus = out.add_stream("aac", rate=rate)
            aus.layout = "mono"
            samples = np.sin(2 * np.pi * 440 * np.arange(int(rate * len(frames) / fps)) / rate).astype(np.float32)
            pts = 0
            for chunk in np.array_split(samples, max(1, len(samples) // 1024)):
                af = av.AudioFrame.from_ndarray(chunk[None], format="fltp", layout="mono")
                af.sample_rate, af.pts, af.time_base = rate, pts, Fraction(1, rate)
                pts += chunk.size
                for p in aus.encode(af):
                    out.mux(p)
            for p in aus.encode():
                out.mux(p)
        for f in frames:
            for p in vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)


def write_audio_only_mp4(path, seconds: float = 0.5) -> None:
    """A valid mp4 with an audio track and no video frames."""
    rate = 44100
    with av.open(str(path), "w") as out:
        aus = out.add_stream("aac", rate=rate)
        aus.layout = "mono"
        samples = np.zeros(int(rate * seconds), np.float32)
        af = av.AudioFrame.from_ndarray(samples[None], format="fltp", layout="mono")
        af.sample_rate, af.pts, af.time_base = rate, 0, Fraction(1, rate)
        for p in aus.encode(af):
            out.mux(p)
        for p in aus.encode():
            out.mux(p)
