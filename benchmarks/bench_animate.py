"""Speed and memory of `marionet animate` with the vox-256 architecture at 256x256.

    .venv/bin/python -m benchmarks.bench_animate [--frames 100 1000] [--batch-size 4]

For each length it writes a generated driving mp4, runs `marionet animate` in a fresh process
(random vox-256 weights: speed and memory do not depend on the values) and reports frames/s and
the peak resident memory of that process. Flat memory means the 1000-frame peak is close to the
100-frame one.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from media import moving_frames, write_mp4  # noqa: E402


def run_one(frames: int, batch_size: int, workdir: Path) -> dict:
    driving = workdir / f"driving-{frames}.mp4"
    clip = moving_frames(50, 256)
    write_mp4(driving, np.concatenate([clip] * (frames // 50 + 1))[:frames], fps=25)
    source = workdir / "source.png"
    from PIL import Image

    Image.fromarray(moving_frames(1, 256, seed=3)[0]).save(source)
    out = workdir / f"out-{frames}.mp4"
    cmd = [sys.executable, "-W", "ignore", "-m", "marionet", "animate", "--config", "vox-256", "--source", str(source),
           "--driving", str(driving), "--output", str(out), "--batch-size", str(batch_size)]
    # Each run is its own child, so RUSAGE_CHILDREN's max is this run's peak once we wait on it alone.
    code = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
            f"r = subprocess.run({cmd!r}, capture_output=True, text=True); dt = time.perf_counter() - t; "
            "print(r.returncode, dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
            "sys.stderr.write(r.stderr[-2000:])")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    rc, seconds, rss_kb = res.stdout.split()
    if rc != "0":
        raise SystemExit(f"animate failed: {res.stderr}")
    return {"frames": frames, "seconds": round(float(seconds), 1), "frames_per_s": round(frames / float(seconds), 2),
            "peak_rss_mb": round(int(rss_kb) / 1024)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--batch-size", type=int, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.frames:
            print(json.dumps(run_one(n, args.batch_size, Path(tmp))), flush=True)


if __name__ == "__main__":
    main()
