"""Rendering speed of the synthetic puppets (issue #3 target: >= 2000 frames/s of 64x64 humanoid).

    .venv/bin/python -m benchmarks.bench_puppets [--size 64] [--frames 64] [--videos 30] [--repeat 3]

Measures `render_video` (motion sampling, rigging, rasterising and ground truth: everything but
file writing) in this single process, single-threaded numpy, and reports the best of --repeat runs
(the machine is shared: frames per CPU second of this process is the steadier number; the
wall-clock rate is what an unloaded core gives when the two agree) plus, for reference, the rate with PNG writing (`synthesize`).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from marionet.data.puppets import KINDS, render_video, synthesize


def rate(kind: str, size: int, frames: int, videos: int, repeat: int) -> tuple[float, float]:
    """-> (frames per wall-clock second, frames per CPU second of this process), best run."""
    render_video(kind, size, frames, 0)  # warm-up
    wall = cpu = float("inf")
    for r in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(videos):
            render_video(kind, size, frames, 1000 * r + i)
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return videos * frames / wall, videos * frames / cpu


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--frames", type=int, default=64)
    p.add_argument("--videos", type=int, default=30)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--kinds", nargs="+", default=list(KINDS))
    a = p.parse_args(argv)
    for kind in a.kinds:
        fps, cpu = rate(kind, a.size, a.frames, a.videos, a.repeat)
        line = (f"{kind:10s} {a.size}x{a.size}: {fps:7.0f} frames/s wall clock, {cpu:7.0f} frames "
                f"per CPU second, rendered with ground truth")
        if kind == "humanoid" and a.size == 64:
            line += "  (target >= 2000: " + ("met" if fps >= 2000 else "NOT met on the wall clock") + ")"
        print(line)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        synthesize(Path(tmp) / "ds", videos=a.videos, frames=a.frames, size=a.size, kind="humanoid")
        dt = time.perf_counter() - t0
    print(f"synthesize humanoid {a.size}x{a.size} with PNG frames + ground-truth files: "
          f"{a.videos * a.frames / dt:.0f} frames/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
