"""Loss terms shared by the families (perceptual pyramid, LSGAN, feature matching, keypoint
separation) and ``Objective``, the base of every family's training objective (each family's own
module defines its objective from these terms).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from marionet.errors import MarionetError
from marionet.nn.blocks import AntiAliasInterpolation2d, vgg_features

VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
# VGG19 'features' up to relu5_1, cut after relu1_1, relu2_1, relu3_1, relu4_1, relu5_1.
_VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512]
_VGG19_CUTS = (2, 7, 12, 21, 30)


class Vgg19(nn.Module):
    """Frozen VGG19 feature pyramid; parameter names follow torchvision's ``vgg19().features``."""

    frozen_features = True   # the trainer may keep ``features`` in bf16 under bf16 autocast

    def __init__(self):
        super().__init__()
        self.features = vgg_features(_VGG19_CFG)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.requires_grad_(False)

    def forward(self, x):
        x = (x - self.mean) / self.std
        outs, start = [], 0
        for cut in _VGG19_CUTS:
            x = self.features[start:cut](x)
            outs.append(x)
            start = cut
        return outs

    def load_torchvision(self, path) -> None:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:
            raise MarionetError(f"{path}: not a readable VGG19 state dict ({str(e).splitlines()[0][:150]})") from None
        state = {k: v for k, v in state.items() if k.startswith("features.") and int(k.split(".")[1]) < _VGG19_CUTS[-1]}
        try:
            self.load_state_dict({**state, "mean": self.mean, "std": self.std}, strict=True)
        except RuntimeError as e:
            raise MarionetError(f"{path}: not torchvision's vgg19 layout ({str(e).splitlines()[0][:150]})") from None


def find_vgg19_weights(configured: str | None = None) -> Path | None:
    """The config's ``vgg19_weights``, else $MARIONET_VGG19_WEIGHTS, else torch.hub's cache (where
    ``download_vgg19`` puts them); None when there are none. Never uses the network."""
    for candidate in (configured, os.environ.get("MARIONET_VGG19_WEIGHTS")):
        if candidate:
            if not Path(candidate).is_file():
                raise MarionetError(f"{candidate}: VGG19 weights file not found")
            return Path(candidate)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(VGG19_URL).name
    return cached if cached.is_file() else None


def download_vgg19() -> Path:
    """Fetch torchvision's ImageNet VGG19 weights into torch.hub's cache (only when the user asks)."""
    try:
        torch.hub.load_state_dict_from_url(VGG19_URL, map_location="cpu", progress=False)
    except Exception as e:  # noqa: BLE001 -- URL, SSL and socket errors alike
        raise MarionetError(f"{VGG19_URL}: could not download the VGG19 weights ({str(e).splitlines()[0][:150]}); "
                            "give a local file with train_params.vgg19_weights or MARIONET_VGG19_WEIGHTS") from None
    return find_vgg19_weights()


class ImagePyramid(nn.Module):
    """Anti-aliased copies of an image at the given scales, keyed 'prediction_<scale>'."""

    def __init__(self, scales, num_channels: int = 3):
        super().__init__()
        self.downs = nn.ModuleDict({str(s).replace(".", "-"): AntiAliasInterpolation2d(num_channels, s) for s in scales})

    def forward(self, x) -> dict[str, torch.Tensor]:
        return {"prediction_" + k.replace("-", "."): down(x) for k, down in self.downs.items()}


MIN_VGG_SIZE = 16  # relu5_1 comes after four 2x2 poolings


class PerceptualPyramidLoss(nn.Module):
    """sum over scales and VGG19 layers of w_i * mean |phi_i(prediction) - phi_i(target)|.

    backbone 'vgg19' needs ImageNet weights (see ``find_vgg19_weights``). Without them the fallback is
    'pixels': the same pyramid compared in pixel space (L1 per scale, weight = the sum of the layer
    weights); on puppets, at equal training time on a CPU, it beat a randomly initialised VGG19
    (README, benchmarks/perceptual_fallback.py). Pyramid levels smaller than 16 px, where VGG19's
    fourth pooling would leave nothing, are compared in pixel space whatever the backbone.
    """

    def __init__(self, weights, backbone: str = "vgg19", vgg_path=None):
        super().__init__()
        self.weights = list(weights)
        self.vgg = None
        if backbone == "vgg19":
            path = find_vgg19_weights(vgg_path)
            if path is None:
                self.description = ("pixel-space pyramid: no VGG19 weights found (set train_params.vgg19_weights or "
                                    "MARIONET_VGG19_WEIGHTS, or pass --download-vgg19), so the perceptual loss "
                                    "falls back to a pixel-space L1 pyramid")
                backbone = "pixels"
            else:
                self.vgg = Vgg19()
                self.vgg.load_torchvision(path)
                self.description = f"VGG19 with the ImageNet weights of {path}"
        elif backbone == "random-vgg19":
            self.vgg = Vgg19()  # random features, fixed by the caller's seed
            self.description = "randomly initialised VGG19 (train_params.perceptual_backbone: random-vgg19)"
        elif backbone == "pixels":
            self.description = "pixel-space pyramid (train_params.perceptual_backbone: pixels)"
        else:
            raise MarionetError(f"perceptual backbone {backbone!r}: use vgg19, random-vgg19 or pixels")
        self.backbone = backbone

    def forward(self, generated: dict, real: dict) -> torch.Tensor:
        total = 0.0
        for key in generated:
            if self.vgg is None or min(generated[key].shape[-2:]) < MIN_VGG_SIZE:
                total = total + sum(self.weights) * (generated[key] - real[key].detach()).abs().mean()
                continue
            x, y = self.vgg(generated[key]), self.vgg(real[key])
            for w, a, b in zip(self.weights, x, y):
                if w:
                    total = total + w * (a - b.detach()).abs().mean()
        return total


def lsgan_generator_loss(prediction_maps: list[torch.Tensor]) -> torch.Tensor:
    return sum(((1 - p) ** 2).mean() for p in prediction_maps)


def lsgan_discriminator_loss(real_maps: list[torch.Tensor], fake_maps: list[torch.Tensor]) -> torch.Tensor:
    return sum(((1 - r) ** 2 + f ** 2).mean() for r, f in zip(real_maps, fake_maps))


def feature_matching_loss(real_features: list[torch.Tensor], fake_features: list[torch.Tensor], weights) -> torch.Tensor:
    return sum(w * (r - f).abs().mean() for w, r, f in zip(weights, real_features, fake_features) if w)


def keypoint_separation_loss(value: torch.Tensor, distance: float) -> torch.Tensor:
    """Mean over ordered pairs of distinct keypoints of max(0, distance - |x_i - x_j|).

    value (B, K, 2). A prior in the spirit of face-vid2vid's keypoint prior: keypoints that collapse
    onto one part (here, the puppet's torso) move it the same way and leave thin parts without one.
    """
    k = value.shape[1]
    gaps = (value[:, :, None] - value[:, None]).square().sum(-1).add(1e-12).sqrt()   # (B, K, K)
    off_diagonal = ~torch.eye(k, dtype=torch.bool, device=value.device)
    return F.relu(distance - gaps)[:, off_diagonal].mean()


def detach_kp(kp: dict) -> dict:
    return {k: v.detach() for k, v in kp.items()}


class Objective(nn.Module):
    """What the trainer needs from a family's losses.

    ``objective(batch) -> (losses, generated)`` is the generator side (so DistributedDataParallel can
    wrap the objective); ``discriminator_loss(batch, generated, discriminator=None)`` the other side,
    where ``discriminator`` may be a DDP wrapper of ``self.discriminator``: it is called once on real
    and fake together, since DDP expects one forward per backward. The discriminator is not a
    submodule (its own optimiser trains it), and the generator side calls it with detached parameters
    (``frozen_discriminator``), so gradients on its weights, which the official training loops zero
    before the discriminator step, are never formed. ``trains_discriminator`` tells the trainer
    whether to run the discriminator side at all.
    """

    trains_discriminator = False

    def visualize(self, batch: dict, generated: dict):
        """A PIL image of a training step for the run's visuals/ (source, driving, keypoints, prediction...)."""
        from marionet.visualize import training_grid

        return training_grid(batch, generated)

    def describe(self) -> list[str]:
        """Lines the trainer prints once at the start: choices made for the user (e.g. the perceptual
        backbone and why)."""
        return [f"perceptual loss: {m.description}" for m in self.modules() if isinstance(m, PerceptualPyramidLoss)]

    def __init__(self, model: nn.Module):
        super().__init__()
        self.kp_detector, self.generator = model.kp_detector, model.generator
        self._discriminator = [model.discriminator]  # a list hides it from nn.Module's registration

    @property
    def discriminator(self):
        return self._discriminator[0]

    def frozen_discriminator(self, *args, **kwargs):
        params = {k: v.detach() for k, v in self.discriminator.named_parameters()}
        return functional_call(self.discriminator, (params, dict(self.discriminator.named_buffers())), args, kwargs)

    def forward(self, batch: dict):
        return self.generator_loss(batch)
