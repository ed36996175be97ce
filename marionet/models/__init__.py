"""Model families, built from a config by name (a small registry in the spirit of timm).

Every family is an ``nn.Module`` holding ``kp_detector``, ``generator`` and optionally
``discriminator``, constructed from the official ``model_params`` dict, and providing
``convert_official(module_name, state_dict)`` that maps an official checkpoint onto its names.
"""
from __future__ import annotations

import inspect

from torch import nn

from marionet.errors import MarionetError
from marionet.models.fomm import FOMM
from marionet.models.monkeynet import MonkeyNet

FAMILIES: dict[str, type[nn.Module]] = {"fomm": FOMM, "monkeynet": MonkeyNet}


def family_of(config: dict) -> str:
    """The config's ``family`` key, else guessed: Monkey-Net generators embed keypoints, FOMM ones do not."""
    if "family" in config:
        return str(config["family"]).lower().replace("-", "")
    generator = config["model_params"].get("generator_params", {})
    return "monkeynet" if "kp_embedding_params" in generator else "fomm"


def build_model(config: dict, source: str = "config", with_discriminator: bool = True) -> nn.Module:
    family = family_of(config)
    if family not in FAMILIES:
        raise MarionetError(f"{source}: unknown model family {family!r} (known: {', '.join(FAMILIES)})")
    cls = FAMILIES[family]
    kwargs = {"with_discriminator": with_discriminator}
    if "normalization_params" in inspect.signature(cls.__init__).parameters:
        kwargs["normalization_params"] = normalization_params(config)
    try:
        return cls(config["model_params"], **kwargs)
    except (TypeError, ValueError) as e:  # an unknown, missing or invalid key in a *_params section
        raise MarionetError(f"{source}: model_params do not fit the {family} model ({e})") from None
    except MarionetError as e:  # e.g. an unknown normalization_params key
        raise MarionetError(f"{source}: {e}") from None


def normalization_params(config: dict):
    """The transfer-time keypoint normalisation options: ``animate_params.normalization_params`` (FOMM's
    section name), else ``transfer_params.normalization_params`` (Monkey-Net's); None when absent."""
    for section in ("animate_params", "transfer_params"):
        params = (config.get(section) or {}).get("normalization_params")
        if params is not None:
            return params
    return None
