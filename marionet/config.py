"""Model/training configuration: the official FOMM / Monkey-Net YAML layout, read as plain dicts.

Only ``model_params`` is needed to build a model; ``dataset_params``, ``train_params`` and the
rest are read by the trainer. marionet adds two optional keys, both documented in the README:
``model_params.common_params.align_corners`` (grid_sample convention, default true) and a
top-level ``family`` (``fomm`` or ``monkeynet``; guessed from the model keys when absent).
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

import yaml

from marionet.errors import MarionetError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def load_config(path) -> dict:
    """Read a YAML config; a bare name like ``vox-256`` means the config shipped with marionet."""
    path = Path(path)
    if not path.exists() and not path.suffix and (CONFIG_DIR / f"{path}.yaml").exists():
        path = CONFIG_DIR / f"{path}.yaml"
    if not path.is_file():
        raise MarionetError(f"{path}: no such config file")
    try:
        with open(path) as f:
            config = yaml.safe_load(f)
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise MarionetError(f"{path}: not a valid YAML file ({str(e).splitlines()[0]})") from None
    return validate_config(config, str(path))


def validate_config(config, source: str = "config") -> dict:
    if not isinstance(config, dict) or not isinstance(config.get("model_params"), dict):
        raise MarionetError(f"{source}: no 'model_params' section (expected the official FOMM/Monkey-Net layout)")
    params = config["model_params"]
    for key in ("common_params", "kp_detector_params", "generator_params"):
        if not isinstance(params.get(key), dict):
            raise MarionetError(f"{source}: missing 'model_params.{key}'")
    return copy.deepcopy(config)


def frame_shape(config: dict) -> tuple[int, int]:
    """(H, W) the model works at; official configs give dataset_params.frame_shape [H, W, C]
    (FOMM) or dataset_params.image_shape (Monkey-Net)."""
    dataset = config.get("dataset_params") or {}
    shape = dataset.get("frame_shape") or dataset.get("image_shape") or [256, 256, 3]
    return int(shape[0]), int(shape[1])


def config_name(path) -> str:
    return os.path.splitext(os.path.basename(str(path)))[0]
