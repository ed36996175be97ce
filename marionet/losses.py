"""Training objectives: perceptual pyramid, LSGAN, feature matching, equivariance.

``FOMMObjective`` computes the official FOMM losses (GeneratorFullModel / DiscriminatorFullModel)
from a batch; the weights come from the config's ``train_params.loss_weights``.
"""
from __future__ import annotations

import os
import socket
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from marionet.errors import MarionetError
from marionet.geometry import RandomTPS
from marionet.nn.blocks import AntiAliasInterpolation2d

VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
# VGG19 'features' up to relu5_1, cut after relu1_1, relu2_1, relu3_1, relu4_1, relu5_1.
_VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512]
_VGG19_CUTS = (2, 7, 12, 21, 30)


class Vgg19(nn.Module):
    """Frozen VGG19 feature pyramid; parameter names follow torchvision's ``vgg19().features``."""

    def __init__(self):
        super().__init__()
        layers, channels = [], 3
        for v in _VGG19_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, v, 3, padding=1), nn.ReLU(inplace=False)]
                channels = v
        self.features = nn.Sequential(*layers)
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


_warned = set()


def find_vgg19_weights(configured: str | None = None) -> Path | None:
    """The config's ``vgg19_weights``, $MARIONET_VGG19_WEIGHTS, torch.hub's cache, or a download when online."""
    for candidate in (configured, os.environ.get("MARIONET_VGG19_WEIGHTS")):
        if candidate:
            if not Path(candidate).is_file():
                raise MarionetError(f"{candidate}: VGG19 weights file not found")
            return Path(candidate)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(VGG19_URL).name
    if cached.is_file():
        return cached
    if os.environ.get("MARIONET_OFFLINE", "0") != "1":
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(20)
        try:
            torch.hub.load_state_dict_from_url(VGG19_URL, map_location="cpu", progress=False)
            return cached
        except Exception:
            pass
        finally:
            socket.setdefaulttimeout(previous)
    return None


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
                if "vgg19" not in _warned:
                    warnings.warn("no VGG19 weights found (set train_params.vgg19_weights or MARIONET_VGG19_WEIGHTS); "
                                  "the perceptual loss falls back to a pixel-space L1 pyramid", stacklevel=2)
                    _warned.add("vgg19")
                backbone = "pixels"
            else:
                self.vgg = Vgg19()
                self.vgg.load_torchvision(path)
        elif backbone == "random-vgg19":
            self.vgg = Vgg19()  # random features, fixed by the caller's seed
        elif backbone != "pixels":
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


class FOMMObjective(Objective):
    """The official FOMM losses. ``model`` is a FOMM; vgg/pyramid are frozen helpers.

    generator_loss(batch) -> (losses dict, generated dict); discriminator_loss(batch, generated) -> losses.
    batch: {"source": (B,3,H,W), "driving": (B,3,H,W), "seed": (B,) int64 per-sample seeds}.
    The discriminator is called with its parameters detached in the generator loss, so those
    gradients (which the official code zeroes before the discriminator step) are never formed.
    """

    def __init__(self, model: nn.Module, train_params: dict):
        super().__init__(model)
        weights = train_params["loss_weights"]
        self.weights = weights
        self.scales = train_params.get("scales", [1])
        self.disc_scales = model.discriminator.scales if model.discriminator is not None else []
        self.pyramid = ImagePyramid(sorted(set(self.scales) | set(self.disc_scales), key=lambda s: -s))
        self.perceptual = PerceptualPyramidLoss(weights.get("perceptual", [0]), train_params.get("perceptual_backbone", "vgg19"),
                                                train_params.get("vgg19_weights"))
        self.transform_params = train_params.get("transform_params", {})
        self.align_corners = model.align_corners
        self.separation_distance = float(train_params.get("keypoint_separation_distance", 0.2))
        # As in the official train.py: no adversarial term, no discriminator training.
        self.trains_discriminator = bool(weights.get("generator_gan", 0))

    def generator_loss(self, batch: dict):
        source, driving = batch["source"], batch["driving"]
        kp_source, kp_driving = self.kp_detector(source), self.kp_detector(driving)
        generated = self.generator(source, kp_driving=kp_driving, kp_source=kp_source,
                                   background=self.generator.background(source, driving))
        generated.update(kp_source=kp_source, kp_driving=kp_driving)
        losses = {}
        real = self.pyramid(driving)
        fake = self.pyramid(generated["prediction"])
        if sum(self.weights.get("perceptual", [0])):
            losses["perceptual"] = self.perceptual({f"prediction_{s}": fake[f"prediction_{s}"] for s in self.scales},
                                                   {f"prediction_{s}": real[f"prediction_{s}"] for s in self.scales})
        if self.weights.get("generator_gan", 0):
            kp = detach_kp(kp_driving)
            d_fake, d_real = self.frozen_discriminator(fake, kp=kp), self.frozen_discriminator(real, kp=kp)
            losses["gen_gan"] = self.weights["generator_gan"] * lsgan_generator_loss(
                [d_fake[f"prediction_map_{s}"] for s in self.disc_scales])
            fm = self.weights.get("feature_matching", [0])
            if sum(fm):
                losses["feature_matching"] = sum(
                    feature_matching_loss(d_real[f"feature_maps_{s}"], d_fake[f"feature_maps_{s}"], fm)
                    for s in self.disc_scales)
        if self.weights.get("keypoint_separation", 0):
            value = torch.cat([kp_source["value"], kp_driving["value"]])
            losses["keypoint_separation"] = self.weights["keypoint_separation"] * keypoint_separation_loss(
                value, self.separation_distance)
        w_value, w_jac = self.weights.get("equivariance_value", 0), self.weights.get("equivariance_jacobian", 0)
        if w_value or w_jac:
            transform = RandomTPS(batch["seed"].tolist(), device=driving.device, **self.transform_params)
            transformed = transform.warp_frames(driving, self.align_corners)
            kp_t = self.kp_detector(transformed)
            generated.update(transformed_frame=transformed, transformed_kp=kp_t)
            if w_value:
                losses["equivariance_value"] = w_value * (kp_driving["value"] - transform.warp_coordinates(kp_t["value"])).abs().mean()
            if w_jac and "jacobian" in kp_t:
                jac_t = transform.jacobian(kp_t["value"]) @ kp_t["jacobian"]
                value = torch.inverse(kp_driving["jacobian"]) @ jac_t
                eye = torch.eye(2, dtype=value.dtype, device=value.device)
                losses["equivariance_jacobian"] = w_jac * (eye - value).abs().mean()
        return losses, generated

    def discriminator_loss(self, batch: dict, generated: dict, discriminator=None) -> dict:
        """LSGAN discriminator loss on [real; fake] in one call (it normalises per sample, so this equals two)."""
        discriminator = discriminator or self.discriminator
        kp = detach_kp(generated["kp_driving"])
        kp = {k: torch.cat([v, v]) for k, v in kp.items()}
        both = self.pyramid(torch.cat([batch["driving"], generated["prediction"].detach()]))
        maps = discriminator(both, kp=kp)
        b = batch["driving"].shape[0]
        real = [maps[f"prediction_map_{s}"][:b] for s in self.disc_scales]
        fake = [maps[f"prediction_map_{s}"][b:] for s in self.disc_scales]
        return {"disc_gan": self.weights.get("discriminator_gan", 1) * lsgan_discriminator_loss(real, fake)}


def _reconstruction_weights(weights) -> list[float]:
    """``loss_weights.reconstruction``: a list (one weight per discriminator map), or one number for
    the pixel term alone (0 turns reconstruction off)."""
    if isinstance(weights, (int, float)):
        return [float(weights)] if weights else []
    return [float(w) for w in weights]


class MonkeyNetObjective(Objective):
    """The official Monkey-Net losses (monkey-net ``modules/losses.py``: GeneratorFullModel and
    DiscriminatorFullModel). ``model`` is a ``MonkeyNet``; weights from ``train_params.loss_weights``.

    Generator side, from one discriminator pass on [real; fake] (its list [image, block_1, ..., block_n,
    scores]):
      - ``reconstruction``: w_0 * mean |prediction - driving| (item 0 of the list is the image itself);
      - ``feature_matching``: sum over i >= 1 of w_i * mean |D_i(fake) - D_i(real)| (the rest of the
        official "reconstruction" list; the two keys together are the official sum);
      - ``reconstruction_deformed`` (optional): w * mean |driving - source warped by the dense flow|;
      - ``gen_gan``: w * mean (1 - D(fake))^2.
    Keypoints are not detached on the generator side (``detach_kp_generator: False``): the detector is
    trained through the generator and through the discriminator's keypoint embedding, on both the real
    and the fake branch, as in the official code. The discriminator is not a submodule (its own
    optimiser trains it) and is called with detached parameters here, so the official gradients on its
    weights, which its training loop zeroes before the discriminator step, are never formed.

    Discriminator side: ``disc_gan``: w * mean[(1 - D(real))^2 + D(fake)^2] on the detached prediction
    with detached keypoints (``detach_kp_discriminator: True`` in every official config; always so here,
    since the keypoint detector has already stepped when the discriminator loss is computed).

    The source and driving frames go through the keypoint detector in one batch, as the official code
    does (it stacks them on the time axis), so BatchNorm sees both.
    """

    def __init__(self, model: nn.Module, train_params: dict):
        super().__init__(model)
        weights = dict(train_params.get("loss_weights") or {})
        self.weights = weights
        self.reconstruction = _reconstruction_weights(weights.get("reconstruction", [10, 10, 10, 10, 1]))
        self.w_deformed = float(weights.get("reconstruction_deformed", 0) or 0)
        self.w_gen_gan = float(weights.get("generator_gan", 1) or 0)
        self.w_disc_gan = float(weights.get("discriminator_gan", 1) or 0)
        self.detach_kp_generator = bool(train_params.get("detach_kp_generator", False))
        # Its feature-matching terms need a trained discriminator even without the adversarial term.
        self.trains_discriminator = bool(self.w_gen_gan or any(self.reconstruction[1:]))
        needs_disc = any(self.reconstruction[1:]) or self.w_gen_gan or self.w_disc_gan
        if needs_disc and model.discriminator is None:
            raise MarionetError("train_params.loss_weights: the reconstruction feature terms and the GAN terms need "
                                "model_params.discriminator_params")
        if model.discriminator is not None and len(self.reconstruction) > len(model.discriminator.down_blocks) + 1:
            raise MarionetError(
                f"train_params.loss_weights.reconstruction: {len(self.reconstruction)} weights, but the discriminator "
                f"returns {len(model.discriminator.down_blocks) + 1} maps before its scores (the image and "
                f"{len(model.discriminator.down_blocks)} blocks)")

    def generator_loss(self, batch: dict):
        source, driving = batch["source"], batch["driving"]
        b = source.shape[0]
        kp_both = self.kp_detector(torch.cat([source, driving]))
        kp_source = {k: v[:b] for k, v in kp_both.items()}
        kp_driving = {k: v[b:] for k, v in kp_both.items()}
        if self.detach_kp_generator:
            generated = self.generator(source, kp_driving=detach_kp(kp_driving), kp_source=detach_kp(kp_source))
        else:
            generated = self.generator(source, kp_driving=kp_driving, kp_source=kp_source)
        generated.update(kp_source=kp_source, kp_driving=kp_driving)
        prediction = generated["prediction"]
        losses = {}
        if self.reconstruction and self.reconstruction[0]:
            losses["reconstruction"] = self.reconstruction[0] * (prediction - driving).abs().mean()
        if any(self.reconstruction[1:]) or self.w_gen_gan:
            # One call on [real; fake]: the discriminator normalises per sample, so this equals two calls.
            kp_d = {k: torch.cat([v, v]) for k, v in kp_driving.items() if k != "heatmap"}
            kp_s = {k: torch.cat([v, v]) for k, v in kp_source.items() if k != "heatmap"}
            maps = self.frozen_discriminator(torch.cat([driving, prediction]), kp_driving=kp_d, kp_source=kp_s)
            real, fake = [m[:b] for m in maps], [m[b:] for m in maps]
            terms = [w * (f - r).abs().mean() for w, r, f in zip(self.reconstruction[1:], real[1:-1], fake[1:-1]) if w]
            if terms:
                losses["feature_matching"] = sum(terms)
            if self.w_gen_gan:
                losses["gen_gan"] = self.w_gen_gan * lsgan_generator_loss([fake[-1]])
        if self.w_deformed:
            losses["reconstruction_deformed"] = self.w_deformed * (driving - generated["deformed"]).abs().mean()
        if not losses:
            raise MarionetError("train_params.loss_weights: every Monkey-Net generator loss weight is 0")
        return losses, generated

    def discriminator_loss(self, batch: dict, generated: dict, discriminator=None) -> dict:
        """LSGAN discriminator loss on [real; fake] in one call, with detached prediction and keypoints."""
        discriminator = discriminator or self.discriminator
        kp_d = {k: torch.cat([v, v]) for k, v in detach_kp(generated["kp_driving"]).items() if k != "heatmap"}
        kp_s = {k: torch.cat([v, v]) for k, v in detach_kp(generated["kp_source"]).items() if k != "heatmap"}
        maps = discriminator(torch.cat([batch["driving"], generated["prediction"].detach()]),
                             kp_driving=kp_d, kp_source=kp_s)
        b = batch["driving"].shape[0]
        scores = maps[-1]
        return {"disc_gan": self.w_disc_gan * lsgan_discriminator_loss([scores[:b]], [scores[b:]])}
