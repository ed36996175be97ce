"""``marionet evaluate``: the papers' metrics between real and generated videos, with a report.

Inputs: two videos (files or folders of frames) of the same length, or two folders of videos matched
by name (the layout ``marionet reconstruct`` writes: OUT/<video>/ frames, against the dataset's
test/ split or any folder of the real videos). A generated frame of another size is resized to the
real frame's, so distances are in pixels of the real frame.

Outputs in OUT: ``metrics.json`` (means under ``l1``, ``psnr``, ``ssim``, ``akd``, ``mkr``, ``aed`` --
a key is absent when its metric does not apply; ``lpips`` and ``fid`` only from weights the user
gives -- and ``per_frame`` lists), ``report.md`` (a table),
``curves.png`` (per-frame curves) and ``worst.png`` (real | generated for the worst frames by L1).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from marionet.data.frames import frames_to_tensor, tensor_to_frames
from marionet.data.video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, open_video, to_uint8
from marionet.errors import MarionetError
from marionet.landmarks import DlibFaces
from marionet.evaluate.metrics import IdentityDistance, KeypointAgreement, KeypointDetector, pixel_metrics
from marionet.files import Staged

WORST = 6  # frames shown in worst.png


def video_pairs(real, generated) -> list[tuple[str, Path, Path]]:
    """[(name, real video, generated video)]: one pair, or the videos of two folders matched by name."""
    real, generated = Path(real), Path(generated)
    for path in (real, generated):
        if not path.exists():
            raise MarionetError(f"{path}: no such file or folder")
    if _is_video(generated):
        return [(generated.stem, real, generated)]
    real_dir = real / "test" if (real / "test").is_dir() else real
    reals = {_stem(p): p for p in real_dir.iterdir() if _is_video(p)}
    # reconstruct --pairs names A in B's motion "A~B": A's own video is the real one
    pairs = [(_stem(g), reals.get(_stem(g).split("~")[0]), g) for g in sorted(generated.iterdir()) if _is_video(g)]
    missing = [name for name, r, _ in pairs if r is None]
    if missing:
        raise MarionetError(f"{real_dir}: no real video named {missing[0]!r} (generated in {generated})")
    if not pairs:
        raise MarionetError(f"{generated}: no generated videos (a video file or a folder of frames, or a folder "
                            "of those)")
    return pairs


def _stem(path: Path) -> str:
    return path.name.removesuffix(path.suffix) if path.is_file() else path.name


def _is_video(path: Path) -> bool:
    """A video file, or a folder holding image frames (not a folder of videos)."""
    if path.name.startswith("."):
        return False
    if path.is_file():
        return path.suffix.lower() in VIDEO_EXTENSIONS
    if not path.is_dir() or (path / "metrics.json").exists():   # a report folder, not frames
        return False
    return any(p.suffix.lower() in IMAGE_EXTENSIONS for p in path.iterdir())


def _read(path: Path) -> np.ndarray:
    with open_video(path) as reader:
        return np.stack(list(reader))                                         # (T, H, W, 3) uint8


def evaluate(real, generated, out_dir, kind: str | None = None, progress: bool = True, lpips=None,
             fid=None) -> dict:
    """Compare real and generated videos; write the report to ``out_dir``; return the metrics.
    ``lpips``: (torchvision vgg16 weights, LPIPS heads) files; ``fid``: pytorch-fid Inception weights."""
    from tqdm import tqdm

    from marionet.evaluate.learned import LPIPS, FIDInception, frechet_distance

    pairs = video_pairs(real, generated)
    perceptual = LPIPS(*lpips) if lpips else None
    inception = FIDInception(fid) if fid else None
    features: tuple[list, list] = ([], [])
    faces = DlibFaces(descriptors=True) if kind == "face" else None   # one detection per frame for AKD and AED
    keypoints = KeypointAgreement(KeypointDetector(kind, faces)) if kind else None
    identity = IdentityDistance(faces) if kind == "face" else None
    per_frame: dict[str, list] = {k: [] for k in ("video", "frame", "l1", "psnr", "ssim")}
    if keypoints:
        per_frame.update(akd=[], mkr=[])
    if identity:
        per_frame["aed"] = []
    if perceptual:
        per_frame["lpips"] = []
    worst: list[tuple[float, np.ndarray, np.ndarray]] = []
    for name, real_path, fake_path in tqdm(pairs, unit="video", desc="evaluate", disable=None if progress else True):
        real_frames, fake_frames = _read(real_path), _read(fake_path)
        if len(real_frames) != len(fake_frames):
            raise MarionetError(f"{fake_path}: {len(fake_frames)} frames, but {real_path} has {len(real_frames)}")
        if fake_frames.shape[1:3] != real_frames.shape[1:3]:   # compare in the real frame's pixels
            fake_frames = to_uint8(tensor_to_frames(frames_to_tensor(fake_frames, real_frames.shape[1:3])))
        real_f, fake_f = real_frames.astype(np.float32) / 255, fake_frames.astype(np.float32) / 255
        pixels = pixel_metrics(real_f, fake_f)
        per_frame["video"] += [name] * len(real_f)
        per_frame["frame"] += list(range(len(real_f)))
        for key, values in pixels.items():
            per_frame[key] += values.tolist()
        for start in range(0, len(real_frames), 4):  # in small batches: the face memory then serves AED
            fakes, reals = fake_frames[start:start + 4], real_frames[start:start + 4]
            if keypoints:
                akd, mkr = keypoints.add(fakes, reals)
                per_frame["akd"] += akd.tolist()
                per_frame["mkr"] += mkr.tolist()
            if identity:
                per_frame["aed"] += identity(fakes, reals).tolist()
            if perceptual or inception:
                fake_t, real_t = frames_to_tensor(fakes), frames_to_tensor(reals)
                if perceptual:
                    per_frame["lpips"] += perceptual(fake_t, real_t).tolist()
                if inception:
                    features[0].append(inception(real_t).numpy())
                    features[1].append(inception(fake_t).numpy())
        worst = sorted(worst + [(float(v), r, f) for v, r, f in zip(pixels["l1"], real_frames, fake_frames)],
                       key=lambda item: -item[0])[:WORST]
    metrics = _summary(per_frame, keypoints, kind)
    if inception:
        metrics["fid"] = frechet_distance(np.concatenate(features[0]), np.concatenate(features[1]))
    metrics["per_frame"] = {k: [_json_number(v) for v in values] if k != "video" else values
                            for k, values in per_frame.items()}
    _write_report(Path(out_dir), metrics, per_frame, worst)
    return metrics


def _summary(per_frame: dict, keypoints, kind) -> dict:
    metrics = {"l1": float(np.mean(per_frame["l1"])), "psnr": _finite_mean(per_frame["psnr"]),
               "ssim": float(np.mean(per_frame["ssim"])), "frames": len(per_frame["l1"]),
               "videos": len(set(per_frame["video"])), "kind": kind}
    if keypoints:
        metrics.update(keypoints.result())
        akd = np.array(per_frame["akd"], float)
        metrics["frames_without_keypoints"] = int(np.isnan(akd).sum())   # no keypoint found in both frames
    if "lpips" in per_frame:
        metrics["lpips"] = float(np.mean(per_frame["lpips"]))
    if "aed" in per_frame:
        aed = np.array(per_frame["aed"], float)
        metrics["frames_without_face"] = int(np.isnan(aed).sum())
        if (~np.isnan(aed)).any():
            metrics["aed"] = float(np.nanmean(aed))
    return metrics


def _finite_mean(values) -> float:
    """Mean PSNR over frames that differ (identical frames have infinite PSNR); inf when all are identical."""
    values = np.asarray(values, float)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else float("inf")


def _json_number(value):
    value = float(value)
    return None if np.isnan(value) else ("inf" if np.isinf(value) else value)


def _write_report(out_dir: Path, metrics: dict, per_frame: dict, worst) -> None:
    with Staged(out_dir, directory=True) as tmp:
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, default=_json_number) + "\n")
        (tmp / "report.md").write_text(_markdown(metrics))
        _plot_curves(tmp / "curves.png", per_frame)
        _strip(tmp / "worst.png", worst)


def _markdown(metrics: dict) -> str:
    rows = [("L1", "l1", "mean absolute difference, [0, 1]"), ("PSNR (dB)", "psnr", "peak 1, frames that differ"),
            ("SSIM", "ssim", "scikit-image, colour channels"),
            ("AKD (px)", "akd", "keypoints found in both frames, pixels of the real frame"),
            ("MKR", "mkr", "keypoints of the real frame not found in the generated one"),
            ("AED", "aed", "dlib face-descriptor distance (same person under ~0.6)"),
            ("LPIPS", "lpips", "VGG16 LPIPS, per frame"), ("FID", "fid", "pytorch-fid Inception, all frames")]
    lines = [f"# Evaluation: {metrics['videos']} video(s), {metrics['frames']} frames, kind {metrics['kind']}", "",
             "| metric | value | definition |", "| --- | --- | --- |"]
    lines += [f"| {label} | {metrics[key]:.4g} | {about} |" for label, key, about in rows if key in metrics]
    notes = []
    if metrics["kind"] is None:
        notes.append("No --kind: keypoint metrics (AKD, MKR) not computed.")
    missing = [name for name, key in (("LPIPS", "lpips"), ("FID", "fid")) if key not in metrics]
    if missing:
        notes.append(f"{' and '.join(missing)} not computed: they need network weights that cannot ship with "
                     "marionet (marionet evaluate --lpips VGG16 HEADS, --fid INCEPTION).")
    if metrics["kind"] == "body":
        notes.append("AED for bodies needs a person re-identification network, which is not available offline.")
    if metrics.get("frames_without_keypoints"):
        notes.append(f"{metrics['frames_without_keypoints']} frame(s) with no keypoint found in both frames "
                     "(left out of AKD; counted in MKR when the real frame had them).")
    if metrics.get("frames_without_face"):
        notes.append(f"{metrics['frames_without_face']} frame(s) without a face in the real or generated frame "
                     "(left out of AED).")
    return "\n".join(lines + [""] + [f"- {n}" for n in notes] + ["", "Per-frame values: metrics.json; curves.png; "
                                                                "worst.png (real | generated, worst L1 first)", ""])


def _plot_curves(path: Path, per_frame: dict) -> None:
    from marionet.errors import require

    require("matplotlib", "eval").use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in ("l1", "psnr", "ssim", "akd", "mkr", "aed", "lpips") if k in per_frame]
    fig, axes = plt.subplots(len(keys), 1, figsize=(8, 1.8 * len(keys)), sharex=True, squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        values = np.array([np.nan if v is None or np.isinf(v) else v for v in per_frame[key]], float)
        ax.plot(values, lw=1)
        ax.set_ylabel(key.upper() if key != "psnr" else "PSNR dB")
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("frame (all videos in order)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _strip(path: Path, worst, columns: int = 3) -> None:
    """(real | generated) tiles of the worst frames, ``columns`` to a row."""
    from PIL import Image

    tiles = [np.concatenate([r, f], axis=1) for _, r, f in worst]
    height, width = max(t.shape[0] for t in tiles), max(t.shape[1] for t in tiles)
    tiles = [np.pad(t, ((0, height - t.shape[0]), (0, width - t.shape[1]), (0, 0))) for t in tiles]
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % min(columns, len(tiles)))
    columns = min(columns, len(tiles))
    rows = [np.concatenate(tiles[i:i + columns], axis=1) for i in range(0, len(tiles), columns)]
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
