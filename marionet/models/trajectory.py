"""Keypoint-trajectory predictor for image-to-video generation (Monkey-Net, section 4.4).

From the keypoints of one frame, a recurrent network predicts the keypoints of the following
frames; the Monkey-Net generator then renders them from that frame. Each step carries K keypoints
as (x, y, c00, c01, c10, c11): the mean and the 2x2 covariance. The network sees the first frame's
keypoints and zeros afterwards (it must carry the motion in its state), and outputs per step a
mean through tanh (so in [-1, 1]) and a covariance B^T B (symmetric positive semi-definite) from a
predicted 2x2 matrix B.

``cell="gru"`` is what the official code trains; the paper says LSTM, available as ``cell="lstm"``.

Keypoint dicts: {"value": (B, K, 2), "covariance": (B, K, 2, 2)} per frame; sequences stack frames
on a time axis after the batch axis: (B, T, K, 2) and (B, T, K, 2, 2).
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

STEP_FEATURES = 6  # x, y and the four covariance entries


class KeypointPredictor(nn.Module):
    """Recurrent keypoint-sequence model (the official ``PredictionModule``'s ``rnn_params``)."""

    def __init__(self, num_kp: int = 10, num_features: int = 1024, num_layers: int = 1, dropout: float = 0.0,
                 cell: str = "gru"):
        super().__init__()
        if cell not in ("gru", "lstm"):
            raise ValueError(f"cell must be 'gru' or 'lstm', got {cell!r}")
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        size = num_kp * STEP_FEATURES
        self.rnn = rnn(input_size=size, hidden_size=num_features, num_layers=num_layers,
                       dropout=dropout if num_layers > 1 else 0.0, batch_first=True)
        self.linear = nn.Linear(num_features, size)
        self.num_kp = num_kp
        self.cell = cell

    @staticmethod
    def pack(value: torch.Tensor, covariance: torch.Tensor) -> torch.Tensor:
        """(B, T, K, 2), (B, T, K, 2, 2) -> (B, T, K * 6), per keypoint [x, y, c00, c01, c10, c11]."""
        b, t, k, _ = value.shape
        return torch.cat([value, covariance.reshape(b, t, k, 4)], dim=-1).reshape(b, t, k * STEP_FEATURES)

    def forward(self, value: torch.Tensor, covariance: torch.Tensor) -> dict:
        """Input sequence (zeros after the known frames) -> predicted sequence, same shapes."""
        b, t, k, _ = value.shape
        if k != self.num_kp:
            raise ValueError(f"the predictor was built for {self.num_kp} keypoints, got {k}")
        hidden, _ = self.rnn(self.pack(value, covariance))
        out = self.linear(hidden).reshape(b, t, k, STEP_FEATURES)
        factor = out[..., 2:].reshape(b, t, k, 2, 2)
        return {"value": torch.tanh(out[..., :2]), "covariance": factor.transpose(-1, -2) @ factor}


def _as_tensor(x, dtype=torch.float32) -> torch.Tensor:
    return x.detach().to(dtype=dtype, device="cpu") if torch.is_tensor(x) else torch.as_tensor(np.asarray(x), dtype=dtype)


def make_windows(sequences: Iterable[dict], num_frames: int, stride: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Every window of ``num_frames`` consecutive frames (start every ``stride`` frames) of each sequence.

    sequences: dicts {"value": (T, K, 2), "covariance": (T, K, 2, 2)} (tensors or arrays), e.g. the
    keypoints detected on each training video. Shorter sequences give no window.
    -> (N, num_frames, K, 2), (N, num_frames, K, 2, 2).
    """
    values, covariances = [], []
    for seq in sequences:
        value, covariance = _as_tensor(seq["value"]), _as_tensor(seq["covariance"])
        if value.ndim != 3 or covariance.shape != (*value.shape, 2):
            raise ValueError(f"a sequence needs value (T, K, 2) and covariance (T, K, 2, 2), got "
                             f"{tuple(value.shape)} and {tuple(covariance.shape)}")
        for start in range(0, value.shape[0] - num_frames + 1, stride):
            values.append(value[start:start + num_frames])
            covariances.append(covariance[start:start + num_frames])
    if not values:
        raise ValueError(f"no sequence has the {num_frames} frames a training window needs")
    return torch.stack(values), torch.stack(covariances)


def fit(model: KeypointPredictor, sequences: Iterable[dict], num_frames: int = 32, init_frames: int = 1,
        epochs: int = 1000, lr: float = 1e-3, batch_size: int = 256, stride: int = 1, patience: int = 50,
        seed: int | None = 0, device: str | torch.device = "cpu", callback=None) -> list[float]:
    """Train ``model`` on windows of consecutive keypoint frames (official ``prediction.py``).

    Inputs after the first ``init_frames`` frames of a window are zeroed; the loss is the L1 between
    predicted and true means plus the L1 between covariances, over frames init_frames..T-1. Adam with
    ReduceLROnPlateau(patience) on the epoch loss. ``callback(epoch, loss)`` is called after every
    epoch. Returns the mean loss of every epoch.
    """
    if not 1 <= init_frames < num_frames:
        raise ValueError(f"init_frames must be in [1, num_frames), got {init_frames} with num_frames {num_frames}")
    value, covariance = make_windows(sequences, num_frames, stride)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    device = torch.device(device)
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=patience)
    history = []
    for epoch in range(epochs):
        order = torch.randperm(value.shape[0], generator=generator)
        total, count = 0.0, 0
        for batch in order.split(batch_size):
            target_value, target_cov = value[batch].to(device), covariance[batch].to(device)
            inp_value, inp_cov = target_value.clone(), target_cov.clone()
            inp_value[:, init_frames:] = 0
            inp_cov[:, init_frames:] = 0
            pred = model(inp_value, inp_cov)
            loss = (F.l1_loss(pred["value"][:, init_frames:], target_value[:, init_frames:])
                    + F.l1_loss(pred["covariance"][:, init_frames:], target_cov[:, init_frames:]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
            count += len(batch)
        epoch_loss = total / count
        if not math.isfinite(epoch_loss):
            raise FloatingPointError(f"keypoint predictor training diverged at epoch {epoch} (loss {epoch_loss})")
        scheduler.step(epoch_loss)
        history.append(epoch_loss)
        if callback is not None:
            callback(epoch, epoch_loss)
    model.eval()
    return history


@torch.no_grad()
def rollout(model: KeypointPredictor, kp_first: dict, steps: int, predict_covariance: bool = True) -> list[dict]:
    """Predict the ``steps`` frames that follow ``kp_first``.

    kp_first: {"value": (B, K, 2), "covariance": (B, K, 2, 2)} (or unbatched (K, 2), (K, 2, 2)).
    -> a list of ``steps`` keypoint dicts (frames 1..steps; the first frame is not repeated), each
    shaped like ``kp_first``, ready for the Monkey-Net generator. With ``predict_covariance=False``
    every frame keeps the first frame's covariance (what the official ``predict_variance`` flag meant).
    Windows longer than the training ``num_frames`` extrapolate beyond what the model has seen.
    """
    value, covariance = kp_first["value"], kp_first["covariance"]
    unbatched = value.ndim == 2
    if unbatched:
        value, covariance = value[None], covariance[None]
    param = next(model.parameters())
    value, covariance = value.to(param), covariance.to(param)
    b, k, _ = value.shape
    inp_value = value.new_zeros(b, steps + 1, k, 2)
    inp_cov = value.new_zeros(b, steps + 1, k, 2, 2)
    inp_value[:, 0], inp_cov[:, 0] = value, covariance
    was_training = model.training
    model.eval()
    pred = model(inp_value, inp_cov)
    model.train(was_training)
    frames = []
    for t in range(1, steps + 1):
        frame = {"value": pred["value"][:, t],
                 "covariance": pred["covariance"][:, t] if predict_covariance else covariance}
        frames.append({key: v[0] for key, v in frame.items()} if unbatched else frame)
    return frames
