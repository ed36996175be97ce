"""Image-to-video with Monkey-Net (paper section 4.4): keypoint trajectories predicted from one image.

A recurrent ``KeypointPredictor`` (``marionet.models.trajectory``) is trained on the keypoints
(mean + covariance) that a trained Monkey-Net detector finds in every frame of the training videos;
at test time it continues the keypoints of a single source image and the Monkey-Net generator renders
the predicted keypoints from that image. This module holds the non-CLI parts:

- ``extract_keypoints``: the detector over every training video of a dataset folder;
- ``train_predictor``: windows of those sequences -> a fitted predictor;
- ``save_predictor`` / ``load_predictor``: ``predictor.safetensors`` (weights, with the
  hyper-parameters needed to rebuild it and the training settings in the metadata);
- ``predict_keypoints`` / ``render_frames`` / ``mean_displacement``: the rollout, its frames, and
  the amount of motion it contains.

Keypoint sequences are dicts {"value": (T, K, 2), "covariance": (T, K, 2, 2)}, (x, y) in [-1, 1].
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from marionet.checkpoints import MODEL_FILE
from marionet.errors import MarionetError
from marionet.models.trajectory import KeypointPredictor, fit, make_windows, rollout

PREDICTOR_FILE = "predictor.safetensors"
FORMAT = "marionet-predictor/1"
# Hyper-parameters that rebuild the network (metadata key -> type).
_ARCH = {"num_kp": int, "num_features": int, "num_layers": int, "dropout": float, "cell": str}


# --------------------------------------------------------------------------------------------
# Run folders
# --------------------------------------------------------------------------------------------

def resolve_run(checkpoint) -> tuple[Path, Path]:
    """``--checkpoint``: a run folder (its model.safetensors) or a checkpoint file.

    -> (model checkpoint, folder where the predictor lives by default).
    """
    path = Path(checkpoint)
    if path.is_dir():
        model = path / MODEL_FILE
        if not model.is_file():
            raise MarionetError(f"{path}: no {MODEL_FILE} in this run folder (train one with `marionet train`)")
        return model, path
    if not path.exists():
        raise MarionetError(f"{path}: no such run folder or checkpoint file")
    return path, path.parent


def require_covariances(pipeline, source) -> None:
    """MarionetError unless the model's keypoints carry covariances (a Monkey-Net model): the
    predictor continues means and covariances."""
    if "covariance" not in pipeline.model.keypoint_fields:
        raise MarionetError(f"{source}: is a {pipeline.model.family} model; image-to-video needs keypoints with "
                            "covariances (a Monkey-Net checkpoint)")


# --------------------------------------------------------------------------------------------
# Keypoint extraction
# --------------------------------------------------------------------------------------------

@torch.no_grad()
def _detect(pipeline, frames: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    kp = pipeline.model.detect(pipeline.to_tensor(np.stack(frames)))
    return kp["value"].float().cpu(), kp["covariance"].float().cpu()


def _video_frames(dataset, v: int) -> Iterator[np.ndarray]:
    """Every frame of the dataset's video v, streamed (HxWx3 uint8 or float in [0, 1])."""
    from marionet.data.datasets import STRIP_EXTENSIONS
    from marionet.data.video import open_video

    path = dataset.videos[v]
    if path.is_file() and path.suffix.lower() in STRIP_EXTENSIONS:  # a strip of frames: one image
        yield from dataset._load(v).permute(0, 2, 3, 1).numpy()
        return
    with open_video(path) as reader:
        yield from reader


def extract_keypoints(pipeline, data_dir, config: dict | None = None, batch_size: int = 32,
                      max_videos: int | None = None, progress: bool = False) -> list[dict]:
    """Keypoints of every frame of every training video in ``data_dir`` (the train split that
    ``marionet train`` uses with the same ``dataset_params``), detected with the pipeline's model.

    -> [{"name": str, "value": (T, K, 2) float32, "covariance": (T, K, 2, 2) float32}] (numpy), in
    the dataset's order, at most ``max_videos`` of them (the official code caps vox at 500).
    Unreadable videos are skipped with a warning.
    """
    from tqdm import tqdm

    from marionet.data.datasets import FramesDataset

    require_covariances(pipeline, "the model")
    params = dict((config if config is not None else pipeline.config).get("dataset_params") or {})
    params.pop("augmentation_params", None)
    params["root_dir"] = str(data_dir)
    dataset = FramesDataset(**params, is_train=True)
    count = len(dataset.videos) if max_videos is None else min(max_videos, len(dataset.videos))
    sequences = []
    for v in tqdm(range(count), unit="video", desc="keypoints", disable=None if progress else True):
        values, covariances, batch = [], [], []
        try:
            for frame in _video_frames(dataset, v):
                batch.append(frame)
                if len(batch) == batch_size:
                    value, cov = _detect(pipeline, batch)
                    values.append(value)
                    covariances.append(cov)
                    batch = []
            if batch:
                value, cov = _detect(pipeline, batch)
                values.append(value)
                covariances.append(cov)
        except (MarionetError, OSError, ValueError) as e:  # an unreadable video is skipped, never fatal
            warnings.warn(f"{dataset.videos[v]}: skipping this video ({e})", stacklevel=2)
            continue
        if values:
            sequences.append({"name": dataset.videos[v].name, "value": torch.cat(values).numpy(),
                              "covariance": torch.cat(covariances).numpy()})
    if not sequences:
        raise MarionetError(f"{data_dir}: no training video could be read")
    return sequences


# --------------------------------------------------------------------------------------------
# Training, saving, loading
# --------------------------------------------------------------------------------------------

def prediction_defaults(config: dict) -> dict:
    """The config's ``prediction_params`` (official layout) with the official defaults."""
    pp = dict(config.get("prediction_params") or {})
    rnn = dict(pp.get("rnn_params") or {})
    return {"num_features": int(rnn.get("num_features", 1024)), "num_layers": int(rnn.get("num_layers", 1)),
            "dropout": float(rnn.get("dropout", 0) or 0), "num_frames": int(pp.get("num_frames", 32)),
            "init_frames": int(pp.get("init_frames", 1)), "lr": float(pp.get("lr", 1e-3)),
            "batch_size": int(pp.get("batch_size", 256)),
            # The official flag is inverted: predict_variance True keeps the first frame's covariance.
            "predict_covariance": not bool(pp.get("predict_variance", False))}


def train_predictor(sequences: list[dict], num_kp: int, steps: int, num_frames: int = 32, cell: str = "gru",
                    num_features: int = 1024, num_layers: int = 1, dropout: float = 0.0, init_frames: int = 1,
                    lr: float = 1e-3, batch_size: int = 256, seed: int = 0, device="cpu",
                    callback=None) -> tuple[KeypointPredictor, dict]:
    """Fit a predictor on every window of ``num_frames`` consecutive frames (official prediction.py).

    ``steps`` optimisation steps are rounded up to whole epochs over the windows. -> (predictor,
    training summary: windows, epochs, steps, final loss, the settings).
    """
    longest = max(len(s["value"]) for s in sequences)
    if num_frames < 2 or num_frames > longest:
        raise MarionetError(f"--window {num_frames}: must be in 2..{longest} (the longest training video has "
                            f"{longest} frames)")
    if not 1 <= init_frames < num_frames:
        raise MarionetError(f"prediction_params.init_frames {init_frames}: must be in [1, {num_frames})")
    windows = make_windows(sequences, num_frames)[0].shape[0]
    per_epoch = math.ceil(windows / batch_size)
    epochs = max(1, math.ceil(steps / per_epoch))
    torch.manual_seed(seed)
    predictor = KeypointPredictor(num_kp=num_kp, num_features=num_features, num_layers=num_layers,
                                  dropout=dropout, cell=cell)
    try:
        history = fit(predictor, sequences, num_frames=num_frames, init_frames=init_frames, epochs=epochs, lr=lr,
                      batch_size=batch_size, seed=seed, device=device, callback=callback)
    except FloatingPointError as e:
        raise MarionetError(f"keypoint predictor: {e}; lower prediction_params.lr") from None
    summary = {"num_frames": num_frames, "init_frames": init_frames, "lr": lr, "batch_size": batch_size,
               "windows": windows, "epochs": epochs, "steps": epochs * per_epoch, "videos": len(sequences),
               "final_loss": history[-1], "seed": seed}
    return predictor.cpu().eval(), summary


def save_predictor(path, predictor: KeypointPredictor, info: dict | None = None) -> None:
    """Write ``predictor.safetensors`` atomically; the metadata holds the architecture (to rebuild it)
    and ``info`` (training settings: window, steps, final loss, ...), all as JSON values."""
    from safetensors.torch import save_file

    from marionet.files import atomic_write

    arch = {"num_kp": predictor.num_kp, "num_features": predictor.rnn.hidden_size,
            "num_layers": predictor.rnn.num_layers, "dropout": float(predictor.rnn.dropout), "cell": predictor.cell}
    metadata = {"format": FORMAT, **{k: json.dumps(v) for k, v in {**(info or {}), **arch}.items()}}
    tensors = {k: v.detach().contiguous().cpu() for k, v in predictor.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def load_predictor(path, device="cpu") -> tuple[KeypointPredictor, dict]:
    """-> (predictor in eval mode on ``device``, its metadata decoded). One-line MarionetError naming
    the file if it is missing, not a predictor, or inconsistent."""
    from marionet.files import read_safetensors

    path = Path(path)
    if not path.is_file():
        raise MarionetError(f"{path}: no such predictor file (train one with `marionet train-predictor "
                            f"--checkpoint RUN --data DIR`)")
    state, metadata = read_safetensors(path)
    if metadata.get("format") != FORMAT:
        raise MarionetError(f"{path}: not a marionet keypoint predictor (format {metadata.get('format')!r}, "
                            f"expected {FORMAT!r})")
    try:
        info = {k: json.loads(v) for k, v in metadata.items() if k != "format"}
        arch = {k: cast(info[k]) for k, cast in _ARCH.items()}
        predictor = KeypointPredictor(**arch)
        predictor.load_state_dict(state, strict=True)
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise MarionetError(f"{path}: inconsistent predictor file ({str(e).splitlines()[0][:200]})") from None
    return predictor.to(device).eval(), info


# --------------------------------------------------------------------------------------------
# Image to video
# --------------------------------------------------------------------------------------------

def floor_covariance(covariance: torch.Tensor, min_eigenvalue: float) -> torch.Tensor:
    """Symmetrise (..., 2, 2) matrices and raise their eigenvalues to at least ``min_eigenvalue``.

    The predictor's B^T B is only positive semi-definite; the generator inverts covariances, and its
    detector never produced ones thinner than its clip_variance.
    """
    cov = (covariance + covariance.transpose(-1, -2)) / 2
    eigenvalues, vectors = torch.linalg.eigh(cov)
    return vectors @ torch.diag_embed(eigenvalues.clamp_min(min_eigenvalue)) @ vectors.transpose(-1, -2)


@torch.no_grad()
def predict_keypoints(pipeline, predictor: KeypointPredictor, source_image: np.ndarray, num_frames: int,
                      predict_covariance: bool = True) -> dict:
    """Keypoints of ``num_frames`` frames: frame 0 detected on the source, frames 1.. rolled out.

    -> {"value": (T, K, 2), "covariance": (T, K, 2, 2)} tensors on the pipeline's device.
    ``predict_covariance=False`` keeps the source covariances in every frame.
    """
    if num_frames < 1:
        raise MarionetError(f"--frames {num_frames}: must be at least 1")
    kp = pipeline.model.detect(pipeline.to_tensor(source_image))
    kp = {"value": kp["value"].float(), "covariance": kp["covariance"].float()}       # (1, K, ...)
    if predictor.num_kp != kp["value"].shape[1]:
        raise MarionetError(f"the predictor was trained for {predictor.num_kp} keypoints, the model detects "
                            f"{kp['value'].shape[1]}")
    frames = [kp] + (rollout(predictor, kp, num_frames - 1, predict_covariance) if num_frames > 1 else [])
    value = torch.cat([f["value"].to(kp["value"]) for f in frames])
    covariance = torch.cat([f["covariance"].to(kp["value"]) for f in frames])
    min_eig = getattr(pipeline.kp_detector, "clip_variance", None) or 1e-6
    covariance = torch.cat([covariance[:1], floor_covariance(covariance[1:], min_eig)])
    return {"value": value, "covariance": covariance}


def render_frames(pipeline, source_image: np.ndarray, keypoints: dict, batch_size: int = 8) -> Iterator[np.ndarray]:
    """The generator's frame for each keypoint frame, driven absolutely from the source.

    keypoints: {"value": (T, K, 2), "covariance": (T, K, 2, 2)}. Yields (h, w, 3) float32 in [0, 1].
    """
    source = pipeline.encode(source_image)
    dtype = source.kp["value"].dtype
    for start in range(0, keypoints["value"].shape[0], batch_size):
        kp = {k: v[start:start + batch_size].to(source.image.device, dtype) for k, v in keypoints.items()}
        yield from pipeline.render(source, kp)


def mean_displacement(value, frame_shape=None) -> tuple[float, float | None]:
    """Mean over frames 1..T-1 and keypoints of |kp_t - kp_0| (Euclidean, in the [-1, 1] keypoint
    units), and the same in pixels when ``frame_shape`` (H, W) is given. (0, 0) for one frame."""
    value = torch.as_tensor(value).double()
    if value.shape[0] < 2:
        return 0.0, (0.0 if frame_shape is not None else None)
    diff = value[1:] - value[:1]                                                 # (T-1, K, 2)
    normalised = diff.norm(dim=-1).mean().item()
    if frame_shape is None:
        return normalised, None
    h, w = frame_shape
    scale = diff.new_tensor([(w - 1) / 2, (h - 1) / 2])  # the coordinate grid puts -1 and 1 on pixel centres
    return normalised, (diff * scale).norm(dim=-1).mean().item()
