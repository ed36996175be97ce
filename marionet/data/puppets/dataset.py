"""Rendering puppet videos with ground truth, and writing them as a dataset."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from marionet.errors import MarionetError
from marionet.files import Staged, atomic_write

from .render import quantize, rasterize
from .rig import KINDS

KIND_IDS = {"humanoid": 1, "quadruped": 2, "face": 3}
FORMATS = ("frames", "mp4", "gif")
DEFAULT_FPS = 25.0
GT_DIR = "groundtruth"
GT_VERSION = 1


def _rng(kind: str, stream: int, seed: int) -> np.random.Generator:
    if int(seed) < 0:
        raise ValueError(f"seeds must be >= 0, got {seed}")
    return np.random.default_rng([KIND_IDS[kind], stream, int(seed)])


def derive_seed(*values: int) -> int:
    """A 31-bit seed derived from integers (machine independent)."""
    return int(np.random.SeedSequence([int(v) for v in values]).generate_state(1, np.uint32)[0] >> 1)


def _check(kind, size, frames):
    if kind not in KINDS:
        raise ValueError(f"unknown puppet kind {kind!r} (choose from {', '.join(KINDS)})")
    if int(size) < 16 or int(size) > 2048:
        raise ValueError(f"size must be in 16..2048, got {size}")
    if int(frames) < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")


def render_video(kind: str, size: int, frames: int, seed: int, motion_seed: int | None = None,
                 shape_seed: int | None = None, fps: float = DEFAULT_FPS, still_background: bool = False):
    """Render one puppet video.

    ``seed`` picks the identity (proportions and look); ``motion_seed`` (default: ``seed``) the
    joint-angle and global trajectories; ``shape_seed`` (default: ``seed``) overrides the
    proportions only, so two identities with the same shape and motion have identical joints.
    ``still_background`` stops a panning background (every frame shows frame 0's background).
    Trajectories are prefix-consistent: the first k frames do not depend on ``frames``.

    Returns ``(frames uint8 (T, S, S, 3), gt)`` with ``gt`` the dict described in docs/puppets.md.
    """
    _check(kind, size, frames)
    size, T = int(size), int(frames)
    k = KINDS[kind]
    motion_seed = seed if motion_seed is None else motion_seed
    shape_seed = seed if shape_seed is None else shape_seed
    shape = k.sample_shape(_rng(kind, 0, shape_seed))
    look = k.sample_look(_rng(kind, 1, seed))
    angles, glob = k.sample_motion(_rng(kind, 2, motion_seed), T, float(fps))
    joints, prims, background = k.build(shape, look, angles, glob, size)
    if still_background:
        background.pan = (0.0, 0.0)
    video, masks = rasterize(prims, background, T, size)
    joints = quantize(joints).astype(np.float32)
    labels = k.joint_part_labels()
    own = np.zeros((len(k.joints), max(map(len, labels))), np.uint8)
    for j, ls in enumerate(labels):
        own[j, :len(ls)] = ls
    visible = _visibility(joints, masks, own)
    palette = _palette(k, prims)
    gt = dict(
        kind=kind, version=GT_VERSION, size=size, fps=float(fps), seed=int(seed),
        motion_seed=int(motion_seed), shape_seed=int(shape_seed),
        joints=joints, visible=visible, masks=masks,
        joint_names=np.array(k.joints), part_names=np.array(k.parts),
        edges=np.array(k.edges, np.int64), joint_parts=own,
        angles=quantize(angles).astype(np.float32), angle_names=np.array(k.angles),
        global_motion=quantize(glob).astype(np.float32), part_colors=palette)
    return video, gt


def _visibility(joints, masks, own):
    T, S = masks.shape[0], masks.shape[1]
    xi = np.floor(joints[..., 0]).astype(np.int64)
    yi = np.floor(joints[..., 1]).astype(np.int64)
    inside = (xi >= 0) & (xi < S) & (yi >= 0) & (yi < S)
    lab = masks[np.arange(T)[:, None], np.clip(yi, 0, S - 1), np.clip(xi, 0, S - 1)]
    on_part = (lab[..., None] == own[None]).any(-1) & (lab > 0)
    return inside & on_part


def _palette(k, prims):
    cols = [[] for _ in k.parts]
    for p in prims:
        for c in p.fill.colors():
            if not any(np.array_equal(c, d) for d in cols[p.label - 1]):
                cols[p.label - 1].append(c)
    K = max(1, max(map(len, cols)))
    out = np.full((len(k.parts), K, 3), np.nan, np.float32)
    for i, cs in enumerate(cols):
        for j, c in enumerate(cs):
            out[i, j] = c
    return out


# ---------------------------------------------------------------------------------------- files
def ground_truth_path(video_path) -> Path:
    """``DIR/<split>/<video>[.mp4|.gif]`` -> ``DIR/groundtruth/<split>/<video>.npz``."""
    p = Path(video_path)
    name = p.name
    for suf in (".mp4", ".gif"):
        if name.endswith(suf):
            name = name[: -len(suf)]
    return p.parent.parent / GT_DIR / p.parent.name / f"{name}.npz"


def save_ground_truth(path, gt: dict) -> None:
    arrays = {k: (np.asarray(v) if not isinstance(v, str) else np.array(v)) for k, v in gt.items()}
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def load_ground_truth(path) -> dict:
    """Load a ground-truth file, or the one belonging to a video path (see ground_truth_path)."""
    p = Path(path)
    if p.suffix != ".npz":
        p = ground_truth_path(p)
    try:
        with np.load(p, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise MarionetError(f"{p}: cannot read puppet ground truth ({e})") from e
    for k in ("kind",):
        out[k] = str(out[k])
    for k in ("size", "seed", "motion_seed", "shape_seed", "version"):
        out[k] = int(out[k])
    out["fps"] = float(out["fps"])
    return out


def _write_frames(folder: Path, video: np.ndarray) -> None:
    from PIL import Image
    folder.mkdir(parents=True)
    for i, f in enumerate(video):
        Image.fromarray(f).save(folder / f"{i:06d}.png", compress_level=1)


def _plan(videos: int, pairs: int, test_fraction: float):
    """-> list of (index, group, split): whole groups go to one split, the last ones to test."""
    group = max(1, pairs)
    if videos % group:
        raise MarionetError(f"--videos: {videos} is not a multiple of --pairs {group}")
    G = videos // group
    if G < 2:
        raise MarionetError(f"--videos: need at least {2 * group} videos so that train and test "
                            f"each get one{' pair group' if pairs else ''}")
    if not 0.0 < test_fraction < 1.0:
        raise MarionetError(f"--test-fraction: must be between 0 and 1, got {test_fraction}")
    n_test = min(G - 1, max(1, int(round(G * test_fraction))))
    return [(i, i // group, "test" if i // group >= G - n_test else "train") for i in range(videos)]


def synthesize(out_dir, videos: int, frames: int, size: int, kind: str = "humanoid", seed: int = 0,
               fmt: str = "frames", test_fraction: float = 0.2, pairs: int = 0,
               preview=None, fps: float = DEFAULT_FPS, overwrite: bool = False,
               progress: bool = False) -> dict:
    """Write a puppet dataset (layout in docs/puppets.md) atomically; returns its metadata.

    ``pairs`` >= 2 renders groups of that many identities sharing one motion (pairs.csv).
    """
    out = Path(out_dir)
    if kind not in KINDS:
        raise MarionetError(f"--kind: unknown kind {kind!r} (choose from {', '.join(KINDS)})")
    if fmt not in FORMATS:
        raise MarionetError(f"--format: unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    if not 16 <= size <= 2048:
        raise MarionetError(f"--size: must be in 16..2048, got {size}")
    if fmt == "mp4" and size % 2:
        raise MarionetError(f"--size: mp4 needs an even size, got {size}")
    if frames < 1:
        raise MarionetError(f"--frames: must be >= 1, got {frames}")
    if fmt == "mp4" and frames < 2:
        raise MarionetError("--frames: mp4 needs at least 2 frames")
    if seed < 0:
        raise MarionetError(f"--seed: must be >= 0, got {seed}")
    if pairs == 1 or pairs < 0:
        raise MarionetError(f"--pairs: must be 0 (off) or >= 2, got {pairs}")
    if not fps > 0:
        raise MarionetError(f"--fps: must be positive, got {fps}")
    plan = _plan(videos, pairs, test_fraction)
    if out.exists() and not overwrite:
        raise MarionetError(f"{out}: already exists (use --overwrite to replace it)")
    if out.exists() and not out.is_dir():
        raise MarionetError(f"{out}: exists and is not a folder")
    with Staged(out, directory=True) as tmp:
        meta = _synthesize_into(tmp, plan, frames, size, kind, seed, fmt, pairs, fps, preview, progress)
    if preview is not None:
        _write_sheet_atomic(Path(preview), meta.pop("_sheet"))
    else:
        meta.pop("_sheet", None)
    return meta


def _synthesize_into(root: Path, plan, frames, size, kind, seed, fmt, pairs, fps, preview,
                     progress):
    k = KINDS[kind]
    entries = []
    sheet_items = []
    n_sheet = 6
    it = plan
    if progress:
        from tqdm import tqdm
        it = tqdm(plan, desc=f"synth {kind}", unit="video", disable=None)  # None: only on a terminal
    for i, g, split in it:
        name = f"{kind}_{i:05d}"
        vseed = derive_seed(seed, i)
        mseed = derive_seed(seed, g, 1_000_003) if pairs else vseed
        video, gt = render_video(kind, size, frames, vseed, motion_seed=mseed, fps=fps)
        (root / split).mkdir(exist_ok=True)
        (root / GT_DIR / split).mkdir(parents=True, exist_ok=True)
        if fmt == "frames":
            vpath = root / split / name
            _write_frames(vpath, video)
        else:
            from marionet.data.video import write_video
            vpath = root / split / f"{name}.{fmt}"
            write_video(vpath, video, fps)
        save_ground_truth(ground_truth_path(vpath), gt)
        entries.append(dict(name=name, split=split, path=str(vpath.relative_to(root)),
                            ground_truth=str(ground_truth_path(vpath).relative_to(root)),
                            seed=vseed, motion_seed=mseed, group=g if pairs else None))
        if preview is not None and len(sheet_items) < n_sheet:
            sheet_items.append((video, gt))
    if pairs:
        with open(root / "pairs.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["group", "motion_seed", "split", "video", "seed"])
            for e in entries:
                w.writerow([e["group"], e["motion_seed"], e["split"], e["name"], e["seed"]])
    meta = dict(
        generator="marionet.data.puppets", version=GT_VERSION, kind=kind, videos=len(plan),
        frames=frames, size=size, fps=fps, seed=seed, format=fmt, pairs=pairs,
        joint_names=list(k.joints), part_names=list(k.parts), edges=[list(e) for e in k.edges],
        angle_names=list(k.angles), entries=entries)
    with open(root / "puppets.json", "w") as f:
        json.dump(meta, f, indent=1)
    meta = dict(meta)
    meta["_sheet"] = contact_sheet(sheet_items) if preview is not None else None
    return meta


# -------------------------------------------------------------------------------------- preview
def _joint_colors(J: int) -> np.ndarray:
    import colorsys
    return (np.array([colorsys.hsv_to_rgb(j / J, 0.9, 1.0) for j in range(J)]) * 255).astype(int)


def contact_sheet(items, cols: int = 8, scale: int | None = None, raw: bool = True) -> np.ndarray:
    """A grid image (uint8 HxWx3): one row per (frames, gt) item and ``cols`` tiles per row. With
    ``raw``, evenly spaced frames are shown in pairs, as rendered then with the joints drawn
    (filled dots: visible, rings: hidden or outside, white lines: skeleton); else joints only."""
    from PIL import Image, ImageDraw
    if not items:
        raise ValueError("contact_sheet needs at least one video")
    S = items[0][0].shape[1]
    if scale is None:
        scale = max(1, -(-96 // S))
    tile, pad = S * scale, 2
    T = min(v.shape[0] for v, _ in items)
    per = 2 if raw else 1
    n = max(1, min(max(1, cols // per), T))
    idx = np.unique(np.linspace(0, T - 1, n).round().astype(int))
    W = len(idx) * per * (tile + pad) + pad
    H = len(items) * (tile + pad) + pad
    sheet = Image.new("RGB", (W, H), (255, 255, 255))
    rad = max(1.5, tile / 64)
    for r, (video, gt) in enumerate(items):
        colors = _joint_colors(gt["joints"].shape[1])
        for c, t in enumerate(idx):
            im = Image.fromarray(video[t]).resize((tile, tile), Image.NEAREST)
            y0 = pad + r * (tile + pad)
            x0 = pad + c * per * (tile + pad)
            if raw:
                sheet.paste(im, (x0, y0))
                x0 += tile + pad
            draw = ImageDraw.Draw(im)
            J = gt["joints"][t] * scale
            vis = gt["visible"][t]
            for a, b in gt["edges"]:
                draw.line([tuple(J[a]), tuple(J[b])], fill=(255, 255, 255), width=1)
            for j, (x, y) in enumerate(J):
                col = tuple(int(v) for v in colors[j])
                box = [x - rad, y - rad, x + rad, y + rad]
                if vis[j]:
                    draw.ellipse(box, fill=col, outline=(0, 0, 0))
                else:
                    draw.ellipse(box, outline=col)
            sheet.paste(im, (x0, y0))
    return np.asarray(sheet)


def _write_sheet_atomic(path: Path, sheet) -> None:
    from PIL import Image
    im = sheet if isinstance(sheet, Image.Image) else Image.fromarray(sheet)
    atomic_write(path, lambda tmp: im.save(tmp, format="PNG", optimize=True))


def write_preview(path, items, cols: int = 8, scale: int | None = None, colors: int = 0,
                  raw: bool = True) -> None:
    """Write a contact sheet PNG; ``colors`` > 0 quantises it to that many colours (smaller file)."""
    from PIL import Image
    sheet = Image.fromarray(contact_sheet(items, cols=cols, scale=scale, raw=raw))
    if colors:
        sheet = sheet.quantize(colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    _write_sheet_atomic(Path(path), sheet)
