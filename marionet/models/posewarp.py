"""Pose-guided transfer (Balakrishnan et al., CVPR 2018, "Synthesizing Images of Humans in Unseen Poses").

The whole family in one file: given a source image, its joints and target joints, render the person
in the target pose with four modules (``PosewarpGenerator``):
  1. source segmentation: a U-Net on the source and its pose maps gives logits for [background,
     limbs]; the log limb-mask prior is added and a softmax taken;
  2. weight-free per-limb warping: each limb layer (mask x source) is warped by its limb's
     similarity transform (``warp_limbs``); the background layer stays;
  3. foreground synthesis: a U-Net on the warped limbs and the target pose maps gives a colour image
     and a mask;
  4. background hole-filling: a U-Net on the masked background and its mask (with the source pose);
  then the composite y = M fg + (1 - M) bg.
Also the plain U-Net baseline (``generator_params.architecture: unet``: source + both pose maps),
the pose-conditioned discriminator (binary cross-entropy), and the objective: VGG19 features
normalised per layer and channel by statistics of the user's data (``marionet vgg-stats``), or the
pixel-space pyramid the other families fall back to without VGG19 weights; + 0.1 x adversarial in
the second stage, the discriminator first trained alone.

Conventions (the original's): images in [-1, 1] inside the networks ([0, 1] outside, as everywhere
in marionet), pose maps at 1/posemap_downsample of the frame, pixel-space (x, y) with pixel centres
at integers, transforms (B, L+1, 2, 3) mapping target pixels to source pixels. The data side (pose
maps, limb masks, transforms, pair preparation) is ``marionet.data.poses``.

Shapes: B batch, J joints (14 or 8), L limbs (10 or 5), H x W frame, h x w = H/d x W/d pose maps.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from marionet.config import LossWeights, TrainParams, check_divisible, check_values, frame_shape, parse_section
from marionet.data import poses
from marionet.errors import ConfigError, MarionetError
from marionet.losses import ImagePyramid, Objective, PerceptualPyramidLoss, Vgg19, find_vgg19_weights
from marionet.models.family import ModelFamily


# --------------------------------------------------------------------------------------------
# Weight-free layers (the original's TensorFlow helpers)
# --------------------------------------------------------------------------------------------

def affine_warp(image: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """image (N, C, H, W), theta (N, 2, 3) pixel-space backward maps -> (N, C, H, W): output pixel
    (x, y) samples theta (x, y, 1) bilinearly in the image reflect-padded by 1 px, coordinates
    clamped to that padded image (far outside: rows/columns 1 and W-2, not the edge)."""
    n, c, h, w = image.shape
    padded = F.pad(image, (1, 1, 1, 1), mode="reflect")                          # (N, C, H+2, W+2)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=image.dtype, device=image.device),
                            torch.arange(w, dtype=image.dtype, device=image.device), indexing="ij")
    grid = torch.stack([xs, ys, torch.ones_like(xs)], -1).reshape(1, -1, 3)       # (1, HW, 3)
    source = grid @ theta.to(image.dtype).transpose(1, 2)                         # (N, HW, 2)
    x = (source[..., 0] + 1).clamp(0, w + 1) * (2.0 / (w + 1)) - 1               # align_corners=True
    y = (source[..., 1] + 1).clamp(0, h + 1) * (2.0 / (h + 1)) - 1
    sample = torch.stack([x, y], -1).reshape(n, h, w, 2)
    return F.grid_sample(padded, sample, mode="bilinear", align_corners=True)


def warp_limbs(source: torch.Tensor, masks: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
    """source (B, 3, H, W), masks (B, L+1, H, W), trans (B, L+1, 2, 3) -> (B, 3 (L+1), H, W):
    channels 0-2 the background layer mask_0 x source (not warped), then each limb layer
    mask_k x source warped by trans_k."""
    b, c, h, w = source.shape
    layers = masks.unsqueeze(2) * source.unsqueeze(1)                             # (B, L+1, 3, H, W)
    limbs = layers[:, 1:].reshape(-1, c, h, w)
    warped = affine_warp(limbs, trans[:, 1:].reshape(-1, 2, 3)).reshape(b, -1, h, w)
    return torch.cat([layers[:, 0], warped], 1)


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """The original's x2 up-sampling: out[i, j] samples the reflect-padded input at (j/2, i/2), so even
    outputs copy the input, odd ones average two neighbours, and the last averages n-1 and n-2."""
    for dim in (3, 2):
        n = x.shape[dim]
        after = torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 2, 1)], dim)   # x[k+1], reflected at the end
        odd = (x + after) / 2
        x = torch.stack([x, odd], dim + 1).flatten(dim, dim + 1)
    return x


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------

class Conv(nn.Module):
    """'same' convolution + LeakyReLU(0.2) (the original's ``my_conv``)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, activation: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2)
        self.activation = activation

    def forward(self, x):
        x = self.conv(x)
        return F.leaky_relu(x, 0.2) if self.activation else x


class UNet(nn.Module):
    """The original's U-Net, for ``depth`` stride-2 pairs after the pose level (4 in the original).

    Encoder: 7x7 conv (enc[0]) at H; 3x3 stride 2 (enc[1]) to H/2; the pose maps concatenated there,
    conv (enc[2]); then ``depth`` pairs (stride-2 conv, conv) down to H/2^(depth+1). Decoder,
    depth + 1 steps: x2 up-sampling (``upsample2x``), the skip of that resolution (the second conv
    of each pair, then enc[2]'s output, then enc[0]'s) concatenated, conv (dec[i]).
    encoder: 3 + 2 depth widths; decoder: depth + 1 widths. Output (B, decoder[-1], H, W).
    """

    def __init__(self, in_channels: int, pose_channels: int, encoder, decoder):
        super().__init__()
        depth = (len(encoder) - 3) // 2
        if len(encoder) != 3 + 2 * depth or depth < 1 or len(decoder) != depth + 1:
            raise ConfigError(f"a U-Net needs 3 + 2 depth encoder widths and depth + 1 decoder widths, got "
                              f"{len(encoder)} and {len(decoder)}")
        self.depth = depth
        self.enc0 = Conv(in_channels, encoder[0], kernel=7)
        self.enc1 = Conv(encoder[0], encoder[1], stride=2)
        self.enc2 = Conv(encoder[1] + pose_channels, encoder[2])
        self.down = nn.ModuleList(Conv(encoder[2 + 2 * i], encoder[3 + 2 * i], stride=2) for i in range(depth))
        self.same = nn.ModuleList(Conv(encoder[3 + 2 * i], encoder[4 + 2 * i]) for i in range(depth))
        skips = [encoder[2 + 2 * i] for i in range(depth - 1, -1, -1)] + [encoder[0]]   # widths, deepest first
        widths = [encoder[-1]] + list(decoder[:-1])
        self.up = nn.ModuleList(Conv(w + s, d) for w, s, d in zip(widths, skips, decoder))
        self.out_channels = decoder[-1]

    def forward(self, x, pose):
        """x (B, C, H, W), pose (B, P, H/2, W/2) -> (B, decoder[-1], H, W)."""
        x0 = self.enc0(x)
        x = self.enc2(torch.cat([self.enc1(x0), pose], 1))
        skips = [x0, x]                                                      # H, H/2
        for down, same in zip(self.down, self.same):
            x = same(down(x))
            skips.append(x)
        x = skips.pop()                                                      # the bottleneck
        for up in self.up:
            x = up(torch.cat([upsample2x(x), skips.pop()], 1))
        return x


def _pose_input(pose: torch.Tensor, size) -> torch.Tensor:
    """Pose maps at the U-Net's half resolution (they already are with posemap_downsample 2)."""
    h, w = size[0] // 2, size[1] // 2
    return pose if tuple(pose.shape[2:]) == (h, w) else F.interpolate(pose, size=(h, w), mode="bilinear",
                                                                      align_corners=False)


class PosewarpGenerator(nn.Module):
    """The four modules. inputs: {"source": (B, 3, H, W) in [0, 1], "pose_source", "pose_target":
    (B, J, h, w), "prior": (B, L+1, H, W) log limb masks, "trans": (B, L+1, 2, 3)}
    -> {"prediction": (B, 3, H, W) in [0, 1], "mask": (B, L+1, H, W) the segmentation,
        "warped": (B, 3 (L+1), H, W) in [-1, 1], "foreground", "background": (B, 3, H, W) in [0, 1],
        "foreground_mask": (B, 1, H, W)}."""

    def __init__(self, num_joints: int, num_limbs: int, encoder, decoder, segmentation_width: int = 32,
                 segmentation_bound: float | None = None):
        super().__init__()
        seg_decoder = list(decoder[:-1]) + [segmentation_width]
        self.segmentation = UNet(3, num_joints, encoder, seg_decoder)
        self.segmentation_out = Conv(segmentation_width, num_limbs + 1, activation=False)
        self.foreground = UNet(3 * num_limbs, num_joints, encoder, decoder)
        self.foreground_out = Conv(decoder[-1], 3, activation=False)
        self.foreground_mask = Conv(decoder[-1], 1, activation=False)
        self.background = UNet(4, num_joints, encoder, decoder)
        self.background_out = Conv(decoder[-1], 3, activation=False)
        # the segmentation starts as the prior's
        nn.init.zeros_(self.segmentation_out.conv.weight)
        nn.init.zeros_(self.segmentation_out.conv.bias)
        self.segmentation_bound = segmentation_bound

    def forward(self, inputs: dict) -> dict:
        src = inputs["source"] * 2 - 1
        size = src.shape[2:]
        pose_src, pose_tgt = _pose_input(inputs["pose_source"], size), _pose_input(inputs["pose_target"], size)
        delta = self.segmentation_out(self.segmentation(src, pose_src))
        if self.segmentation_bound:   # B tanh(delta / B): the prior keeps the person out of the background layer
            delta = self.segmentation_bound * torch.tanh(delta / self.segmentation_bound)
        logits = delta + inputs["prior"]
        mask = logits.softmax(1)                                                   # (B, L+1, H, W)
        warped = warp_limbs(src, mask, inputs["trans"])                            # (B, 3 (L+1), H, W)
        x = self.foreground(warped[:, 3:], pose_tgt)
        fg, fg_mask = torch.tanh(self.foreground_out(x)), torch.sigmoid(self.foreground_mask(x))
        bg = torch.tanh(self.background_out(self.background(torch.cat([warped[:, :3], mask[:, :1]], 1), pose_src)))
        y = fg_mask * fg + (1 - fg_mask) * bg
        return {"prediction": (y + 1) / 2, "mask": mask, "warped": warped, "foreground": (fg + 1) / 2,
                "background": (bg + 1) / 2, "foreground_mask": fg_mask}


def composite_on_source(out: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The composite for inference, as (rest (B, 3, H, W), keep (B, 1, H, W)) with the image
    ``rest + keep x source``: the source's own pixels where its segmentation says background, the
    filled background only in the hole the person leaves, the foreground on top. Split so that the
    source's pixels can be taken at its full resolution. Training keeps the original's composite (the
    filled background everywhere): trained with this one, the model learned to copy the source
    (docs/posewarp.md)."""
    s0, m = out["mask"][:, :1], out["foreground_mask"]                             # (B, 1, H, W)
    keep = (1 - m) * s0
    return m * out["foreground"] + (1 - m) * (1 - s0) * out["background"], keep


class UNetGenerator(nn.Module):
    """The baseline: one U-Net on the source with the source and target pose maps, tanh output."""

    def __init__(self, num_joints: int, num_limbs: int, encoder, decoder):
        super().__init__()
        self.unet = UNet(3, 2 * num_joints, encoder, decoder)
        self.out = Conv(decoder[-1], 3, activation=False)

    def forward(self, inputs: dict) -> dict:
        src = inputs["source"] * 2 - 1
        pose = _pose_input(torch.cat([inputs["pose_source"], inputs["pose_target"]], 1), src.shape[2:])
        return {"prediction": (torch.tanh(self.out(self.unet(src, pose))) + 1) / 2}


GENERATORS = {"posewarp": PosewarpGenerator, "unet": UNetGenerator}


class Discriminator(nn.Module):
    """Image (B, 3, H, W) in [0, 1] with both pose maps -> one logit per image (B,).

    5x5 conv (channels[0]), 2x max-pool, both pose maps concatenated, 5x5 conv (channels[1]), then
    3x3 convs, each but the last followed by a 2x pool; flattened, two dense layers (ReLU), one logit.
    """

    def __init__(self, num_joints: int, frame, channels=(64, 128, 256, 256, 256, 256), dense: int = 256):
        super().__init__()
        channels = list(channels)
        self.first = Conv(3, channels[0], kernel=5)
        convs, cin = [], channels[0] + 2 * num_joints
        for i, cout in enumerate(channels[1:]):
            convs.append(Conv(cin, cout, kernel=5 if i == 0 else 3))
            cin = cout
        self.convs = nn.ModuleList(convs)
        pools = len(channels) - 1
        side = (frame[0] >> pools) * (frame[1] >> pools)
        self.dense = nn.Sequential(nn.Linear(channels[-1] * side, dense), nn.ReLU(), nn.Linear(dense, dense), nn.ReLU(),
                                   nn.Linear(dense, 1))

    def forward(self, image, pose_source, pose_target):
        x = F.max_pool2d(self.first(image * 2 - 1), 2)
        x = torch.cat([x, _pose_input(torch.cat([pose_source, pose_target], 1), image.shape[2:])], 1)
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i < len(self.convs) - 1:
                x = F.max_pool2d(x, 2)
        return self.dense(x.flatten(1)).squeeze(1)


# --------------------------------------------------------------------------------------------
# The feature loss
# --------------------------------------------------------------------------------------------

VGG_LAYERS = (1, 3, 6, 8, 11, 13, 15, 17, 20, 22, 24, 26)  # relu1_1 ... relu4_4 in torchvision's vgg19.features
STATS_SUFFIX = ".posewarp-stats.safetensors"


def statistics_path(vgg_path, configured=None) -> Path:
    """Where the activation statistics of the VGG19 weights at ``vgg_path`` live: the config's
    ``vgg_statistics``, else beside the weights."""
    return Path(configured) if configured else Path(str(vgg_path) + STATS_SUFFIX)


class PoseVgg(nn.Module):
    """The original's truncated VGG19: average instead of max pooling, the 12 ReLU outputs relu1_1 to
    relu4_4, from torchvision's ImageNet weights (RGB in [0, 1], ImageNet normalisation)."""

    frozen_features = True   # the trainer may keep ``features`` in bf16 under bf16 autocast

    def __init__(self, vgg_path):
        super().__init__()
        full = Vgg19()
        full.load_torchvision(vgg_path)
        layers = [nn.AvgPool2d(2, 2) if isinstance(m, nn.MaxPool2d) else m for m in full.features[:VGG_LAYERS[-1] + 1]]
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", full.mean)
        self.register_buffer("std", full.std)
        self.requires_grad_(False)

    def forward(self, x) -> list[torch.Tensor]:
        x = (x - self.mean) / self.std
        outs, start = [], 0
        for index in VGG_LAYERS:
            x = self.features[start:index + 1](x)
            outs.append(x)
            start = index + 1
        return outs


class NormalizedFeatureLoss(nn.Module):
    """mean over the 12 layers of mean |phi_j(prediction) - phi_j(target)| / (sigma_j + reg), sigma_j
    the per-channel standard deviation of layer j's activations over the training data."""

    def __init__(self, vgg_path, stats_path, reg: float = 0.1):
        super().__init__()
        from marionet.files import read_safetensors

        self.vgg = PoseVgg(vgg_path)
        if not Path(stats_path).is_file():
            raise MarionetError(f"{stats_path}: no VGG activation statistics for {vgg_path}; compute them with "
                                "marionet vgg-stats --config CONFIG --data DIR (or set train_params.perceptual_backbone: "
                                "pixels)")
        stats, _ = read_safetensors(stats_path)
        try:
            std = [stats[f"std_{j}"].float() for j in range(len(VGG_LAYERS))]
        except KeyError as e:
            raise MarionetError(f"{stats_path}: not VGG activation statistics (no {e})") from None
        for j, s in enumerate(std):
            self.register_buffer(f"scale_{j}", 1.0 / (s.view(1, -1, 1, 1) + reg))
        self.description = f"VGG19 features of {vgg_path} normalised by the activation statistics in {stats_path}"

    def forward(self, prediction, target):
        x, y = self.vgg(prediction), self.vgg(target)
        terms = [((a - b.detach()) * getattr(self, f"scale_{j}")).abs().mean() for j, (a, b) in enumerate(zip(x, y))]
        return sum(terms) / len(terms)


@torch.no_grad()
def activation_statistics(vgg_path, images) -> dict[str, torch.Tensor]:
    """Per-channel mean and standard deviation of the 12 layers over ``images``, an iterable of
    (B, 3, H, W) batches in [0, 1] -> {"mean_j", "std_j": (C_j,)} (what ``marionet vgg-stats`` stores)."""
    vgg = PoseVgg(vgg_path).eval()
    sums = None   # per layer: [sum, sum of squares, count] per channel
    for batch in images:
        feats = vgg(batch.float())
        if sums is None:
            sums = [[torch.zeros(f.shape[1], dtype=torch.float64), torch.zeros(f.shape[1], dtype=torch.float64), 0]
                    for f in feats]
        for acc, f in zip(sums, feats):
            f = f.double().transpose(0, 1).flatten(1)                           # (C, B h w)
            acc[0] += f.sum(1)
            acc[1] += (f ** 2).sum(1)
            acc[2] += f.shape[1]
    if sums is None:
        raise MarionetError("no images to compute VGG statistics from")
    out = {}
    for j, (s1, s2, n) in enumerate(sums):
        mean = s1 / n
        out[f"mean_{j}"] = mean.float()
        out[f"std_{j}"] = (s2 / n - mean ** 2).clamp_min(0).sqrt().float()
    return out


# --------------------------------------------------------------------------------------------
# Objective
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PosewarpLossWeights(LossWeights):
    feature: float = 1.0                               # the VGG feature loss (or its pixel fallback)
    perceptual: tuple[float, ...] = (1.0,)             # the fallback pyramid: sum of these x L1 per scale
    generator_gan: float = 0.0                         # stage 2: 0.1
    discriminator_gan: float = 1.0


@dataclass(frozen=True)
class PosewarpTrainParams(TrainParams):
    lr: float = 1e-4
    discriminator_warmup: int = 5                      # steps the discriminator trains alone (stage 2)
    vgg_statistics: str | None = None                  # default: beside the VGG19 weights (marionet vgg-stats)
    vgg_reg: float = 0.1
    loss_weights: PosewarpLossWeights = field(default_factory=PosewarpLossWeights)


class PosewarpObjective(Objective):
    """Stage 1: the feature loss only. Stage 2 (``loss_weights.generator_gan`` > 0): + that weight x
    BCE(D(generated), real), the discriminator trained with BCE on [real; generated], alone for the
    first ``discriminator_warmup`` steps (the generator's losses are multiplied by 0 then; its Adam
    state, fresh after ``--init``, does not move). Batch: {"source", "target" (B, 3, H, W) in [0, 1],
    "pose_source", "pose_target", "prior", "trans"} (``marionet.data.pose_videos.PosePairs``)."""

    def __init__(self, model: "Posewarp", params: PosewarpTrainParams):
        super().__init__(model)
        self.weights = w = params.loss_weights
        self.warmup = params.discriminator_warmup
        self.pyramid = ImagePyramid(params.scales)
        vgg_path = find_vgg19_weights(params.vgg19_weights) if params.perceptual_backbone == "vgg19" else None
        self.perceptual = self.feature = None
        if vgg_path is not None:   # the original's normalised feature loss
            self.feature = NormalizedFeatureLoss(vgg_path, statistics_path(vgg_path, params.vgg_statistics),
                                                 params.vgg_reg)
        else:                      # the pixel-pyramid fallback (or the backbone the config names)
            self.perceptual = PerceptualPyramidLoss(w.perceptual, params.perceptual_backbone, params.vgg19_weights)
        self.trains_discriminator = bool(w.generator_gan)
        if self.trains_discriminator and model.discriminator is None:
            raise MarionetError("train_params.loss_weights.generator_gan: needs model_params.discriminator_params")

    def describe(self) -> list[str]:
        if self.feature is not None:
            return [f"feature loss: {self.feature.description}"]
        return [f"feature loss: {self.perceptual.description} (posewarp's normalised VGG19 loss needs VGG19 weights)"]

    def generator_loss(self, batch: dict):
        generated = self.model_generator(batch)
        prediction, target = generated["prediction"], batch["target"]
        w = self.weights
        losses = {}
        if self.feature is not None:
            losses["feature"] = w.feature * self.feature(prediction, target)
        else:
            fake, real = self.pyramid(prediction), self.pyramid(target)
            losses["feature"] = w.feature * self.perceptual(fake, real)
        if self.trains_discriminator:
            logits = self.frozen_discriminator(prediction, batch["pose_source"], batch["pose_target"])
            losses["gen_gan"] = w.generator_gan * F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
            if int(self.discriminator.steps) < self.warmup:
                losses = {k: 0 * v for k, v in losses.items()}
        return losses, generated

    def model_generator(self, batch: dict) -> dict:
        return self.generator({k: batch[k] for k in ("source", "pose_source", "pose_target", "prior", "trans")})

    def discriminator_loss(self, batch: dict, generated: dict, discriminator=None) -> dict:
        discriminator = discriminator or self.discriminator
        b = batch["target"].shape[0]
        images = torch.cat([batch["target"], generated["prediction"].detach()])
        logits = discriminator(images, batch["pose_source"].repeat(2, 1, 1, 1), batch["pose_target"].repeat(2, 1, 1, 1))
        labels = torch.cat([torch.ones(b), torch.zeros(b)]).to(logits)
        self.discriminator.steps += 1
        return {"disc_gan": self.weights.discriminator_gan * F.binary_cross_entropy_with_logits(logits, labels)}

    def visualize(self, batch: dict, generated: dict):
        return pose_grid(batch, generated)


def pose_grid(batch: dict, generated: dict, rows: int = 4):
    """One row per sample: source | target | segmentation (limbs coloured) | warped limbs | foreground
    mask | background | prediction (the baseline: source | target | prediction)."""
    from PIL import Image

    from marionet.visualize import keypoint_colours

    def hwc(t):
        t = t.detach().float().cpu().clamp(0, 1)
        return (t.expand(3, -1, -1) if t.shape[0] == 1 else t).permute(1, 2, 0).numpy()

    lines = []
    for i in range(min(rows, batch["source"].shape[0])):
        cells = [hwc(batch["source"][i]), hwc(batch["target"][i])]
        if "mask" in generated:
            mask = generated["mask"][i].detach().float().cpu()                          # (L+1, H, W)
            colours = torch.tensor([(0, 0, 0)] + keypoint_colours(mask.shape[0] - 1), dtype=torch.float32) / 255
            cells.append(torch.einsum("lhw,lc->hwc", mask, colours).numpy())
            warped = generated["warped"][i, 3:].detach().float().cpu().reshape(-1, 3, *mask.shape[1:]).sum(0)
            cells += [hwc((warped + 1) / 2), hwc(generated["foreground_mask"][i]), hwc(generated["background"][i])]
        cells.append(hwc(generated["prediction"][i]))
        lines.append(np.concatenate(cells, axis=1))
    return Image.fromarray((np.concatenate(lines) * 255).round().astype(np.uint8))


# --------------------------------------------------------------------------------------------
# The family
# --------------------------------------------------------------------------------------------

_VALUES = {
    "generator_params.encoder": "count", "generator_params.decoder": "count",
    "generator_params.segmentation_width": "count", "generator_params.segmentation_bound": "positive",
    "discriminator_params.channels": "count", "discriminator_params.dense": "count",
}


def pose_params(config: dict, source: str = "config") -> poses.PoseParams:
    """``model_params.pose_params`` of a posewarp config, typed and checked."""
    where = f"{source}: model_params.pose_params"
    params = parse_section(poses.PoseParams, config["model_params"].get("pose_params"), where)
    params.validate(where)
    return params


class Posewarp(ModelFamily):
    """``model_params``: ``pose_params`` (``marionet.data.poses.PoseParams``: joint set, normalisation,
    pose-map and limb-mask sizes, augmentation), ``generator_params`` (architecture posewarp | unet,
    encoder and decoder widths, segmentation_width) and ``discriminator_params`` (channels, dense).
    No keypoint detector: the joints come with the data (or from mediapipe)."""

    family = "posewarp"
    TrainParams = PosewarpTrainParams
    driven_by_joints = True   # reconstruction feeds it ground-truth joints

    def __init__(self, model_params: dict, with_discriminator: bool = True, frame=(256, 256),
                 params: poses.PoseParams | None = None):
        super().__init__()
        self.pose = params or poses.PoseParams()
        self.frame = tuple(frame)
        joint_set = self.pose.joints
        generator = dict(model_params.get("generator_params") or {})
        architecture = generator.pop("architecture", "posewarp")
        if architecture not in GENERATORS:
            raise ConfigError(f"model_params.generator_params.architecture: {architecture!r} is not one of "
                              f"{', '.join(GENERATORS)}")
        try:
            self.generator = GENERATORS[architecture](len(joint_set.joints), len(joint_set.limbs), **generator)
        except TypeError as e:
            raise ConfigError(f"model_params.generator_params: {e}") from None
        self.kp_detector = None
        self.discriminator = None
        if with_discriminator and model_params.get("discriminator_params") is not None:
            try:
                self.discriminator = Discriminator(len(joint_set.joints), self.frame,
                                                   **model_params["discriminator_params"])
            except TypeError as e:
                raise ConfigError(f"model_params.discriminator_params: {e}") from None
            self.discriminator.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @classmethod
    def from_config(cls, config: dict, with_discriminator: bool = True) -> "Posewarp":
        params = config["model_params"]
        check_values(params, _VALUES)
        size = frame_shape(config)
        pose = pose_params(config)
        generator = params.get("generator_params") or {}
        depth = (len(generator.get("encoder", [0] * 11)) - 3) // 2
        check_divisible(size, 1, depth + 1, "the U-Nets")
        if params.get("discriminator_params") is not None:
            pools = len(params["discriminator_params"].get("channels", [0] * 6)) - 1
            check_divisible(size, 1, pools, "the discriminator")
        if size[0] % pose.posemap_downsample or size[1] % pose.posemap_downsample:
            raise MarionetError(f"dataset_params.frame_shape: {size[0]}x{size[1]} is not divisible by "
                                f"pose_params.posemap_downsample {pose.posemap_downsample}")
        return cls(params, with_discriminator, size, pose)

    @classmethod
    def training_dataset(cls, config: dict, data_dir, params: TrainParams):
        from marionet.data.pose_videos import PosePairs

        seed = (config.get("dataset_params") or {}).get("random_seed", 0)
        return PosePairs(data_dir, pose_params(config), frame_shape(config), is_train=True, seed=seed,
                         num_repeats=params.num_repeats)

    def objective(self, train_params: PosewarpTrainParams) -> PosewarpObjective:
        return PosewarpObjective(self, train_params)

    def detect(self, frames):
        raise MarionetError("a posewarp model is driven by joints, not by a driving video's keypoints: use "
                            "marionet pose-transfer (or marionet reconstruct on puppets)")

    def adapt_init(self, states: dict):
        """Stage 2 starts from stage 1, which has no discriminator: its step counter starts at 0."""
        return states, ("discriminator.steps",)

    # ---------------------------------------------------------------------------------- inference

    def inputs(self, joints_source: np.ndarray, joints_target: np.ndarray) -> dict[str, torch.Tensor]:
        """The generator's pose inputs for joints already in the model's frame (0-based pixel centres)."""
        p = self.pose
        maps = {k: poses.joint_heatmaps(j, self.frame, p.posemap_downsample, p.sigma_joint, p.joint_set)
                for k, j in (("pose_source", joints_source), ("pose_target", joints_target))}
        maps["prior"] = poses.mask_prior(joints_source, self.frame, p.joint_set, p.limb_width, p.torso_width)
        maps["trans"] = poses.limb_transforms(joints_source, joints_target, p.joint_set)
        return {k: torch.from_numpy(v).float() for k, v in maps.items()}

    @torch.no_grad()
    def transfer(self, source: np.ndarray, joints_source: np.ndarray, joints_target: np.ndarray,
                 batch_size: int = 8, source_background: bool = True) -> np.ndarray:
        """Render ``source`` (H x W x 3, uint8 or float in [0, 1]) in each pose of ``joints_target``
        (T, 14, 2), its own joints being ``joints_source`` (14, 2); joints in 0-based pixel centres of
        the source. Each pair is brought into the model's frame as in training (``pose_params.normalize``),
        and the result brought back: -> (T, H, W, 3) float32 in [0, 1], the source's size, its own
        pixels where the model's frame does not reach. ``source_background``: keep the source's
        background pixels (``composite_on_source``); False gives the original's composite."""
        from marionet.data.video import to_uint8

        image = to_uint8(source)
        base = torch.from_numpy(image.astype(np.float32) / 255)                  # (H, W, 3), for back_to_source
        source_box = poses.joints_bbox(joints_source)
        device = next(self.parameters()).device
        out = []
        for start in range(0, len(joints_target), batch_size):
            items, frames = [], []
            for tgt in joints_target[start:start + batch_size]:
                scale, center = poses.pair_frame(joints_source, tgt, source_box, poses.joints_bbox(tgt),
                                                 image.shape, self.frame, self.pose)
                moved, j_src = poses.center_and_scale(image, joints_source, center, scale, self.frame)
                offset = poses.frame_offset(scale, center, self.frame)
                item = self.inputs(j_src, np.asarray(tgt, np.float64) * scale + offset)
                item["source"] = torch.from_numpy(moved).permute(2, 0, 1).float() / 255
                items.append(item)
                frames.append((scale, offset))
            batch = {k: torch.stack([it[k] for it in items]).to(device) for k in items[0]}
            result = self.generator(batch)
            if source_background and "mask" in result:
                rest, keep = composite_on_source(result)
            else:
                rest, keep = result["prediction"].clamp(0, 1), torch.zeros_like(result["prediction"][:, :1])
            layers = torch.cat([rest, keep], 1).float().cpu()
            for frame, (scale, offset) in zip(layers, frames):
                out.append(back_to_source(frame, base, scale, offset))
        return np.stack(out)


def back_to_source(layers: torch.Tensor, base: torch.Tensor, scale: float, offset) -> np.ndarray:
    """A generated frame of the model's frame as (rest (3), keep (1), S, S) -> the source's (H, W, 3)
    float32 image ``rest + keep x base``, ``base`` the source (H, W, 3) float in [0, 1], clamped to
    [0, 1]: source pixel p shows the model frame at scale p + offset (bilinear), with the source's own
    full-resolution pixel where ``keep`` says so, and everywhere the model's frame does not reach."""
    h, w = base.shape[:2]
    size = layers.shape[1:]
    if scale == 1 and np.all(np.asarray(offset) == 0) and (h, w) == tuple(size):
        sampled, inside = layers.permute(1, 2, 0), torch.ones(h, w, 1)
    else:
        ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                                indexing="ij")
        x, y = xs * scale + float(offset[0]), ys * scale + float(offset[1])
        inside = ((x >= 0) & (x <= size[1] - 1) & (y >= 0) & (y <= size[0] - 1)).float()[..., None]
        grid = torch.stack([2 * x / (size[1] - 1) - 1, 2 * y / (size[0] - 1) - 1], -1).float()[None]
        sampled = F.grid_sample(layers[None], grid, mode="bilinear", align_corners=True)[0].permute(1, 2, 0)
    image = (sampled[..., :3] + sampled[..., 3:] * base).clamp(0, 1)
    return (inside * image + (1 - inside) * base).numpy()
