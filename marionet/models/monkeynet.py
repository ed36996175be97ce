"""Monkey-Net (Siarohin et al., CVPR 2019, "Animating Arbitrary Objects via Deep Motion Transfer").

The whole family in one file: keypoint detector fitting a Gaussian (mean + full 2x2 covariance) to
each softmax heatmap, the movement embedding shared by the other modules, the part-based dense
motion module (K+1 masks over per-keypoint translations = coarse flow, plus a residual flow), the
motion-transfer generator (warped encoder skips + keypoint embedding at every decoder level,
refinement residual blocks) and the keypoint-conditioned discriminator. Module names follow the
official monkey-net code so that its checkpoints load by name once ``MonkeyNet.convert_official``
has turned its depth-1 ``Conv3d`` weights into ``Conv2d`` ones; constructor arguments are the keys
of the official YAML ``model_params``.

The official code treats every image as a one-frame video (B, C, 1, H, W) and uses depth-1 3-D
convolutions; frames are independent, so this implementation is 2-D throughout.

Every hourglass decoder and the discriminator take an optional ``attention`` config key: Donkey-Net's
gates (``marionet.nn.attention``; the Donkey-Net family, ``marionet.models.donkeynet``, trains them).

Shapes: B batch, K keypoints, C image channels, H x W frame, h x w the resolution of a module.
Keypoints are dicts {"value": (B, K, 2), "covariance": (B, K, 2, 2)} with (x, y) in [-1, 1]
(the official code calls them 'mean' and 'var'). A source may have batch 1 while the driving
keypoints have batch B (one source image, many driving frames).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from marionet.config import (LossWeights, TrainParams, check_divisible, check_values, construct, frame_shape,
                             parse_section)
from marionet.errors import ConfigError, MarionetError
from marionet.geometry import float32_geometry, geometry_precision, make_coordinate_grid
from marionet.losses import Objective, detach_kp, lsgan_discriminator_loss, lsgan_generator_loss
from marionet.models.family import ModelFamily
from marionet.nn.attention import DecoderAttention, DiscriminatorAttention, discriminator_gates, parse_attention
from marionet.nn.blocks import Decoder, DiscriminatorBlock, Encoder, Hourglass, ResBlock2d, SameBlock2d


# --------------------------------------------------------------------------------------------
# Keypoint maths
# --------------------------------------------------------------------------------------------

def smallest_singular_value(matrix: torch.Tensor) -> torch.Tensor:
    """Smallest singular value of (..., 2, 2) matrices, in closed form -> (...).

    sigma_max^2 + sigma_min^2 = |M|_F^2 and sigma_max * sigma_min = |det M|. The official code takes
    sigma_min = sqrt((s1 - s2) / 2), which cancels catastrophically for elongated covariances (and
    can go NaN); here sigma_min = |det| / sigma_max, which is the same number computed stably.
    """
    a, b, c, d = matrix[..., 0, 0], matrix[..., 0, 1], matrix[..., 1, 0], matrix[..., 1, 1]
    s1 = a ** 2 + b ** 2 + c ** 2 + d ** 2
    s2 = torch.sqrt((a ** 2 + b ** 2 - c ** 2 - d ** 2) ** 2 + 4 * (a * c + b * d) ** 2)
    sigma_max = torch.sqrt((s1 + s2) / 2)
    return (a * d - b * c).abs() / sigma_max.clamp_min(torch.finfo(matrix.dtype).tiny)


def clip_covariance(covariance: torch.Tensor, min_singular: float) -> torch.Tensor:
    """Rescale each (..., 2, 2) matrix so that its smallest singular value is at least ``min_singular``."""
    sigma = smallest_singular_value(covariance)[..., None, None]
    sigma = sigma.clamp_min(torch.finfo(covariance.dtype).tiny)
    return torch.clamp(sigma, min=min_singular) * covariance / sigma


@float32_geometry
def heatmap_to_gaussian(heatmap: torch.Tensor, kp_variance="matrix", clip_variance=None) -> dict:
    """Moments of K spatial distributions. heatmap (B, K, h, w), each map summing to 1.

    -> {"value": (B, K, 2), "covariance": (B, K, 2, 2)}. kp_variance 'matrix': full covariance
    (optionally clipped); 'single': one isotropic variance per keypoint, stored as var * I; a float:
    that fixed variance, stored as var * I (constant).
    """
    heat = heatmap + 1e-7                      # as in the official code, keeps variances > 0
    grid = make_coordinate_grid(*heatmap.shape[2:], dtype=heatmap.dtype, device=heatmap.device)  # (h, w, 2)
    mean = (heat.unsqueeze(-1) * grid).sum(dim=(2, 3))                       # (B, K, 2)
    out = {"value": mean}
    eye = torch.eye(2, dtype=heatmap.dtype, device=heatmap.device)
    if kp_variance == "matrix":
        diff = grid - mean[:, :, None, None, :]                                # (B, K, h, w, 2)
        cov = torch.einsum("bkhw,bkhwi,bkhwj->bkij", heat, diff, diff)         # (B, K, 2, 2)
        if clip_variance:
            cov = clip_covariance(cov, clip_variance)
        out["covariance"] = cov
    elif kp_variance == "single":
        diff = grid - mean[:, :, None, None, :]
        var = (heat.unsqueeze(-1) * diff ** 2).sum(dim=(2, 3)).mean(-1)        # (B, K)
        out["covariance"] = var[..., None, None] * eye
    else:
        b, k = mean.shape[:2]
        out["covariance"] = (float(kp_variance) * eye).expand(b, k, 2, 2)
    return out


@float32_geometry
def shift_flow(mask: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """mask (B, K+1, h, w), shift (B, K+1, 2) -> the coarse flow (B, 2, h, w)."""
    return torch.einsum("bkhw,bkc->bchw", mask, shift)


@float32_geometry
def render_gaussians(kp: dict, spatial_size, kp_variance="matrix") -> torch.Tensor:
    """Unnormalised Gaussians exp(-d^T Sigma^-1 d / 2) at the keypoints: (B, K, 2) -> (B, K, h, w), peak 1."""
    mean = kp["value"]
    grid = make_coordinate_grid(*spatial_size, dtype=mean.dtype, device=mean.device)
    diff = grid - mean[:, :, None, None, :]                                    # (B, K, h, w, 2)
    if kp_variance == "matrix":
        inverse = torch.linalg.inv(kp["covariance"])                           # (B, K, 2, 2)
        under_exp = torch.einsum("bkhwi,bkij,bkhwj->bkhw", diff, inverse, diff)
    else:
        var = kp["covariance"][..., 0, 0] if kp_variance == "single" else float(kp_variance)
        under_exp = (diff ** 2).sum(-1) / (var[..., None, None] if torch.is_tensor(var) else var)
    return torch.exp(-0.5 * under_exp)


def _resize(x: torch.Tensor, size, mode: str) -> torch.Tensor:
    """Resize (B, C, h, w) to ``size``; the official 'trilinear' (on one-frame videos) is bilinear here."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    if mode in ("trilinear", "bilinear"):
        return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
    return F.interpolate(x, size=tuple(size), mode=mode)


def _downscale(x: torch.Tensor, scale_factor) -> torch.Tensor:
    """Plain nearest-neighbour downscaling, as the official code does (no anti-aliasing)."""
    return x if scale_factor == 1 else F.interpolate(x, scale_factor=scale_factor, mode="nearest")


# --------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------

class KPDetector(nn.Module):
    """Hourglass -> K heatmaps (softmax over space at ``temperature``) -> Gaussian fit per heatmap."""

    def __init__(self, block_expansion, num_kp, num_channels, max_features, num_blocks, temperature,
                 kp_variance="matrix", scale_factor=1, clip_variance=None, attention=None):
        super().__init__()
        self.predictor = Hourglass(block_expansion, num_channels, num_blocks, max_features, out_features=num_kp,
                                   attention=parse_attention(DecoderAttention, attention,
                                                             "kp_detector_params.attention"))
        self.temperature = temperature
        self.kp_variance = kp_variance
        self.scale_factor = scale_factor
        self.clip_variance = clip_variance

    def forward(self, x):
        """x (B, C, H, W) -> {"value": (B, K, 2), "covariance": (B, K, 2, 2), "heatmap": (B, K, h, w)}."""
        x = _downscale(x, self.scale_factor)
        logits = geometry_precision(self.predictor(x))                         # (B, K, h, w)
        b, k, h, w = logits.shape
        heatmap = F.softmax(logits.reshape(b, k, -1) / self.temperature, dim=2).reshape(b, k, h, w)
        out = heatmap_to_gaussian(heatmap, self.kp_variance, self.clip_variance)
        out["heatmap"] = heatmap
        return out


class MovementEmbedding(nn.Module):
    """Keypoints -> feature maps, per keypoint group [heatmap (1), difference (2), translated source (C)].

    - use_heatmap: the driving Gaussians ('gaussian') or driving minus source ('difference'), each map
      divided by ``norm_const`` or by its own sum (``norm_const: 'sum'``);
    - use_difference: 2 constant channels with mu_source - mu_driving;
    - use_deformed_source_image: the source translated so that the source keypoint lands on the
      driving one (sampled at identity + mu_source - mu_driving);
    - add_bg_feature_map: a background group first (zero heatmap and difference, untranslated source).
    No parameters. Output (B, out_channels, h, w) at the source resolution times ``scale_factor``.
    """

    def __init__(self, num_kp, kp_variance, num_channels, use_deformed_source_image=False, use_difference=False,
                 use_heatmap=True, add_bg_feature_map=False, heatmap_type="gaussian", norm_const="sum",
                 scale_factor=1, align_corners=True):
        super().__init__()
        if heatmap_type not in ("gaussian", "difference"):
            raise ConfigError(f"heatmap_type must be 'gaussian' or 'difference', got {heatmap_type!r}")
        if not (use_heatmap or use_deformed_source_image or use_difference):
            raise ConfigError("the movement embedding needs at least one of use_heatmap, use_difference, "
                              "use_deformed_source_image")
        self.groups = num_kp + int(add_bg_feature_map)
        self.channels_per_group = int(use_heatmap) + 2 * int(use_difference) + num_channels * int(use_deformed_source_image)
        self.out_channels = self.channels_per_group * self.groups
        self.kp_variance = kp_variance
        self.heatmap_type = heatmap_type
        self.use_heatmap = use_heatmap
        self.use_difference = use_difference
        self.use_deformed_source_image = use_deformed_source_image
        self.add_bg_feature_map = add_bg_feature_map
        self.norm_const = norm_const
        self.scale_factor = scale_factor
        self.align_corners = align_corners

    def normalize(self, heatmap):
        if self.norm_const == "sum":
            return heatmap / heatmap.sum(dim=(2, 3), keepdim=True)
        return heatmap / self.norm_const

    def forward(self, source_image, kp_driving, kp_source=None):
        source_image = _downscale(source_image, self.scale_factor)
        _, c, h, w = source_image.shape
        b = kp_driving["value"].shape[0]
        parts = []
        if self.use_heatmap:
            heat = self.normalize(render_gaussians(kp_driving, (h, w), self.kp_variance))     # (B, K, h, w)
            if self.heatmap_type == "difference":
                heat = heat - self.normalize(render_gaussians(kp_source, (h, w), self.kp_variance))
            if self.add_bg_feature_map:
                heat = torch.cat([heat.new_zeros(b, 1, h, w), heat], dim=1)
            parts.append(heat.unsqueeze(2))                                                  # (B, G, 1, h, w)
        if self.use_difference or self.use_deformed_source_image:
            diff = (kp_source["value"] - kp_driving["value"]).expand(b, -1, -1)              # (B, K, 2)
            if self.add_bg_feature_map:
                diff = torch.cat([diff.new_zeros(b, 1, 2), diff], dim=1)                    # (B, G, 2)
            if self.use_difference:
                parts.append(diff[..., None, None].expand(b, self.groups, 2, h, w))
            if self.use_deformed_source_image:
                grid = make_coordinate_grid(h, w, dtype=diff.dtype, device=diff.device)
                sample = grid + diff[:, :, None, None, :]                                    # (B, G, h, w, 2)
                src = source_image.expand(b, c, h, w).unsqueeze(1).expand(b, self.groups, c, h, w)
                moved = F.grid_sample(src.reshape(b * self.groups, c, h, w), sample.reshape(-1, h, w, 2),
                                      align_corners=self.align_corners)
                parts.append(moved.reshape(b, self.groups, c, h, w))
        return torch.cat(parts, dim=2).reshape(b, self.out_channels, h, w)


class DenseMotionModule(nn.Module):
    """Sparse keypoint motion -> dense backward flow (absolute sampling grid into the source).

    Coarse flow (``use_mask``): softmax over K+1 predicted masks (channel 0 = background, which does
    not move) weighting the per-keypoint translations mu_source - mu_driving. Residual flow
    (``use_correction``): two more predicted channels (x, y) added on top. The hourglass input is
    the mask embedding (see ``MovementEmbedding``, background group first) after
    ``num_group_blocks`` grouped 1x1 conv blocks (one group per keypoint).
    """

    def __init__(self, block_expansion, num_blocks, max_features, mask_embedding_params, num_kp, num_channels,
                 kp_variance, use_correction, use_mask, bg_init=2, num_group_blocks=0, scale_factor=1,
                 align_corners=True, attention=None):
        super().__init__()
        if not (use_mask or use_correction):
            raise ConfigError("dense motion needs use_mask (coarse flow) or use_correction (residual flow)")
        self.mask_embedding = construct(MovementEmbedding, mask_embedding_params, "dense_motion_params."
                                        "mask_embedding_params", num_kp=num_kp, kp_variance=kp_variance,
                                        num_channels=num_channels, add_bg_feature_map=True, align_corners=align_corners)
        channels = self.mask_embedding.out_channels
        self.group_blocks = nn.ModuleList(
            SameBlock2d(channels, channels, kernel_size=1, padding=0, groups=num_kp + 1)
            for _ in range(num_group_blocks))
        out_features = (num_kp + 1) * int(use_mask) + 2 * int(use_correction)
        self.hourglass = Hourglass(block_expansion, channels, num_blocks, max_features, out_features=out_features,
                                   attention=parse_attention(DecoderAttention, attention,
                                                             "generator_params.dense_motion_params.attention"))
        # Start from "everything is background": zero weights, background logit bg_init.
        nn.init.zeros_(self.hourglass.decoder.conv.weight)
        bias = ([float(bg_init)] + [0.0] * num_kp) * int(use_mask) + [0.0, 0.0] * int(use_correction)
        with torch.no_grad():
            self.hourglass.decoder.conv.bias.copy_(torch.tensor(bias))
        self.num_kp = num_kp
        self.use_mask = use_mask
        self.use_correction = use_correction
        self.scale_factor = scale_factor

    def forward(self, source_image, kp_driving, kp_source):
        """-> {"deformation": (B, h, w, 2), "mask": (B, K+1, h, w), "residual_flow": (B, h, w, 2), ...}."""
        source_image = _downscale(source_image, self.scale_factor)
        b = kp_driving["value"].shape[0]
        embedding = self.mask_embedding(source_image, kp_driving, kp_source)   # (B, (K+1)*c, h, w)
        out = embedding
        for block in self.group_blocks:
            out = F.leaky_relu(block(out), 0.2)   # the official extra leaky_relu (a no-op after ReLU)
        prediction = self.hourglass(out)                                        # (B, (K+1) + 2, h, w)
        h, w = prediction.shape[2:]
        result = {"mask_embedding": embedding, "hourglass_out": prediction}
        flow = prediction.new_zeros(b, 2, h, w)
        if self.use_mask:
            mask = F.softmax(prediction[:, :self.num_kp + 1], dim=1)            # (B, K+1, h, w)
            shift = (kp_source["value"] - kp_driving["value"]).expand(b, -1, -1)
            shift = torch.cat([shift.new_zeros(b, 1, 2), shift], dim=1)         # (B, K+1, 2), bg first
            flow = flow + shift_flow(mask, shift)
            result["mask"] = mask
        if self.use_correction:
            residual = prediction[:, -2:]
            flow = flow + residual
            result["residual_flow"] = residual.permute(0, 2, 3, 1)
        grid = make_coordinate_grid(h, w, dtype=flow.dtype, device=flow.device)
        result["deformation"] = flow.permute(0, 2, 3, 1) + grid
        return result


class MotionTransferGenerator(nn.Module):
    """Appearance encoder -> skips warped by the dense flow, each concatenated with the keypoint
    embedding resized to it -> decoder -> refinement residual blocks -> 1x1 conv -> sigmoid."""

    def __init__(self, num_channels, num_kp, kp_variance, block_expansion, max_features, num_blocks,
                 num_refinement_blocks, dense_motion_params=None, kp_embedding_params=None,
                 interpolation_mode="nearest", align_corners=True, attention=None):
        super().__init__()
        self.appearance_encoder = Encoder(block_expansion, num_channels, num_blocks, max_features)
        if kp_embedding_params is not None:
            self.kp_embedding_module = construct(MovementEmbedding, kp_embedding_params,
                                                 "generator_params.kp_embedding_params", num_kp=num_kp,
                                                 kp_variance=kp_variance, num_channels=num_channels,
                                                 align_corners=align_corners)
            embedding_features = self.kp_embedding_module.out_channels
        else:
            self.kp_embedding_module = None
            embedding_features = 0
        self.dense_motion_module = (
            construct(DenseMotionModule, dense_motion_params, "generator_params.dense_motion_params", num_kp=num_kp,
                      kp_variance=kp_variance, num_channels=num_channels, align_corners=align_corners)
            if dense_motion_params is not None else None)
        self.video_decoder = Decoder(block_expansion, num_channels, num_blocks, max_features,
                                     extra_features=embedding_features,
                                     attention=parse_attention(DecoderAttention, attention,
                                                               "generator_params.attention"))
        features = block_expansion + num_channels + embedding_features
        self.refinement_module = nn.Sequential()
        for i in range(num_refinement_blocks):
            self.refinement_module.add_module(f"r{i}", ResBlock2d(features))
        self.refinement_module.add_module("conv_last", nn.Conv2d(features, num_channels, kernel_size=1))
        if interpolation_mode not in ("nearest", "bilinear", "trilinear"):
            raise ConfigError(f"interpolation_mode must be 'nearest' or 'trilinear', got {interpolation_mode!r}")
        self.interpolation_mode = interpolation_mode
        self.align_corners = align_corners

    def encode_source(self, source_image):
        """(B, C, H, W) -> the appearance encoder's skips [x, e_1, ..., e_n]; callers may cache it."""
        return self.appearance_encoder(source_image)

    def warp(self, x, deformation):
        """Sample x (1|B, c, h, w) at an absolute grid given at any resolution (resized to x's)."""
        b = deformation.shape[0]
        grid = _resize(deformation.permute(0, 3, 1, 2), x.shape[2:], self.interpolation_mode).permute(0, 2, 3, 1)
        return F.grid_sample(x.expand(b, *x.shape[1:]), grid, align_corners=self.align_corners)

    def forward(self, source_image, kp_driving, kp_source, source_features=None):
        """source_image (1|B, C, H, W) -> {"prediction": (B, C, H, W), "deformed": (B, C, H, W), internals}."""
        skips = self.encode_source(source_image) if source_features is None else source_features
        b = kp_driving["value"].shape[0]
        result = {}
        if self.dense_motion_module is not None:
            result.update(self.dense_motion_module(source_image, kp_driving, kp_source))
        else:
            h, w = source_image.shape[2:]
            grid = make_coordinate_grid(h, w, dtype=source_image.dtype, device=source_image.device)
            result["deformation"] = grid.expand(b, h, w, 2)
        deformation = result["deformation"]
        skips = [self.warp(skip, deformation) for skip in skips]
        if self.kp_embedding_module is not None:
            embedding = self.kp_embedding_module(source_image, kp_driving, kp_source)   # (B, K, h', w')
            result["kp_embedding"] = embedding
            skips = [torch.cat([skip, _resize(embedding, skip.shape[2:], self.interpolation_mode)], dim=1)
                     for skip in skips]
        result["deformed"] = self.warp(source_image, deformation)
        out = self.refinement_module(self.video_decoder(skips))
        result["prediction"] = torch.sigmoid(out)
        return result


class Discriminator(nn.Module):
    """Single-scale pix2pix-like discriminator on [image, driving keypoint Gaussians]; ``attention``:
    Donkey-Net's gate after every block (``marionet.nn.attention``)."""

    def __init__(self, num_channels=3, num_kp=10, kp_variance=0.01, scale_factor=1, block_expansion=64,
                 num_blocks=4, max_features=512, kp_embedding_params=None, align_corners=True, attention=None):
        super().__init__()
        if kp_embedding_params is not None:
            self.kp_embedding = construct(MovementEmbedding, kp_embedding_params, "discriminator_params."
                                          "kp_embedding_params", num_kp=num_kp, kp_variance=kp_variance,
                                          num_channels=num_channels, align_corners=align_corners)
            embedding_channels = self.kp_embedding.out_channels
        else:
            self.kp_embedding = None
            embedding_channels = 0
        self.down_blocks = nn.ModuleList(
            DiscriminatorBlock(num_channels + embedding_channels if i == 0 else min(max_features, block_expansion * 2 ** i),
                               min(max_features, block_expansion * 2 ** (i + 1)), norm=i != 0)
            for i in range(num_blocks))
        self.conv = nn.Conv2d(self.down_blocks[-1].conv.out_channels, 1, kernel_size=1)
        self.attention = discriminator_gates([block.conv.out_channels for block in self.down_blocks],
                                             parse_attention(DiscriminatorAttention, attention,
                                                             "discriminator_params.attention"))
        self.scale_factor = scale_factor

    def forward(self, x, kp_driving, kp_source=None):
        """x (B, C, H, W) -> [x, block_1, ..., block_n, patch scores (B, 1, h, w)], as the official list;
        with attention, each block's map is its gated output."""
        maps = [x]
        x = _downscale(x, self.scale_factor)
        out = x if self.kp_embedding is None else torch.cat([x, self.kp_embedding(x, kp_driving, kp_source)], dim=1)
        for i, block in enumerate(self.down_blocks):
            out = block(out)
            if self.attention is not None:
                out = self.attention[i](out)
            maps.append(out)
        maps.append(self.conv(out))
        return maps


# --------------------------------------------------------------------------------------------
# Transfer-time keypoint normalisation (official ``normalize_kp``)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NormalizationParams:
    """``transfer_params.normalization_params`` of an official config (``animate_params`` also read).

    move_location / movement_mult are the pipeline's ``relative`` / ``adapt_scale`` and only serve as
    defaults for callers; adapt_variance and clip_mean are applied by ``MonkeyNet.transfer_keypoints``.
    """

    move_location: bool = True
    movement_mult: bool = False
    adapt_variance: bool = False
    clip_mean: bool = False

    @classmethod
    def from_dict(cls, params) -> "NormalizationParams":
        return parse_section(cls, params, "normalization_params")

    @classmethod
    def from_config(cls, config: dict) -> "NormalizationParams":
        for section in ("animate_params", "transfer_params"):
            params = (config.get(section) or {}).get("normalization_params")
            if params is not None:
                return cls.from_dict(params)
        return cls()


def adapt_covariance(cov_driving, cov_initial, cov_source, min_eigenvalue=1e-6):
    """Sigma_t Sigma_1^-1 Sigma_source, symmetrised, eigenvalues <= 0 replaced by ``min_eigenvalue``."""
    out = cov_driving @ torch.linalg.inv(cov_initial) @ cov_source
    out = (out + out.transpose(-1, -2)) / 2
    eigenvalues, vectors = torch.linalg.eigh(out)
    eigenvalues = torch.where(eigenvalues <= 0, torch.full_like(eigenvalues, min_eigenvalue), eigenvalues)
    return vectors @ torch.diag_embed(eigenvalues) @ vectors.transpose(-1, -2)


# --------------------------------------------------------------------------------------------
# Training objective (official monkey-net modules/losses.py)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MonkeyNetLossWeights(LossWeights):
    # one weight per discriminator map (the image itself, then each block), or one number for the pixel term
    reconstruction: float | tuple[float, ...] = (10.0, 10.0, 10.0, 10.0, 1.0)
    reconstruction_deformed: float = 0.0
    generator_gan: float = 1.0
    discriminator_gan: float = 1.0

    @property
    def reconstruction_list(self) -> list[float]:
        if isinstance(self.reconstruction, float):
            return [self.reconstruction] if self.reconstruction else []
        return list(self.reconstruction)


@dataclass(frozen=True)
class MonkeyNetTrainParams(TrainParams):
    detach_kp_generator: bool = False
    detach_kp_discriminator: bool = True     # the only choice here (see MonkeyNetObjective)
    loss_weights: MonkeyNetLossWeights = field(default_factory=MonkeyNetLossWeights)

    def validate(self, where: str) -> None:
        super().validate(where)
        if not self.detach_kp_discriminator:
            raise MarionetError(f"{where}.detach_kp_discriminator: only true is supported (the keypoint detector "
                                "has already stepped when the discriminator loss is computed)")


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

    def __init__(self, model: "MonkeyNet", params: "MonkeyNetTrainParams"):
        super().__init__(model)
        weights = params.loss_weights
        self.reconstruction = weights.reconstruction_list
        self.w_deformed = weights.reconstruction_deformed
        self.w_gen_gan = weights.generator_gan
        self.w_disc_gan = weights.discriminator_gan
        self.detach_kp_generator = params.detach_kp_generator
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


# --------------------------------------------------------------------------------------------
# Container
# --------------------------------------------------------------------------------------------

_VALUES = {  # model_params keys whose values are checked before building (config.check_values)
    **{f"common_params.{k}": "count" for k in ("num_kp", "num_channels")},
    **{f"kp_detector_params.{k}": "count" for k in ("block_expansion", "max_features", "num_blocks")},
    "kp_detector_params.temperature": "positive", "kp_detector_params.scale_factor": "fraction",
    "kp_detector_params.clip_variance": "positive",
    **{f"generator_params.{k}": "count" for k in ("block_expansion", "max_features", "num_blocks")},
    "generator_params.num_refinement_blocks": "count0",
    **{f"generator_params.dense_motion_params.{k}": "count" for k in ("block_expansion", "max_features",
                                                                        "num_blocks")},
    "generator_params.dense_motion_params.num_group_blocks": "count0",
    "generator_params.dense_motion_params.scale_factor": "fraction",
    "generator_params.kp_embedding_params.scale_factor": "fraction",
    **{f"discriminator_params.{k}": "count" for k in ("block_expansion", "max_features", "num_blocks")},
    "discriminator_params.scale_factor": "fraction",
}


def check_model_params(config: dict) -> None:
    """Values and frame size of a Monkey-Net config, checked before anything is built (one-line errors)."""
    params = config["model_params"]
    check_values(params, _VALUES)
    variance = (params.get("common_params") or {}).get("kp_variance", "matrix")
    if variance not in ("matrix", "single") and not (isinstance(variance, (int, float)) and variance > 0):
        raise MarionetError(f"model_params.common_params.kp_variance: 'matrix', 'single' or a number > 0, "
                            f"got {variance!r}")
    size = frame_shape(config)
    kp = params.get("kp_detector_params") or {}
    generator = params.get("generator_params") or {}
    dense = generator.get("dense_motion_params") or {}
    for section, what in ((kp, "the keypoint detector"), (generator, "the generator"),
                          (dense, "the dense-motion module")):
        if "num_blocks" in section:
            check_divisible(size, section.get("scale_factor", 1), section["num_blocks"], what)
    disc = params.get("discriminator_params") or {}
    side = int(min(size) * disc.get("scale_factor", 1))
    for _ in range(disc.get("num_blocks", 4)):   # 4x4 convolutions without padding, each then pooled 2x
        side = (side - 3) // 2
    if disc and side < 1:
        raise MarionetError(f"dataset_params.frame_shape: {size[0]}x{size[1]} is too small for the discriminator "
                            "(model_params.discriminator_params)")


class MonkeyNet(ModelFamily):
    """The three networks of one Monkey-Net model, built from the official ``model_params`` section.

    ``normalization_params`` (optional): the config's ``transfer_params.normalization_params``; see
    ``MonkeyNet.from_config`` to read it from a whole config.
    """

    family = "monkeynet"
    TrainParams = MonkeyNetTrainParams
    keypoint_fields = ("value", "covariance")

    def __init__(self, model_params: dict, with_discriminator: bool = True, normalization_params=None):
        super().__init__()
        common = dict(model_params.get("common_params") or {})
        self.align_corners = bool(common.pop("align_corners", True))
        self.kp_detector = construct(KPDetector, model_params.get("kp_detector_params"), "kp_detector_params",
                                     **common)
        self.generator = construct(MotionTransferGenerator, model_params.get("generator_params"), "generator_params",
                                   **common, align_corners=self.align_corners)
        self.discriminator = (construct(Discriminator, model_params["discriminator_params"], "discriminator_params",
                                        **common, align_corners=self.align_corners)
                              if with_discriminator and "discriminator_params" in model_params else None)
        self.kp_variance = common.get("kp_variance", "matrix")
        self.normalization_params = (normalization_params if isinstance(normalization_params, NormalizationParams)
                                     else NormalizationParams.from_dict(normalization_params))

    @classmethod
    def recognizes(cls, config: dict, states: dict | None = None) -> bool:
        """Monkey-Net generators embed keypoints; FOMM ones do not."""
        return "kp_embedding_params" in (config["model_params"].get("generator_params") or {})

    @classmethod
    def from_config(cls, config: dict, with_discriminator: bool = True) -> "MonkeyNet":
        check_model_params(config)
        return cls(config["model_params"], with_discriminator, NormalizationParams.from_config(config))

    def objective(self, train_params: MonkeyNetTrainParams) -> MonkeyNetObjective:
        return MonkeyNetObjective(self, train_params)

    def transfer_keypoints(self, kp_source: dict, kp_driving: dict, kp_initial: dict, relative: bool = True,
                           scale: float = 1.0) -> dict:
        """Keypoints for the generator (official ``normalize_kp``).

        relative: mean_t = (driving_t - driving_initial) * scale + source (``move_location``, with
        ``movement_mult`` as ``scale``); otherwise the driving means. The covariances are the
        driving frame's, unless ``adapt_variance`` (Sigma_t Sigma_initial^-1 Sigma_source);
        ``clip_mean`` clamps the means to [-1, 1].
        """
        out = {"value": kp_driving["value"], "covariance": kp_driving["covariance"]}
        if relative:
            out["value"] = (kp_driving["value"] - kp_initial["value"]) * scale + kp_source["value"]
        if self.normalization_params.clip_mean:
            out["value"] = out["value"].clamp(-1, 1)
        if self.normalization_params.adapt_variance and self.kp_variance == "matrix":
            out["covariance"] = adapt_covariance(kp_driving["covariance"], kp_initial["covariance"],
                                                 kp_source["covariance"])
        return out

    @staticmethod
    def convert_official(module_name: str, state: dict) -> dict:
        """Official monkey-net state dict -> ours.

        - depth-1 ``Conv3d`` weights (O, I, 1, kh, kw) -> ``Conv2d`` (O, I, kh, kw); a deeper kernel
          (a temporal convolution) cannot be represented and raises;
        - ``refinement_module.conv-last`` -> ``refinement_module.conv_last``;
        - a BatchNorm without ``num_batches_tracked`` (PyTorch 0.4.0 files) gets a zero counter.
        Every other key is passed on unchanged, so the strict load reports anything unexpected.
        """
        out = {}
        for key, value in state.items():
            name = key.replace("refinement_module.conv-last.", "refinement_module.conv_last.")
            if "eca_convs." in key or "spatial_gate_" in key:
                raise MarionetError(f"official {module_name} weights: {key} is a Donkey-Net attention weight; load "
                                    "the checkpoint with its config's family: donkeynet, or without a family key")
            if value.dim() == 5:
                if not key.endswith("weight") or value.shape[2] != 1:
                    raise MarionetError(
                        f"official {module_name} weights: {key} has shape {tuple(value.shape)}; only depth-1 3-D "
                        "convolution kernels (out, in, 1, kh, kw) can be converted to marionet's 2-D Monkey-Net")
                value = value.squeeze(2)
            if name in out:
                raise MarionetError(f"official {module_name} weights: both {key} and {name} are present")
            out[name] = value
        for key in [k for k in out if k.endswith(".running_mean")]:
            counter = key[: -len("running_mean")] + "num_batches_tracked"
            out.setdefault(counter, torch.tensor(0, dtype=torch.long))
        return out

    @staticmethod
    def to_official(module_name: str, state: dict) -> dict:
        """Ours -> the official layout (inverse of ``convert_official``): 4-D conv weights -> depth-1 5-D."""
        out = {}
        for key, value in state.items():
            name = key.replace("refinement_module.conv_last.", "refinement_module.conv-last.")
            if value.dim() == 4:
                value = value.unsqueeze(2)
            out[name] = value
        return out
