"""``marionet.load``: config + checkpoint (official or marionet's own, or a built-in name) -> pipeline."""
from __future__ import annotations

import warnings

import torch

from marionet.checkpoints import load_weights, read_checkpoint, resolve_checkpoint
from marionet.config import load_config, validate_config
from marionet.errors import MarionetError
from marionet.models import build_model, family_of
from marionet.pipeline import AnimationPipeline


def load(checkpoint=None, config=None, device: str = "cpu", channels_last: bool = True) -> AnimationPipeline:
    """Build a model and load its weights.

    checkpoint: a built-in model name, a marionet ``.safetensors`` checkpoint (carries its config) or a
        training run directory holding one, or an official ``*.pth.tar`` (needs ``config``).
        None builds an untrained model from ``config``.
    config: path to a YAML config (official layout), a shipped config name such as ``vox-256``, or a dict.
    """
    device = _check_device(device)
    cfg, cfg_source = None, None
    if config is not None:
        cfg = validate_config(config, "config") if isinstance(config, dict) else load_config(config)
        cfg_source = "config" if isinstance(config, dict) else str(config)
    if checkpoint is None:
        if cfg is None:
            raise MarionetError("load: give a checkpoint, a config, or both")
        warnings.warn("no checkpoint given: the model is untrained (random weights)", stacklevel=2)
        return AnimationPipeline(build_model(cfg, cfg_source, with_discriminator=False), cfg, device, channels_last)

    path = resolve_checkpoint(checkpoint)
    states, embedded, official = read_checkpoint(path)
    if cfg is None:
        if embedded is None:
            raise MarionetError(f"{path}: an official checkpoint carries no config; give its config too "
                                "(the YAML file it was trained with, or a shipped name such as vox-256)")
        cfg, cfg_source = validate_config(embedded, f"{path} (embedded config)"), f"{path}"
    elif embedded is not None and family_of(cfg, states) != family_of(embedded, states):
        raise MarionetError(f"{path}: a {family_of(embedded, states)} checkpoint, but {cfg_source} is a "
                            f"{family_of(cfg, states)} config (leave out the config: the checkpoint carries its own)")
    model = build_model(cfg, cfg_source, with_discriminator=False, states=states)
    load_weights(model, states, path, official)
    return AnimationPipeline(model, cfg, device, channels_last)


def _check_device(device) -> str:
    device = str(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MarionetError(f"device {device}: CUDA is not available on this machine (use --device cpu)")
    if device.split(":")[0] not in ("cpu", "cuda", "mps"):
        raise MarionetError(f"device {device}: unknown device (use cpu or cuda)")
    return device
