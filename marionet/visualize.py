"""Pictures for people: keypoints drawn on frames, training grids."""
from __future__ import annotations

import colorsys

import numpy as np
import torch
from PIL import Image, ImageDraw


def keypoint_colours(k: int) -> list[tuple[int, int, int]]:
    return [tuple(int(255 * c) for c in colorsys.hsv_to_rgb(i / max(k, 1), 0.9, 1.0)) for i in range(k)]


def draw_keypoints(frame: np.ndarray, kp: np.ndarray, radius: int | None = None) -> np.ndarray:
    """frame (H, W, 3) in [0, 1] or uint8, kp (K, 2) (x, y) in [-1, 1] -> uint8 frame with coloured dots."""
    image = Image.fromarray(_to_uint8(frame))
    draw = ImageDraw.Draw(image)
    w, h = image.size
    r = radius or max(1, round(min(w, h) / 64))
    for (x, y), colour in zip(kp, keypoint_colours(len(kp))):
        px, py = (x + 1) / 2 * (w - 1), (y + 1) / 2 * (h - 1)
        draw.ellipse([px - r, py - r, px + r, py + r], fill=colour)
    return np.asarray(image)


def training_grid(batch: dict, generated: dict, rows: int = 4) -> Image.Image:
    """One row per sample: source | driving | driving with keypoints | deformed | occlusion | prediction."""
    def hwc(t):  # (3|1, H, W) tensor -> (H, W, 3) numpy
        t = t.detach().float().cpu()
        if t.shape[0] == 1:
            t = t.expand(3, -1, -1)
        return t.permute(1, 2, 0).numpy()

    n = min(rows, batch["source"].shape[0])
    h, w = batch["source"].shape[2:]
    lines = []
    for i in range(n):
        cells = [hwc(batch["source"][i]), hwc(batch["driving"][i])]
        kp = generated["kp_driving"]["value"][i].detach().float().cpu().numpy()
        cells.append(draw_keypoints(hwc(batch["driving"][i]), kp) / 255.0)
        if "deformed" in generated:
            cells.append(hwc(generated["deformed"][i]))
        if "occlusion_map" in generated:
            occ = torch.nn.functional.interpolate(generated["occlusion_map"][i:i + 1].float(), size=(h, w), mode="bilinear",
                                                  align_corners=False)[0]
            cells.append(hwc(occ))
        cells.append(hwc(generated["prediction"][i]))
        lines.append(np.concatenate(cells, axis=1))
    return Image.fromarray(_to_uint8(np.concatenate(lines, axis=0)))


def _to_uint8(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == np.uint8:
        return a
    return (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
