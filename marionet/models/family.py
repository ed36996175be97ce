"""The model-family interface, its registry and the one factory, ``build_model``.

A family is one module defining a ``ModelFamily`` subclass, plus one ``register(...)`` line in
``marionet/models/__init__.py``. The trainer, the animation pipeline, reconstruction and the CLI
use only what this class declares; nothing outside a family's module knows its internals.

A family holds up to three networks under fixed names (``NETWORKS``): ``kp_detector``,
``generator`` and ``discriminator`` (None where the family has none). Keypoints are dicts of
batched tensors, ``{"value": (B, K, 2), ...}`` with (x, y) in [-1, 1]; a family adds its own
fields (FOMM: "jacobian" (B, K, 2, 2); Monkey-Net: "covariance" (B, K, 2, 2)).
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from marionet.config import TrainParams, parse_train_params
from marionet.errors import MarionetError
from marionet.motion import transfer_keypoints

NETWORKS = ("generator", "kp_detector", "discriminator")


class ModelFamily(nn.Module):
    family: ClassVar[str]
    TrainParams: ClassVar[type[TrainParams]] = TrainParams  # its train_params, with its loss weights
    keypoint_fields: ClassVar[tuple[str, ...]] = ("value",)  # what ``detect`` returns per keypoint
    # methods (B, C, H, W) -> (B, ...) the pipeline offers per image as numpy (KP-mask: "mask")
    image_outputs: ClassVar[tuple[str, ...]] = ()
    # True: the family works at each image's own size (the pipeline does not resize frames to the
    # config's frame_shape, and ``fit`` does not apply); e.g. the landmark-driven ``faces``
    native_resolution: ClassVar[bool] = False
    # True: target poses are given as joints (``transfer(source, source_joints, joints)``), not driving
    # frames; ``reconstruct`` feeds it ground-truth joints and ``pose-transfer`` accepts it (posewarp)
    driven_by_joints: ClassVar[bool] = False
    # convolutions (dotted paths) whose output is pixels, not geometry: reduced precision may cover them
    image_heads: ClassVar[tuple[str, ...]] = ()

    kp_detector: nn.Module | None
    generator: nn.Module
    discriminator: nn.Module | None

    # ---------------------------------------------------------------------------------- building

    @classmethod
    def recognizes(cls, config: dict, states: dict | None = None) -> bool:
        """Whether a config without a ``family`` key (an official one) is this family's, from its
        keys, or from the checkpoint's ``states`` ({network: state_dict}) when given."""
        return False

    @classmethod
    def from_config(cls, config: dict, with_discriminator: bool = True) -> "ModelFamily":
        """Build from a whole config (``model_params`` and any other section the family reads)."""
        return cls(config["model_params"], with_discriminator=with_discriminator)

    @property
    def networks(self) -> dict[str, nn.Module]:
        """The family's networks by name: what checkpoints hold."""
        return {name: getattr(self, name) for name in NETWORKS if getattr(self, name, None) is not None}

    def trained_networks(self) -> dict[str, nn.Module]:
        """The networks the trainer optimises (one optimiser each); a frozen network is left out."""
        return self.networks

    # ---------------------------------------------------------------------------------- inference

    def detect(self, frames: torch.Tensor) -> dict:
        """(B, C, H, W) -> keypoints (the fields of ``keypoint_fields``)."""
        kp = self.kp_detector(frames)
        return {k: kp[k] for k in self.keypoint_fields}

    def encode_source(self, source: torch.Tensor):
        """What the generator computes from the source alone, cached across driving frames."""
        return self.generator.encode_source(source)

    def transfer_keypoints(self, kp_source: dict, kp_driving: dict, kp_initial: dict, relative: bool = True,
                           scale: float = 1.0) -> dict:
        """The keypoints to render the source with (see ``marionet.motion``)."""
        return transfer_keypoints(kp_source, kp_driving, kp_initial, relative, scale)

    def background(self, reference: torch.Tensor, driving: torch.Tensor) -> torch.Tensor | None:
        """Camera motion from ``reference`` (the source, or the first driving frame in relative mode) to
        each driving frame, as (B, 2, 3) affines; None when the family does not model it."""
        return None

    def generate(self, source: torch.Tensor, kp_source: dict, kp_driving: dict, source_features=None,
                 background: torch.Tensor | None = None) -> dict:
        """source (1|B, C, H, W), keypoints -> {"prediction": (B, C, H, W), ...internals}."""
        return self.generator(source, kp_driving=kp_driving, kp_source=kp_source, source_features=source_features)

    # ---------------------------------------------------------------------------------- training

    def objective(self, train_params: TrainParams) -> nn.Module:
        """The family's losses: a ``marionet.losses.Objective``."""
        raise NotImplementedError(f"the {self.family} family cannot be trained")

    @classmethod
    def train_params(cls, config: dict, source: str = "config") -> TrainParams:
        return parse_train_params(cls.TrainParams, config, source)

    @classmethod
    def training_dataset(cls, config: dict, data_dir, params: TrainParams):
        """The training items: a torch Dataset of dicts of tensors (the objective's ``batch``); item i
        must depend only on i (and the config's seeds), so that resume and DDP stay exact. Default:
        pairs of frames of one video, {"source", "driving"} (``FramesDataset``)."""
        from marionet.data.datasets import FramesDataset

        dataset_params = {**(config.get("dataset_params") or {}), "root_dir": str(data_dir)}
        return FramesDataset(**dataset_params, is_train=True, num_repeats=params.num_repeats)

    # ---------------------------------------------------------------------------------- checkpoints

    @staticmethod
    def convert_official(network: str, state: dict) -> dict:
        """An official checkpoint's state dict for ``network`` -> this implementation's names."""
        return state

    def adapt_init(self, states: dict) -> tuple[dict, tuple[str, ...]]:
        """``train --init``: adapt a foreign checkpoint's {network: state} to this model. -> (states,
        prefixes ``<network>.<name>`` of weights that may be missing and keep their initialisation)."""
        return states, ()


# ------------------------------------------------------------------------------------------------
# Registry
# ------------------------------------------------------------------------------------------------

FAMILIES: dict[str, type[ModelFamily]] = {}
DEFAULT_FAMILY = "fomm"  # the official layout that a config matching no other family follows


def register(cls: type[ModelFamily]) -> type[ModelFamily]:
    FAMILIES[cls.family] = cls
    return cls


def family_of(config: dict, states: dict | None = None) -> str:
    """The config's ``family`` key; else the family that recognizes it (or the checkpoint's states)."""
    if "family" in config:
        return str(config["family"]).lower().replace("-", "").replace("_", "")
    for name, cls in FAMILIES.items():
        if cls.recognizes(config, states):
            return name
    return DEFAULT_FAMILY


def family_class(config: dict, source: str = "config", states: dict | None = None) -> type[ModelFamily]:
    family = family_of(config, states)
    if family not in FAMILIES:
        raise MarionetError(f"{source}: unknown model family {family!r} (known: {', '.join(FAMILIES)})")
    return FAMILIES[family]


def build_model(config: dict, source: str = "config", with_discriminator: bool = True,
                states: dict | None = None) -> ModelFamily:
    """The model of ``config`` with fresh weights. A config key or value the model cannot be built
    from is a one-line MarionetError naming ``source``; anything else is a bug and keeps its traceback."""
    cls = family_class(config, source, states)
    try:
        return cls.from_config(config, with_discriminator=with_discriminator)
    except MarionetError as e:
        raise MarionetError(f"{source}: {e}") from None
