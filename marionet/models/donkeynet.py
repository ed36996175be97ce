"""Donkey-Net (Paliyam, Agarwal, Comising, 2021, "Donkey-Net: Extending Monkey-Net to Animate Pokemon").

Monkey-Net's networks (``marionet.models.monkeynet``) with attention gates (``marionet.nn.attention``)
in the generator's decoder, the dense-motion hourglass' decoder and the discriminator, trained on
pairs of videos of two identities in the same motion with a two-pass ("dual") reconstruction:

  pass 1: source B[i1], driving keypoints of A[i2] -> compared with B[i2] (B in A's pose);
  pass 2: source A[i0], driving keypoints of pass 1's output -> compared with A[i2].

Each pass has Monkey-Net's losses (pixel L1 and discriminator feature matching, LSGAN) at every scale
of ``train_params.scales`` (default 1, 0.75, 0.5; images resized by adaptive average pooling, aspect
kept), with the discriminator conditioned on the target frame's keypoints. Both passes are
back-propagated (``pass2_gradient: true``, the report's intent); ``pass2_gradient: false`` reproduces
the public code (mangomadhava/donkey-net), whose summed loss is overwritten by pass 1's.

Public-code checkpoints load strictly (``convert_official``): its attention is switched on by
command-line flags, so its configs name none; such a config gets the public code's layout (gates on
all three networks, ECA kernel sizes from its hard-coded width lists), and the gates the checkpoint
lacks are dropped. Weights of levels the public code saves but never runs (it keeps one ECA per
entry of its lists) are ignored. Configs of this family (``family: donkeynet``) may instead set
``attention`` in ``generator_params``, ``dense_motion_params`` and ``discriminator_params`` (see
``marionet.nn.attention``), with widths derived from the network.
"""
from __future__ import annotations

import re
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from marionet.config import frame_shape
from marionet.errors import MarionetError
from marionet.losses import (Objective, PerceptualPyramidLoss, detach_kp, lsgan_discriminator_loss,
                             lsgan_generator_loss)
from marionet.models.monkeynet import (MonkeyNet, MonkeyNetLossWeights, MonkeyNetTrainParams, NormalizationParams,
                                       check_model_params)
from marionet.nn.attention import eca_kernel_size

# The public code's ECA widths by level (its moving-gif config), which fix its kernel sizes whatever
# the real widths: generator decoder, dense-motion decoder, discriminator blocks.
PUBLIC_ECA_WIDTHS = {"generator": (1024, 512, 256, 128, 64, 32), "dense_motion": (512, 256, 128, 64, 32),
                     "discriminator": (64, 128, 256, 256, 512)}
DECODERS = ("video_decoder.", "dense_motion_module.hourglass.decoder.")   # official prefixes of the decoder gates
GATE_PARTS = {"spatial_gate_conv_1": "reduce", "spatial_gate_dil_conv_1": "dilated1", "batch_norm_1": "norm1",
              "spatial_gate_dil_conv_2": "dilated2", "batch_norm_2": "norm2", "spatial_gate_conv_2": "project"}


def _has_attention(model_params: dict) -> bool:
    generator = model_params.get("generator_params") or {}
    sections = [generator, generator.get("dense_motion_params") or {}, model_params.get("discriminator_params") or {},
                model_params.get("kp_detector_params") or {}]
    return any("attention" in s for s in sections)


def public_attention(model_params: dict) -> dict:
    """model_params with the public code's attention layout: gates in the three networks, ECA kernel
    sizes from its width lists by level (MarionetError when a network has more levels than a list)."""
    params = {k: dict(v) if isinstance(v, dict) else v for k, v in model_params.items()}
    generator = params["generator_params"] = dict(params.get("generator_params") or {})
    sections = [("generator", generator, "generator_params")]
    if isinstance(generator.get("dense_motion_params"), dict):
        generator["dense_motion_params"] = dict(generator["dense_motion_params"])
        sections.append(("dense_motion", generator["dense_motion_params"], "generator_params.dense_motion_params"))
    if isinstance(params.get("discriminator_params"), dict):
        sections.append(("discriminator", params["discriminator_params"], "discriminator_params"))
    for network, section, where in sections:
        widths = PUBLIC_ECA_WIDTHS[network]
        levels = section.get("num_blocks", 4)
        if not isinstance(levels, int) or levels > len(widths):
            raise MarionetError(f"model_params.{where}.num_blocks: the public Donkey-Net code has attention for at most "
                                f"{len(widths)} levels here, got {levels!r}; set {where}.attention explicitly")
        section["attention"] = {"eca_kernels": [eca_kernel_size(c) for c in widths[:levels]]}
    return params


def discriminator_fits(side: int, num_blocks: int) -> bool:
    """Whether ``num_blocks`` unpadded 4x4 discriminator blocks (each then pooled 2x; instance norm after
    all but the first, which needs more than one pixel) can run on a side of ``side`` pixels."""
    for i in range(num_blocks):
        side -= 3
        if side < (2 if i else 1):
            return False
        side //= 2
    return side >= 1


# --------------------------------------------------------------------------------------------
# Training objective
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DonkeyNetLossWeights(MonkeyNetLossWeights):
    # VGG19 layers relu1_1..relu5_1 at every scale (marionet's PerceptualPyramidLoss); the report found it
    # faded the images and its config sets 0
    perceptual: tuple[float, ...] = (0,)


@dataclass(frozen=True)
class DonkeyNetTrainParams(MonkeyNetTrainParams):
    scales: tuple[float, ...] = (1, 0.75, 0.5)   # multi-scale losses (the public config's)
    pass2_gradient: bool = True                  # false: pass 2 only logged, as in the public code
    loss_weights: DonkeyNetLossWeights = field(default_factory=DonkeyNetLossWeights)

    def validate(self, where: str) -> None:
        super().validate(where)
        if not self.scales or not all(0 < s <= 1 for s in self.scales):
            raise MarionetError(f"{where}.scales: numbers in (0, 1], got {list(self.scales)}")


class DonkeyNetObjective(Objective):
    """Dual reconstruction (see the module docstring). ``batch``: {"src_a", "src_b", "driving_a",
    "driving_b": (B, 3, H, W)} (``PairedFramesDataset``). Loss keys: ``pass{1,2}_reconstruction``
    (pixel L1 summed over scales), ``pass{1,2}_feature_matching``, ``pass{1,2}_gen_gan``, optionally
    ``pass{1,2}_perceptual`` (every scale) and ``pass{1,2}_reconstruction_deformed`` (full scale), and ``pass{1,2}_disc_gan`` (full scale) on the
    discriminator side. With ``pass2_gradient: false`` the pass-2 values are detached (logged only)."""

    def __init__(self, model: "DonkeyNet", params: DonkeyNetTrainParams):
        super().__init__(model)
        weights = params.loss_weights
        self.reconstruction = weights.reconstruction_list
        self.w_deformed, self.w_gen_gan, self.w_disc_gan = (weights.reconstruction_deformed, weights.generator_gan,
                                                            weights.discriminator_gan)
        self.scales = params.scales
        self.detach_kp_generator = params.detach_kp_generator
        self.pass2_gradient = params.pass2_gradient
        self.perceptual = (PerceptualPyramidLoss(weights.perceptual, params.perceptual_backbone, params.vgg19_weights)
                           if any(weights.perceptual) else None)
        self.needs_disc = bool(self.w_gen_gan or any(self.reconstruction[1:]))
        self.trains_discriminator = self.needs_disc
        disc = model.discriminator
        if (self.needs_disc or self.w_disc_gan) and disc is None:
            raise MarionetError("train_params.loss_weights: the feature-matching and GAN terms need "
                                "model_params.discriminator_params")
        if disc is not None:
            if len(self.reconstruction) > len(disc.down_blocks) + 1:
                raise MarionetError(f"train_params.loss_weights.reconstruction: {len(self.reconstruction)} weights, but "
                                    f"the discriminator returns {len(disc.down_blocks) + 1} maps before its scores")
            h, w = model.frame_shape
            for s in self.scales:
                side = int(min(int(s * h), int(s * w)) * disc.scale_factor)
                if self.needs_disc and not discriminator_fits(side, len(disc.down_blocks)):
                    raise MarionetError(
                        f"train_params.scales: at scale {s:g} the {h}x{w} frames are too small for the "
                        f"discriminator's {len(disc.down_blocks)} blocks; drop the scale or use fewer blocks")

    def _pass(self, source, kp_source, kp_driving, target, kp_target) -> tuple[dict, dict]:
        """One reconstruction: source animated with kp_driving, compared with target -> (losses, generated)."""
        if self.detach_kp_generator:
            kp_source, kp_driving, kp_target = detach_kp(kp_source), detach_kp(kp_driving), detach_kp(kp_target)
        generated = self.generator(source, kp_driving=kp_driving, kp_source=kp_source)
        generated.update(kp_source=kp_source, kp_driving=kp_driving, kp_target=kp_target, target=target)
        prediction = generated["prediction"]
        b, (h, w) = prediction.shape[0], prediction.shape[2:]
        kp_both = {k: torch.cat([v, v]) for k, v in kp_target.items() if k != "heatmap"}
        pixel, matching, gan, perceptual = [], [], [], []
        for s in self.scales:
            size = (int(s * h), int(s * w))
            fake = prediction if s == 1 else F.adaptive_avg_pool2d(prediction, size)
            real = target if s == 1 else F.adaptive_avg_pool2d(target, size)
            if self.reconstruction and self.reconstruction[0]:
                pixel.append(self.reconstruction[0] * (fake - real).abs().mean())
            if self.perceptual is not None:
                perceptual.append(self.perceptual({"scale": fake}, {"scale": real}))
            if self.needs_disc:
                # [real; fake] in one call, both conditioned on the target's keypoints
                maps = self.frozen_discriminator(torch.cat([real, fake]), kp_driving=kp_both, kp_source=kp_both)
                maps_real, maps_fake = [m[:b] for m in maps], [m[b:] for m in maps]
                matching += [wt * (f - r).abs().mean() for wt, r, f in
                             zip(self.reconstruction[1:], maps_real[1:-1], maps_fake[1:-1]) if wt]
                if self.w_gen_gan:
                    gan.append(self.w_gen_gan * lsgan_generator_loss([maps_fake[-1]]))
        losses = {name: sum(terms) for name, terms in
                  (("reconstruction", pixel), ("feature_matching", matching), ("gen_gan", gan),
                   ("perceptual", perceptual)) if terms}
        if self.w_deformed:
            losses["reconstruction_deformed"] = self.w_deformed * (target - generated["deformed"]).abs().mean()
        if not losses:
            raise MarionetError("train_params.loss_weights: every Donkey-Net generator loss weight is 0")
        return losses, generated

    def generator_loss(self, batch: dict):
        src_a, src_b, driving_a, driving_b = batch["src_a"], batch["src_b"], batch["driving_a"], batch["driving_b"]
        b = src_a.shape[0]
        kp = self.kp_detector(torch.cat([src_a, src_b, driving_a, driving_b]))      # one batch of 4B, as BN sees it
        kp_src_a, kp_src_b, kp_drv_a, kp_drv_b = ({k: v[j * b:(j + 1) * b] for k, v in kp.items()} for j in range(4))
        losses1, generated = self._pass(src_b, kp_src_b, kp_drv_a, driving_b, kp_drv_b)
        # Pass 2 is driven by the keypoints of pass 1's output: its gradient reaches pass 1 through them.
        with nullcontext() if self.pass2_gradient else torch.no_grad():   # else only logged
            kp_fake = self.kp_detector(generated["prediction"])
            losses2, generated2 = self._pass(src_a, kp_src_a, kp_fake, driving_a, kp_drv_a)
        generated["pass2"] = generated2
        losses = {f"pass1_{k}": v for k, v in losses1.items()}
        losses.update({f"pass2_{k}": v for k, v in losses2.items()})
        return losses, generated

    def discriminator_loss(self, batch: dict, generated: dict, discriminator=None) -> dict:
        """LSGAN on [targets; detached predictions] of the passes, in one call (DDP: one forward per backward)."""
        discriminator = discriminator or self.discriminator
        passes = [generated, generated["pass2"]] if self.pass2_gradient else [generated]
        losses = self._disc_losses(discriminator, passes, first=1)
        if not self.pass2_gradient:   # logged only, as the public code does
            with torch.no_grad():
                losses.update({k: v.detach() for k, v in
                               self._disc_losses(self.frozen_discriminator, [generated["pass2"]], first=2).items()})
        return losses

    def _disc_losses(self, discriminator, passes: list[dict], first: int) -> dict:
        b = passes[0]["prediction"].shape[0]
        real = torch.cat([g["target"] for g in passes])
        fake = torch.cat([g["prediction"].detach() for g in passes])
        kp = {k: torch.cat([g["kp_target"][k].detach() for g in passes] * 2) for k in passes[0]["kp_target"]
              if k != "heatmap"}
        scores = discriminator(torch.cat([real, fake]), kp_driving=kp, kp_source=kp)[-1]
        n = real.shape[0]
        return {f"pass{first + j}_disc_gan": self.w_disc_gan * lsgan_discriminator_loss(
                    [scores[j * b:(j + 1) * b]], [scores[n + j * b:n + (j + 1) * b]]) for j in range(len(passes))}

    def visualize(self, batch: dict, generated: dict):
        """Pass 1 rows (source B, driving A, keypoints, deformed, prediction), then pass 2 rows."""
        from marionet.visualize import training_grid

        pass1 = training_grid({"source": batch["src_b"], "driving": batch["driving_a"]}, generated)
        pass2 = training_grid({"source": batch["src_a"], "driving": generated["prediction"]}, generated["pass2"])
        return Image.fromarray(np.concatenate([np.asarray(pass1), np.asarray(pass2)], axis=0))


# --------------------------------------------------------------------------------------------
# Container
# --------------------------------------------------------------------------------------------

class DonkeyNet(MonkeyNet):
    """Monkey-Net's networks with attention, trained on paired videos (see the module docstring)."""

    family = "donkeynet"
    TrainParams = DonkeyNetTrainParams

    def __init__(self, model_params: dict, with_discriminator: bool = True, normalization_params=None,
                 frame_size=(64, 64), attention_from_checkpoint: bool = False):
        super().__init__(model_params, with_discriminator, normalization_params)
        self.frame_shape = tuple(frame_size)
        self.attention_from_checkpoint = attention_from_checkpoint   # prune gates an official checkpoint lacks

    @classmethod
    def recognizes(cls, config: dict, states: dict | None = None) -> bool:
        """An official (public-code) checkpoint whose generator or discriminator holds attention weights."""
        if not states:
            return False
        generator, disc = states.get("generator") or {}, states.get("discriminator") or {}
        decoder_gates = tuple(prefix + "eca_convs." for prefix in DECODERS)
        return any(k.startswith(decoder_gates) for k in generator) or any(k.startswith("eca_convs.") for k in disc)

    @classmethod
    def from_config(cls, config: dict, with_discriminator: bool = True) -> "DonkeyNet":
        check_model_params(config)
        params = config["model_params"]
        official = not _has_attention(params)
        if official:
            params = public_attention(params)
        return cls(params, with_discriminator, NormalizationParams.from_config(config), frame_shape(config),
                   attention_from_checkpoint=official)

    def objective(self, train_params: DonkeyNetTrainParams) -> DonkeyNetObjective:
        return DonkeyNetObjective(self, train_params)

    @classmethod
    def training_dataset(cls, config: dict, data_dir, params: DonkeyNetTrainParams):
        from marionet.data.pairs import PairedFramesDataset

        dataset_params = {**(config.get("dataset_params") or {}), "root_dir": str(data_dir)}
        return PairedFramesDataset(**dataset_params, num_repeats=params.num_repeats)

    # ------------------------------------------------------------------------------------- checkpoints

    def _gates(self, network: str) -> dict[str, object]:
        """{official key prefix: the decoder or discriminator holding that gate} of ``network``."""
        if network == "generator":
            dense = self.generator.dense_motion_module
            return dict(zip(DECODERS, (self.generator.video_decoder, dense.hourglass.decoder if dense else None)))
        if network == "discriminator" and self.discriminator is not None:
            return {"": self.discriminator}
        return {}

    def convert_official(self, network: str, state: dict) -> dict:
        """A public-code state dict -> ours; then Monkey-Net's conversion (5-D -> 4-D, ``conv_last``).

        From-official mapping of the gates (i = level, deepest decoder level first):
          <decoder>.eca_convs.i.weight (1, 1, k)       -> <decoder>.attention.eca.i.weight
          <decoder>.spatial_conv.{weight (1, 2, k, k, k), bias} -> <decoder>.attention.spatial.*, the
                                                          middle depth slice (frames have depth 1)
          eca_convs.i.weight                            -> attention.i.eca.weight (discriminator)
          spatial_gate_conv_1.i / spatial_gate_dil_conv_1.i / batch_norm_1.i / spatial_gate_dil_conv_2.i /
          batch_norm_2.i / spatial_gate_conv_2.i        -> attention.i.{reduce, dilated1, norm1, dilated2,
                                                           norm2, project}, 3-D kernels by their middle slice
        Levels at or beyond the network's number of blocks are never run by the public code and are
        dropped. When the config named no attention, a gate the checkpoint does not hold is removed
        from the model (the public code's flag was off); otherwise the strict load reports it.
        """
        gates = self._gates(network)
        out, present = {}, set()
        for key, value in state.items():
            converted = self._convert_gate_key(key, value, gates)
            if converted is None:            # an unused level
                continue
            if converted is False:           # not a gate weight
                out[key] = value
                continue
            name, value, prefix = converted
            present.add(prefix)
            out[name] = value
        if self.attention_from_checkpoint:
            for prefix, holder in gates.items():
                if holder is not None and prefix not in present:
                    holder.attention = None
        return MonkeyNet.convert_official(network, out)

    def _convert_gate_key(self, key: str, value: torch.Tensor, gates: dict):
        """-> (our key, value, gate prefix), None for an unused level's weight, False for other keys."""
        for prefix, holder in gates.items():
            if holder is None:
                continue
            if prefix:                      # a decoder: per-level ECA, one spatial conv
                if not key.startswith(prefix):
                    continue
                rest = key[len(prefix):]
                if rest in ("spatial_conv.weight", "spatial_conv.bias"):
                    return f"{prefix}attention.spatial.{rest.split('.')[1]}", _middle_slice(value), prefix
                match = re.fullmatch(r"eca_convs\.(\d+)\.weight", rest)
                if match is None:
                    continue
                level = int(match.group(1))
                name = f"{prefix}attention.eca.{level}.weight"
            else:                           # the discriminator: one whole gate per level
                match = re.fullmatch(r"(eca_convs|" + "|".join(GATE_PARTS) + r")\.(\d+)\.(\w+)", key)
                if match is None:
                    continue
                part, level = match.group(1), int(match.group(2))
                name = f"attention.{level}.{GATE_PARTS.get(part, 'eca')}.{match.group(3)}"
            levels = len(holder.up_blocks) if prefix else len(holder.down_blocks)
            return None if level >= levels else (name, _middle_slice(value), prefix)
        return False

    def adapt_init(self, states: dict) -> tuple[dict, tuple[str, ...]]:
        """``train --init`` from a Monkey-Net checkpoint (no gates): the gates keep their initialisation."""
        prefixes = []
        for network in ("generator", "discriminator"):
            for prefix, holder in self._gates(network).items():
                if holder is not None and holder.attention is not None:
                    prefixes.append(f"{network}.{prefix}attention")
        return states, tuple(prefixes)


def _middle_slice(value: torch.Tensor) -> torch.Tensor:
    """A 3-D kernel (O, I, d, kh, kw) applied to depth-1 frames: only its middle depth slice sees them."""
    return value[:, :, value.shape[2] // 2] if value.dim() == 5 else value
