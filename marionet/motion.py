"""Motion transfer between identities: the official ``normalize_kp`` semantics.

Relative mode moves the source keypoints by the driving keypoints' displacement from the first
driving frame (scaled by the ratio of the keypoint clouds' sizes when ``adapt_scale``), and moves
the source Jacobians by the driving Jacobians' change. Absolute mode uses the driving keypoints as
they are.
"""
from __future__ import annotations

import math

import torch

from marionet.geometry import hull_area


def movement_scale(kp_source: dict, kp_initial: dict) -> float:
    """sqrt(hull area of the source keypoints / hull area of the first driving frame's keypoints)."""
    src = hull_area(kp_source["value"][0].detach().cpu().numpy())
    drv = hull_area(kp_initial["value"][0].detach().cpu().numpy())
    if src <= 0 or drv <= 0:  # collinear keypoints: no meaningful area, keep the motion as is
        return 1.0
    return math.sqrt(src) / math.sqrt(drv)


def transfer_keypoints(kp_source: dict, kp_driving: dict, kp_initial: dict, relative: bool = True,
                       scale: float = 1.0) -> dict:
    """Keypoints to feed the generator. kp_*: {"value": (B|1, K, 2), "jacobian": (B|1, K, 2, 2)}."""
    out = {k: v for k, v in kp_driving.items() if k != "heatmap"}  # e.g. Monkey-Net covariances pass through
    if not relative:
        return out
    out["value"] = (kp_driving["value"] - kp_initial["value"]) * scale + kp_source["value"]
    if "jacobian" in kp_driving:
        change = kp_driving["jacobian"] @ torch.inverse(kp_initial["jacobian"])
        out["jacobian"] = change @ kp_source["jacobian"]
    return out
