"""Ground-truth keypoint regressors for the synthetic puppets (one small CNN per kind).

They play the role of the external pose estimators in the papers' AKD / MKR metrics: apply
:func:`predict` to generated frames and to the ground-truth frames (or compare with the exact
ground-truth joints) and measure the distance. Weights live in
``marionet/assets/regressors/<kind>.safetensors`` and are reproduced by
``benchmarks/train_regressor.py``.

The network sees 64x64 RGB (other sizes are resized with area averaging / antialiased bilinear) and
outputs, per joint, a 16x16 heat map turned into coordinates by a soft-argmax, plus a visibility
logit (attention-pooled from a second map). Coordinates are returned in the input's pixels, in the
puppets' convention: x, y from the top-left image corner, pixel (i, j) covers [j, j+1) x [i, i+1).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from marionet.data.frames import frames_to_tensor
from marionet.errors import MarionetError

INPUT_SIZE = 64
ASSETS = Path(__file__).resolve().parent.parent / "assets" / "regressors"


def _conv(cin, cout, stride=1, k=3):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class KeypointRegressor(nn.Module):
    """64x64 RGB in [0, 1] -> (joints (N, J, 2) in [0, 1] image fractions, visibility logits (N, J))."""

    def __init__(self, num_joints: int, width: int = 16):
        super().__init__()
        w = width
        self.num_joints = num_joints
        self.width = width
        self.stem = _conv(3, w, 2)                                            # 32x32
        self.s32 = _conv(w, 2 * w)
        self.s16 = nn.Sequential(_conv(2 * w, 2 * w, 2), _conv(2 * w, 4 * w))  # 16x16
        self.s8 = nn.Sequential(_conv(4 * w, 6 * w, 2), _conv(6 * w, 6 * w))   # 8x8
        self.lat = nn.Conv2d(6 * w, 4 * w, 1)
        self.fuse = _conv(4 * w, 4 * w)
        self.head = nn.Conv2d(4 * w, 2 * num_joints, 1)
        g = (torch.arange(16, dtype=torch.float32) + 0.5) / 16
        self.register_buffer("grid", g, persistent=False)

    def forward(self, x: torch.Tensor):
        x = (x - 0.5) / 0.25
        f16 = self.s16(self.s32(self.stem(x)))
        f8 = self.s8(f16)
        f = self.fuse(f16 + F.interpolate(self.lat(f8), scale_factor=2.0, mode="nearest"))
        out = self.head(f)
        N, J = x.shape[0], self.num_joints
        heat = out[:, :J].reshape(N, J, -1).softmax(-1).reshape(N, J, 16, 16)
        px = (heat.sum(2) * self.grid).sum(-1)
        py = (heat.sum(3) * self.grid).sum(-1)
        vis = (heat * out[:, J:]).sum((2, 3))
        return torch.stack([px, py], -1), vis


def to_input(frames) -> torch.Tensor:
    """uint8 (N, H, W, 3) / (H, W, 3) numpy or float tensor (N, 3, H, W) in [0, 1] -> (N, 3, 64, 64)."""
    if isinstance(frames, np.ndarray):
        x = frames_to_tensor(frames)
    else:
        x = frames.float()
        if x.ndim == 3:
            x = x[None]
    H, W = x.shape[-2:]
    if (H, W) != (INPUT_SIZE, INPUT_SIZE):
        if H % INPUT_SIZE == 0 and W % INPUT_SIZE == 0:
            x = F.avg_pool2d(x, (H // INPUT_SIZE, W // INPUT_SIZE))
        else:
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", antialias=True,
                              align_corners=False)
    return x


_CACHE: dict[str, KeypointRegressor] = {}


def weights_path(kind: str) -> Path:
    return ASSETS / f"{kind}.safetensors"


def save_regressor(model: KeypointRegressor, path, kind: str, joint_names, extra: dict | None = None):
    from safetensors.torch import save_file

    from marionet.files import atomic_write

    state = {k: v.detach().to(torch.float16 if v.is_floating_point() else v.dtype).contiguous()
             for k, v in model.state_dict().items()}
    meta = {"kind": kind, "joints": json.dumps(list(joint_names)), "width": str(model.width),
            "input_size": str(INPUT_SIZE), "format": "marionet-keypoint-regressor-1"}
    for k, v in (extra or {}).items():
        meta[k] = v if isinstance(v, str) else json.dumps(v)
    atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=meta))


def load_regressor(kind_or_path: str, cache: bool = True) -> KeypointRegressor:
    """The shipped regressor of a puppet kind ('humanoid', 'quadruped', 'face'), or a weights file.
    Returned in eval mode, float32, with ``.kind``, ``.joint_names`` and ``.metadata``."""
    if cache and kind_or_path in _CACHE:
        return _CACHE[kind_or_path]
    from safetensors import safe_open
    path = Path(kind_or_path)
    if path.suffix != ".safetensors":
        path = weights_path(kind_or_path)
    if not path.exists():
        raise MarionetError(f"{path}: no keypoint regressor weights (train them with "
                            f"benchmarks/train_regressor.py)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k).float() for k in f.keys()}
        joints = json.loads(meta["joints"])
        model = KeypointRegressor(len(joints), int(meta["width"]))
        model.load_state_dict(state)
    except Exception as e:  # noqa: BLE001 -- safetensors raises its own error types
        raise MarionetError(f"{path}: not a keypoint regressor ({e})") from e
    model.eval()
    model.kind = meta.get("kind", "")
    model.joint_names = joints
    model.metadata = meta
    if cache:
        _CACHE[kind_or_path] = model
    return model


@torch.no_grad()
def predict(frames, regressor="humanoid", batch_size: int = 256, return_visibility: bool = False):
    """Joints (N, J, 2) float32 in the input's pixels; with ``return_visibility`` also the
    probability (N, J) that each joint is visible. ``regressor``: a kind name or a loaded model."""
    model = load_regressor(regressor) if isinstance(regressor, str) else regressor
    if isinstance(frames, np.ndarray):
        H, W = frames.shape[-3:-1]
    else:
        H, W = frames.shape[-2:]
    n = frames.shape[0] if frames.ndim == 4 else 1
    joints, vis = [], []
    for i in range(0, n, batch_size):
        chunk = frames[i:i + batch_size] if frames.ndim == 4 else frames
        j, v = model(to_input(chunk))
        joints.append(j)
        vis.append(v)
    j = torch.cat(joints) * torch.tensor([W, H], dtype=torch.float32)
    j = j.numpy().astype(np.float32)
    if return_visibility:
        return j, torch.sigmoid(torch.cat(vis)).numpy()
    return j


def keypoint_errors(pred, gt_joints, gt_visible, size) -> dict:
    """Mean Euclidean error in pixels: over visible joints (``visible``) and over all joints inside
    the frame, hidden ones included (``all``). Joints outside the frame are not counted."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt_joints, np.float64)
    d = np.linalg.norm(pred - gt, axis=-1)
    inside = ((gt >= 0) & (gt < size)).all(-1)
    vis = np.asarray(gt_visible, bool) & inside
    return {"visible": float(d[vis].mean()) if vis.any() else float("nan"),
            "all": float(d[inside].mean()) if inside.any() else float("nan"),
            "visible_count": int(vis.sum()), "all_count": int(inside.sum())}


def heldout_error(kind: str, size: int = 64, videos: int = 16, frames: int = 8,
                  first_seed: int = 20_000_000, regressor=None) -> dict:
    """Render ``videos`` fresh puppets (seeds first_seed...) and measure the regressor's error (px)
    and its visibility accuracy."""
    from marionet.data.puppets import render_video
    model = regressor if regressor is not None else load_regressor(kind)
    P, G, V = [], [], []
    for i in range(videos):
        v, gt = render_video(kind, size, frames, first_seed + i)
        P.append(v)
        G.append(gt["joints"])
        V.append(gt["visible"])
    frames_ = np.concatenate(P)
    pred, pvis = predict(frames_, model, return_visibility=True)
    gj, gv = np.concatenate(G), np.concatenate(V)
    out = keypoint_errors(pred, gj, gv, size)
    inside = ((gj >= 0) & (gj < size)).all(-1)
    out["visibility_accuracy"] = float(((pvis > 0.5) == gv)[inside].mean())
    return out
