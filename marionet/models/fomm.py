"""First Order Motion Model (Siarohin et al., NeurIPS 2019).

The whole family in one file: keypoint detector with local affine Jacobians, dense-motion network
with occlusion map, occlusion-aware generator and multi-scale patch discriminator. Module names and
nesting follow the official first-order-model code so that its checkpoints load by name (see
``marionet.checkpoints``); constructor arguments are the keys of the official YAML ``model_params``.

Shapes: B batch, K keypoints, C image channels, H x W frame, h x w the dense-motion resolution.
Keypoints are dicts {"value": (B, K, 2), "jacobian": (B, K, 2, 2)} with (x, y) in [-1, 1].
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from marionet.config import LossWeights, TrainParams, check_divisible, check_values, construct, frame_shape
from marionet.errors import ConfigError, MarionetError
from marionet.geometry import (RandomTPS, float32_geometry, geometry_precision, heatmap_to_mean, kp2gaussian,
                               make_coordinate_grid)
from marionet.losses import (ImagePyramid, Objective, PerceptualPyramidLoss, detach_kp, keypoint_separation_loss,
                             lsgan_discriminator_loss, lsgan_generator_loss, feature_matching_loss)
from marionet.models.family import ModelFamily
from marionet.nn.blocks import (AntiAliasInterpolation2d, DiscriminatorBlock, DownBlock2d, Hourglass, ResBlock2d,
                                SameBlock2d, UpBlock2d)


class KPDetector(nn.Module):
    """Hourglass -> K softmax heatmaps -> keypoint means (+ a 2x2 Jacobian per keypoint)."""

    def __init__(self, block_expansion, num_kp, num_channels, max_features, num_blocks, temperature,
                 estimate_jacobian=False, scale_factor=1, single_jacobian_map=False, pad=0):
        super().__init__()
        self.predictor = Hourglass(block_expansion, num_channels, num_blocks, max_features)
        self.kp = nn.Conv2d(self.predictor.out_filters, num_kp, kernel_size=7, padding=pad)
        if estimate_jacobian:
            self.num_jacobian_maps = 1 if single_jacobian_map else num_kp
            self.jacobian = nn.Conv2d(self.predictor.out_filters, 4 * self.num_jacobian_maps, kernel_size=7, padding=pad)
            # Start from identity Jacobians.
            self.jacobian.weight.data.zero_()
            self.jacobian.bias.data.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0] * self.num_jacobian_maps))
        else:
            self.jacobian = None
        self.temperature = temperature
        self.scale_factor = scale_factor
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def forward(self, x):
        if self.scale_factor != 1:
            x = self.down(x)                                          # (B, C, H*s, W*s)
        features = self.predictor(x)                                  # (B, be+C, h, w)
        logits = geometry_precision(self.kp(features))                # (B, K, h', w'), h' = h-6 without padding
        b, k, h, w = logits.shape
        heatmap = F.softmax(logits.reshape(b, k, -1) / self.temperature, dim=2).reshape(b, k, h, w)
        # Coordinates live on the heatmap's own grid (the cropped one when pad=0), as in the official code.
        out = {"value": heatmap_to_mean(heatmap), "heatmap": heatmap}  # value (B, K, 2)
        if self.jacobian is not None:
            maps = geometry_precision(self.jacobian(features)).reshape(b, self.num_jacobian_maps, 4, h, w)
            jacobian = (heatmap.unsqueeze(2) * maps).reshape(b, k, 4, -1).sum(-1)
            out["jacobian"] = jacobian.reshape(b, k, 2, 2)            # (B, K, 2, 2)
        return out


class BackgroundMotion(nn.Module):
    """An affine background (camera) motion from a pair of frames, as MRAA's background predictor.

    (source, driving) (B, C, H, W) each -> (B, 2, 3) mapping driving coordinates z to source
    coordinates A z + t; it starts as the identity, so adding it to a trained model changes nothing.
    """

    def __init__(self, num_channels, block_expansion=16, max_features=128, num_blocks=4):
        super().__init__()
        widths = [2 * num_channels] + [min(max_features, block_expansion * 2 ** i) for i in range(num_blocks)]
        self.down_blocks = nn.Sequential(*(DownBlock2d(a, b) for a, b in zip(widths[:-1], widths[1:])))
        self.affine = nn.Linear(widths[-1], 6)
        self.affine.weight.data.zero_()
        self.affine.bias.data.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))

    def forward(self, source, driving):
        source = source.expand_as(driving)
        features = self.down_blocks(torch.cat([source, driving], dim=1)).mean(dim=(2, 3))  # (B, F)
        return self.affine(features).reshape(-1, 2, 3)


class TranslationSearch(nn.Module):
    """The camera motion as the translation that best aligns the two frames' backgrounds; no weights.

    The cost of a shift is the mean luma difference truncated at ``truncate`` over the frames' overlap,
    so that a moving subject cannot pull the estimate; both frames are first blurred (Gaussian,
    ``sigma`` px), which evens out the cost between whole-pixel and sub-pixel alignments.
    An exhaustive search over whole-pixel shifts up to ``max_shift`` (a fraction of the frame side)
    keeps the ``candidates`` lowest local minima of the cost: a periodic background fits at every
    period. Each is refined to 1/2 px, and of those within ``tie`` * ``truncate`` of the best the
    smallest is kept, since it moves the source's subject least; it is then refined to 1/16 px
    (bilinear sampling, as the generator warps). The smallest equivalent shift is not always among
    the candidates: whole-pixel costs still depend on the lattice's sub-pixel phase. A shift that
    explains less than ``min_gain`` of the (unblurred) frame better than no motion is dropped. The
    integer search compares every second pixel of the driving frame (shifts stay whole-pixel), which
    keeps it cheap enough to run at every training step.
    (source, driving) (B, C, H, W) each -> (B, 2, 3) mapping driving coordinates z to source z + t.
    """

    def __init__(self, max_shift=0.4, truncate=0.033, min_gain=0.05, sigma=1.0, candidates=6, tie=0.1):
        super().__init__()
        self.max_shift, self.truncate, self.min_gain = max_shift, truncate, min_gain
        self.sigma, self.candidates, self.tie = sigma, candidates, tie
        self.penalty = 1e-4  # per pixel of shift: a tie-break, far below any real difference in cost

    @torch.no_grad()
    def forward(self, source, driving):
        driving = driving.float().mean(1, keepdim=True)                        # (B, 1, H, W) luma
        source = source.float().mean(1, keepdim=True)                          # (1|B, 1, H, W)
        smooth_driving, smooth_source = self._blur(driving), self._blur(source).expand_as(driving)
        source = source.expand_as(driving)
        b, _, h, w = driving.shape
        r = max(1, round(self.max_shift * min(h, w)))
        steps = torch.arange(-r, r + 1, dtype=driving.dtype, device=driving.device)
        cost = self._whole_pixel_costs(smooth_source, smooth_driving, r)        # (B, 2r+1, 2r+1)
        is_minimum = cost == -F.max_pool2d(-cost[:, None], 3, 1, 1)[:, 0]
        cost = torch.where(is_minimum, cost, float("inf")) + self.penalty * (steps[:, None].abs() + steps.abs())
        best = cost.reshape(b, -1).topk(min(self.candidates, cost[0].numel()), 1, largest=False).indices
        shift = torch.stack([best % (2 * r + 1), best // (2 * r + 1)], -1).to(driving.dtype) - r  # (B, M, 2) x, y
        offsets = torch.stack(torch.meshgrid(steps.new_tensor([-1, 0, 1]), steps.new_tensor([-1, 0, 1]),
                                             indexing="xy"), -1).reshape(-1, 2)  # (9, 2)
        for step in (0.5, 0.25, 0.125, 0.0625):
            candidates = shift[:, :, None] + step * offsets                    # (B, M, 9, 2)
            cost = self._sampled_costs(smooth_source, smooth_driving, candidates.flatten(1, 2))
            cost, pick = (cost.unflatten(1, candidates.shape[1:3]) + self.penalty * candidates.abs().sum(-1)).min(2)
            shift = candidates.gather(2, pick[:, :, None, None].expand(-1, -1, 1, 2))[:, :, 0]  # (B, M, 2)
            if shift.shape[1] > 1:  # after the first round, keep the smallest of the best
                size = shift.abs().sum(-1).masked_fill(
                    cost > cost.min(1, keepdim=True).values + self.tie * self.truncate, float("inf"))
                shift = shift.gather(1, size.argmin(1)[:, None, None].expand(-1, 1, 2))  # (B, 1, 2)
        shift = shift[:, 0]                                                     # (B, 2)
        # A shift must explain clearly more of the frame than standing still: on a plain background
        # only the moving subject would otherwise pick it.
        cost = self._sampled_costs(source, driving, torch.stack([shift, torch.zeros_like(shift)], 1))
        shift = torch.where((cost[:, 1] - cost[:, 0] < self.min_gain * self.truncate)[:, None], 0.0, shift)
        affine = torch.eye(2, 3, dtype=driving.dtype, device=driving.device).repeat(b, 1, 1)
        affine[:, :, 2] = shift * 2 / shift.new_tensor([w - 1, h - 1])        # pixels -> [-1, 1] units
        return affine

    def _blur(self, x):
        """Separable Gaussian blur of (B, 1, H, W), edges replicated."""
        if not self.sigma:
            return x
        k = max(1, round(2 * self.sigma))
        g = torch.exp(-torch.arange(-k, k + 1, dtype=x.dtype, device=x.device) ** 2 / (2 * self.sigma ** 2))
        g = g / g.sum()
        x = F.pad(x, (k, k, k, k), mode="replicate")
        return F.conv2d(F.conv2d(x, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))

    def _whole_pixel_costs(self, source, driving, r):
        """(B, 2r+1, 2r+1) [dy, dx]: cost of driving(z) against source(z + (dx, dy))."""
        b, c, h, w = driving.shape
        padded = F.pad(source, (r, r, r, r), value=float("nan"))              # NaN marks "outside"
        sampled = driving[:, :, ::2, ::2].unsqueeze(3)                         # (B, 1, h/2, 1, w/2)
        out = driving.new_empty(b, 2 * r + 1, 2 * r + 1)
        for i in range(2 * r + 1):
            windows = padded[:, :, i:i + h:2].unfold(3, w, 1)[..., ::2]         # (B, 1, h/2, 2r+1, w/2)
            error = (windows - sampled).abs().sum(1).clamp_max(self.truncate)  # NaN stays NaN
            inside = ~error.isnan()
            out[:, i] = error.nan_to_num(0.0).sum((1, 3)) / inside.sum((1, 3)).clamp_min(1)
        return out

    def _sampled_costs(self, source, driving, shifts):
        """shifts (B, N, 2) in pixels -> (B, N) costs, sampling the source bilinearly."""
        b, c, h, w = driving.shape
        n = shifts.shape[1]
        grid = make_coordinate_grid(h, w, dtype=driving.dtype, device=driving.device)   # (H, W, 2) in [-1, 1]
        grid = grid + (shifts * 2 / shifts.new_tensor([w - 1, h - 1]))[:, :, None, None]  # (B, N, H, W, 2)
        warped = F.grid_sample(source.repeat_interleave(n, 0), grid.reshape(b * n, h, w, 2),
                               align_corners=True).reshape(b, n, h, w)
        error = (warped - driving).abs().clamp_max(self.truncate)
        inside = (grid.abs() <= 1 + 1e-6).all(-1).to(error.dtype)
        return (error * inside).sum((2, 3)) / inside.sum((2, 3)).clamp_min(1)


@float32_geometry
def blend_motions(mask: torch.Tensor, motions: torch.Tensor) -> torch.Tensor:
    """mask (B, K+1, h, w), motions (B, K+1, h, w, 2) -> their mask-weighted sum (B, h, w, 2)."""
    return torch.einsum("bkhw,bkhwc->bhwc", mask, motions)


class DenseMotionNetwork(nn.Module):
    """Sparse keypoint motions -> dense backward flow (driving -> source) and occlusion map.

    The source may have batch 1 while keypoints have batch B (one source, many driving frames).
    """

    def __init__(self, block_expansion, num_blocks, max_features, num_kp, num_channels,
                 estimate_occlusion_map=False, scale_factor=1, kp_variance=0.01, align_corners=True):
        super().__init__()
        self.hourglass = Hourglass(block_expansion, (num_kp + 1) * (num_channels + 1), num_blocks, max_features)
        self.mask = nn.Conv2d(self.hourglass.out_filters, num_kp + 1, kernel_size=7, padding=3)
        self.occlusion = (nn.Conv2d(self.hourglass.out_filters, 1, kernel_size=7, padding=3)
                          if estimate_occlusion_map else None)
        self.num_kp = num_kp
        self.scale_factor = scale_factor
        self.kp_variance = kp_variance
        self.align_corners = align_corners
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    @float32_geometry
    def sparse_motions(self, h, w, kp_driving, kp_source, background=None):
        """(B, K+1, h, w, 2): the background's motion (the identity, or the (B, 2, 3) affine
        ``background``), then T_k(z) = J_k (z - d_k) + s_k."""
        grid = make_coordinate_grid(h, w, dtype=kp_source["value"].dtype, device=kp_source["value"].device)
        b = kp_driving["value"].shape[0]
        if background is None:
            bg = grid.expand(b, 1, h, w, 2)
        else:
            bg = torch.einsum("bij,hwj->bhwi", background[:, :, :2], grid) + background[:, None, None, :, 2]
            bg = bg.unsqueeze(1)                                                      # (B, 1, h, w, 2)
        z = grid - kp_driving["value"][:, :, None, None, :]                       # (B, K, h, w, 2)
        if "jacobian" in kp_driving:
            jac = kp_source["jacobian"] @ torch.inverse(kp_driving["jacobian"])   # (B, K, 2, 2)
            z = torch.einsum("bkij,bkhwj->bkhwi", jac, z)
        to_source = z + kp_source["value"][:, :, None, None, :]
        return torch.cat([bg, to_source], dim=1)

    def forward(self, source_image, kp_driving, kp_source, background=None):
        if self.scale_factor != 1:
            source_image = self.down(source_image)                                 # (1|B, C, h, w)
        _, c, h, w = source_image.shape
        b, k1 = kp_driving["value"].shape[0], self.num_kp + 1
        kp_source = {key: v.expand(b, *v.shape[1:]) for key, v in kp_source.items() if key != "heatmap"}

        heat = kp2gaussian(kp_driving["value"], (h, w), self.kp_variance) - kp2gaussian(
            kp_source["value"], (h, w), self.kp_variance)                          # (B, K, h, w)
        heat = torch.cat([heat.new_zeros(b, 1, h, w), heat], dim=1).unsqueeze(2)   # (B, K+1, 1, h, w)

        motions = self.sparse_motions(h, w, kp_driving, kp_source, background)    # (B, K+1, h, w, 2)
        src = source_image.unsqueeze(1).expand(b, k1, c, h, w).reshape(b * k1, c, h, w)
        sparse_deformed = F.grid_sample(src, motions.reshape(b * k1, h, w, 2),
                                        align_corners=self.align_corners).reshape(b, k1, c, h, w)

        # Channels interleaved per motion: [heat_0, R_0, G_0, B_0, heat_1, ...].
        x = torch.cat([heat, sparse_deformed], dim=2).reshape(b, k1 * (c + 1), h, w)
        features = self.hourglass(x)
        mask = F.softmax(self.mask(features), dim=1)                               # (B, K+1, h, w)
        deformation = blend_motions(mask, motions)                                 # (B, h, w, 2)
        out = {"sparse_deformed": sparse_deformed, "mask": mask, "deformation": deformation}
        if self.occlusion is not None:
            out["occlusion_map"] = torch.sigmoid(self.occlusion(features))         # (B, 1, h, w)
        return out


class OcclusionAwareGenerator(nn.Module):
    """Encode the source, warp its features by the dense flow, mask occlusions, decode.

    ``skips`` (off in every official FOMM config) adds the generator of MRAA (CVPR 2021): each encoder
    level is warped and blended into the decoder as skip * occlusion + decoder * (1 - occlusion), and
    the output is blended the same way with the warped source pixels, so where nothing is occluded the
    source's own detail is carried through instead of being regenerated from the bottleneck.

    ``background_motion`` makes the background slot of the dense motion follow an affine camera motion
    instead of staying still: MRAA's learned ``BackgroundMotion`` network (``method: learned``, the
    default) or the weight-free ``TranslationSearch`` (``method: search``). Callers compute it with
    ``background(source, driving)`` and pass it to ``forward``.
    """

    def __init__(self, num_channels, num_kp, block_expansion, max_features, num_down_blocks,
                 num_bottleneck_blocks, estimate_occlusion_map=False, dense_motion_params=None,
                 estimate_jacobian=False, align_corners=True, skips=False, background_motion=None):
        super().__init__()
        if dense_motion_params is not None:
            self.dense_motion_network = construct(
                DenseMotionNetwork, dense_motion_params, "generator_params.dense_motion_params", num_kp=num_kp,
                num_channels=num_channels, estimate_occlusion_map=estimate_occlusion_map, align_corners=align_corners)
        else:
            self.dense_motion_network = None
        self.first = SameBlock2d(num_channels, block_expansion, kernel_size=7, padding=3)
        self.down_blocks = nn.ModuleList(
            DownBlock2d(min(max_features, block_expansion * 2 ** i), min(max_features, block_expansion * 2 ** (i + 1)))
            for i in range(num_down_blocks))
        self.up_blocks = nn.ModuleList(
            UpBlock2d(min(max_features, block_expansion * 2 ** (num_down_blocks - i)),
                      min(max_features, block_expansion * 2 ** (num_down_blocks - i - 1)))
            for i in range(num_down_blocks))
        bottleneck_features = min(max_features, block_expansion * 2 ** num_down_blocks)
        self.bottleneck = nn.Sequential()
        for i in range(num_bottleneck_blocks):
            self.bottleneck.add_module(f"r{i}", ResBlock2d(bottleneck_features))
        self.final = nn.Conv2d(block_expansion, num_channels, kernel_size=7, padding=3)
        self.align_corners = align_corners
        self.skips = bool(skips)
        if self.skips and not estimate_occlusion_map:
            raise ConfigError("generator_params.skips needs estimate_occlusion_map: True")
        if background_motion and self.dense_motion_network is None:
            raise ConfigError("generator_params.background_motion needs dense_motion_params")
        params = {} if background_motion is True else dict(background_motion or {})
        method = params.pop("method", "learned")
        if method not in ("learned", "search"):
            raise ConfigError(f"generator_params.background_motion.method: 'learned' or 'search', not {method!r}")
        if not background_motion:
            self.bg_motion = None
        elif method == "search":
            self.bg_motion = construct(TranslationSearch, params, "generator_params.background_motion")
        else:
            self.bg_motion = construct(BackgroundMotion, params, "generator_params.background_motion",
                                       num_channels=num_channels)

    def background(self, source_image, driving_image):
        """(B, 2, 3) affine background motion driving -> source, or None without background motion."""
        return None if self.bg_motion is None else self.bg_motion(source_image, driving_image)

    def encode_source(self, source_image):
        """(B, C, H, W) -> [level 0 (B, F, H, W), ..., level D (B, F', H/2^D, W/2^D)]; depends on the
        source only, so callers may cache it."""
        levels = [self.first(source_image)]
        for block in self.down_blocks:
            levels.append(block(levels[-1]))
        return levels

    def warp(self, x, deformation):
        """grid_sample x with a flow given at any resolution (bilinearly resized to x's)."""
        if deformation.shape[1:3] != x.shape[2:]:
            deformation = F.interpolate(deformation.permute(0, 3, 1, 2), size=x.shape[2:], mode="bilinear",
                                        align_corners=False).permute(0, 2, 3, 1)
        return F.grid_sample(x, deformation, align_corners=self.align_corners)

    @staticmethod
    def _resized(occlusion, like):
        if occlusion.shape[2:] == like.shape[2:]:
            return occlusion
        return F.interpolate(occlusion, size=like.shape[2:], mode="bilinear", align_corners=False)

    def _blend(self, warped_skip, decoded, occlusion):
        """the warped skip where the source is visible, the decoder's output where it is occluded."""
        occlusion = self._resized(occlusion, decoded)
        return warped_skip * occlusion + decoded * (1 - occlusion)

    def forward(self, source_image, kp_driving, kp_source, source_features=None, background=None):
        """source_image (1|B, C, H, W) -> {"prediction": (B, C, H, W), flow and masks for inspection}.
        ``background``: (B, 2, 3) from ``self.background``; None keeps the background still."""
        levels = self.encode_source(source_image) if source_features is None else source_features
        b = kp_driving["value"].shape[0]
        levels = [f.expand(b, *f.shape[1:]) for f in levels]
        source_image = source_image.expand(b, *source_image.shape[1:])
        result = {}
        if self.dense_motion_network is not None:
            motion = self.dense_motion_network(source_image, kp_driving, kp_source, background)
            result.update(motion)
            # each level is warped once: the bottleneck input and, with skips, the blends reuse it
            levels = [self.warp(f, motion["deformation"]) if self.skips or i == len(levels) - 1 else f
                      for i, f in enumerate(levels)]
            result["deformed"] = self.warp(source_image, motion["deformation"])
        occlusion = result.get("occlusion_map")
        out = levels[-1] if occlusion is None else levels[-1] * self._resized(occlusion, levels[-1])
        skips = self.skips and occlusion is not None
        out = self.bottleneck(out)
        for i, block in enumerate(self.up_blocks):
            if skips:
                out = self._blend(levels[-1 - i], out, occlusion)
            out = block(out)
        if skips:
            out = self._blend(levels[0], out, occlusion)
        out = torch.sigmoid(self.final(out))
        if skips:
            out = self._blend(result["deformed"], out, occlusion)
        result["prediction"] = out
        return result


class Discriminator(nn.Module):
    """PatchGAN; optionally conditioned on the (detached) driving keypoints as Gaussian maps."""

    def __init__(self, num_channels=3, block_expansion=64, num_blocks=4, max_features=512, sn=False,
                 use_kp=False, num_kp=10, kp_variance=0.01, **_common):  # common_params keys a discriminator does not use
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DiscriminatorBlock(num_channels + num_kp * use_kp if i == 0 else min(max_features, block_expansion * 2 ** i),
                               min(max_features, block_expansion * 2 ** (i + 1)),
                               norm=i != 0, kernel_size=4, pool=i != num_blocks - 1, sn=sn)
            for i in range(num_blocks))
        self.conv = nn.Conv2d(self.down_blocks[-1].conv.out_channels, 1, kernel_size=1)
        if sn:
            self.conv = spectral_norm(self.conv)
        self.use_kp = use_kp
        self.kp_variance = kp_variance

    def forward(self, x, kp=None):
        out = x
        if self.use_kp:
            out = torch.cat([out, kp2gaussian(kp["value"], x.shape[2:], self.kp_variance)], dim=1)
        feature_maps = []
        for block in self.down_blocks:
            out = block(out)
            feature_maps.append(out)
        return feature_maps, self.conv(out)


class MultiScaleDiscriminator(nn.Module):
    """One Discriminator per image-pyramid scale; inputs and outputs keyed by scale."""

    def __init__(self, scales=(1,), **kwargs):
        super().__init__()
        self.scales = list(scales)
        self.discs = nn.ModuleDict({str(s).replace(".", "-"): Discriminator(**kwargs) for s in self.scales})

    def forward(self, x: dict, kp=None):
        out = {}
        for key, disc in self.discs.items():
            scale = key.replace("-", ".")
            feature_maps, prediction_map = disc(x["prediction_" + scale], kp)
            out["feature_maps_" + scale] = feature_maps
            out["prediction_map_" + scale] = prediction_map
        return out




# ------------------------------------------------------------------------------------------------
# Training objective (the official GeneratorFullModel / DiscriminatorFullModel)
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FOMMLossWeights(LossWeights):
    perceptual: tuple[float, ...] = ()          # one weight per VGG19 layer (relu1_1 ... relu5_1)
    generator_gan: float = 0.0
    discriminator_gan: float = 1.0
    feature_matching: tuple[float, ...] = ()    # one weight per discriminator block
    equivariance_value: float = 0.0
    equivariance_jacobian: float = 0.0
    keypoint_separation: float = 0.0            # marionet's addition (after face-vid2vid's prior)


@dataclass(frozen=True)
class TransformParams:
    """The random warps of the equivariance losses (official defaults of vox-256)."""
    sigma_affine: float = 0.05
    sigma_tps: float = 0.005
    points_tps: int = 5


@dataclass(frozen=True)
class FOMMTrainParams(TrainParams):
    transform_params: TransformParams = field(default_factory=TransformParams)
    keypoint_separation_distance: float = 0.2
    loss_weights: FOMMLossWeights = field(default_factory=FOMMLossWeights)


@float32_geometry
def equivariance_terms(transform, kp_driving: dict, kp_t: dict, value_weight: float, jacobian_weight: float) -> dict:
    """The equivariance losses: keypoints (B, K, 2) of the warped frame, warped back, against the
    driving frame's; and J_driving^-1 (warp Jacobian x J_warped) against the identity."""
    losses = {}
    if value_weight:
        losses["equivariance_value"] = value_weight * (
            kp_driving["value"] - transform.warp_coordinates(kp_t["value"])).abs().mean()
    if jacobian_weight and "jacobian" in kp_t:
        jac_t = transform.jacobian(kp_t["value"]) @ kp_t["jacobian"]
        value = torch.inverse(kp_driving["jacobian"]) @ jac_t
        eye = torch.eye(2, dtype=value.dtype, device=value.device)
        losses["equivariance_jacobian"] = jacobian_weight * (eye - value).abs().mean()
    return losses


class FOMMObjective(Objective):
    """The official FOMM losses.

    generator_loss(batch) -> (losses, generated); discriminator_loss(batch, generated) -> losses.
    batch: {"source": (B,3,H,W), "driving": (B,3,H,W), "seed": (B,) int64 per-sample seeds}.
    """

    def __init__(self, model: "FOMM", params: FOMMTrainParams):
        super().__init__(model)
        self.weights = weights = params.loss_weights
        self.scales = list(params.scales)
        self.disc_scales = model.discriminator.scales if model.discriminator is not None else []
        self.pyramid = ImagePyramid(sorted(set(self.scales) | set(self.disc_scales), key=lambda s: -s))
        self.perceptual = PerceptualPyramidLoss(weights.perceptual or [0], params.perceptual_backbone,
                                                params.vgg19_weights)
        self.transform_params = dataclasses.asdict(params.transform_params)
        self.align_corners = model.align_corners
        self.separation_distance = params.keypoint_separation_distance
        # As in the official train.py: no adversarial term, no discriminator training.
        self.trains_discriminator = bool(weights.generator_gan)

    def generator_loss(self, batch: dict):
        source, driving = batch["source"], batch["driving"]
        w = self.weights
        kp_source, kp_driving = self.kp_detector(source), self.kp_detector(driving)
        generated = self.generator(source, kp_driving=kp_driving, kp_source=kp_source,
                                   background=self.generator.background(source, driving))
        generated.update(kp_source=kp_source, kp_driving=kp_driving)
        losses = {}
        real = self.pyramid(driving)
        fake = self.pyramid(generated["prediction"])
        if sum(w.perceptual):
            losses["perceptual"] = self.perceptual({f"prediction_{s}": fake[f"prediction_{s}"] for s in self.scales},
                                                   {f"prediction_{s}": real[f"prediction_{s}"] for s in self.scales})
        if w.generator_gan:
            kp = detach_kp(kp_driving)
            d_fake, d_real = self.frozen_discriminator(fake, kp=kp), self.frozen_discriminator(real, kp=kp)
            losses["gen_gan"] = w.generator_gan * lsgan_generator_loss(
                [d_fake[f"prediction_map_{s}"] for s in self.disc_scales])
            if sum(w.feature_matching):
                losses["feature_matching"] = sum(
                    feature_matching_loss(d_real[f"feature_maps_{s}"], d_fake[f"feature_maps_{s}"], w.feature_matching)
                    for s in self.disc_scales)
        if w.keypoint_separation:
            value = torch.cat([kp_source["value"], kp_driving["value"]])
            losses["keypoint_separation"] = w.keypoint_separation * keypoint_separation_loss(
                value, self.separation_distance)
        if w.equivariance_value or w.equivariance_jacobian:
            losses.update(self.equivariance_losses(batch, kp_driving, generated))
        return losses, generated

    def equivariance_losses(self, batch: dict, kp_driving: dict, generated: dict) -> dict:
        """Keypoints (and Jacobians) of a randomly warped driving frame must follow the warp."""
        w, driving = self.weights, batch["driving"]
        transform = RandomTPS(batch["seed"].tolist(), device=driving.device, **self.transform_params)
        transformed = transform.warp_frames(driving, self.align_corners)
        kp_t = self.kp_detector(transformed)
        generated.update(transformed_frame=transformed, transformed_kp=kp_t)
        return equivariance_terms(transform, kp_driving, kp_t, w.equivariance_value, w.equivariance_jacobian)

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
        return {"disc_gan": self.weights.discriminator_gan * lsgan_discriminator_loss(real, fake)}


# ------------------------------------------------------------------------------------------------
# The family
# ------------------------------------------------------------------------------------------------

_VALUES = {  # model_params keys whose values are checked before building (config.check_values)
    **{f"common_params.{k}": "count" for k in ("num_kp", "num_channels")},
    **{f"kp_detector_params.{k}": "count" for k in ("block_expansion", "max_features", "num_blocks")},
    "kp_detector_params.temperature": "positive", "kp_detector_params.scale_factor": "fraction",
    **{f"generator_params.{k}": "count" for k in ("block_expansion", "max_features")},
    **{f"generator_params.{k}": "count0" for k in ("num_down_blocks", "num_bottleneck_blocks")},
    **{f"generator_params.dense_motion_params.{k}": "count" for k in ("block_expansion", "max_features",
                                                                        "num_blocks")},
    "generator_params.dense_motion_params.scale_factor": "fraction",
    "generator_params.dense_motion_params.kp_variance": "positive",
    **{f"discriminator_params.{k}": "count" for k in ("block_expansion", "max_features", "num_blocks")},
    "discriminator_params.scales": "fraction", "discriminator_params.kp_variance": "positive",
}


def check_model_params(config: dict) -> None:
    """Values and frame size of a FOMM config, checked before anything is built (one-line errors)."""
    params = config["model_params"]
    check_values(params, _VALUES)
    size = frame_shape(config)
    kp = params.get("kp_detector_params") or {}
    if "num_blocks" in kp:  # its 7x7 keypoint convolution needs 7 pixels
        check_divisible(size, kp.get("scale_factor", 1), kp["num_blocks"], "the keypoint detector",
                        minimum=max(1, -(-7 // 2 ** kp["num_blocks"])))
    generator = params.get("generator_params") or {}
    check_divisible(size, 1, generator.get("num_down_blocks", 0), "the generator")
    dense = generator.get("dense_motion_params") or {}
    if "num_blocks" in dense:
        check_divisible(size, dense.get("scale_factor", 1), dense["num_blocks"], "the dense-motion network")
    disc = params.get("discriminator_params") or {}
    for scale in disc.get("scales", [1]):
        side = min(size) * scale
        for i in range(disc.get("num_blocks", 4)):  # 4x4 convolutions without padding, 2x pooling but the last
            side = side - 3 if i == disc.get("num_blocks", 4) - 1 else (side - 3) // 2
        if side < 1:
            raise MarionetError(f"dataset_params.frame_shape: {size[0]}x{size[1]} is too small for the "
                                f"discriminator at scale {scale:g} (model_params.discriminator_params)")


class FOMM(ModelFamily):
    """The three networks of one FOMM model, built from the official ``model_params`` section."""

    family = "fomm"
    TrainParams = FOMMTrainParams
    keypoint_fields = ("value", "jacobian")
    image_heads = ("generator.final",)

    @classmethod
    def from_config(cls, config: dict, with_discriminator: bool = True) -> "FOMM":
        check_model_params(config)
        return cls(config["model_params"], with_discriminator=with_discriminator)

    def __init__(self, model_params: dict, with_discriminator: bool = True):
        super().__init__()
        common = dict(model_params.get("common_params") or {})
        self.align_corners = bool(common.pop("align_corners", True))
        self.kp_detector = construct(KPDetector, model_params.get("kp_detector_params"), "kp_detector_params", **common)
        self.generator = construct(OcclusionAwareGenerator, model_params.get("generator_params"), "generator_params",
                                   **common, align_corners=self.align_corners)
        self.discriminator = (construct(MultiScaleDiscriminator, model_params["discriminator_params"],
                                        "discriminator_params", **common)
                              if with_discriminator and "discriminator_params" in model_params else None)
        if self.kp_detector.jacobian is None:
            self.keypoint_fields = ("value",)

    def background(self, reference, driving):
        return self.generator.background(reference, driving)

    def generate(self, source, kp_source, kp_driving, source_features=None, background=None):
        return self.generator(source, kp_driving=kp_driving, kp_source=kp_source, source_features=source_features,
                              background=background)

    def objective(self, train_params: FOMMTrainParams) -> FOMMObjective:
        return FOMMObjective(self, train_params)

    @staticmethod
    def convert_official(network: str, state: dict) -> dict:
        """Official names -> ours. The one transformation: the official discriminator uses the old
        ``torch.nn.utils.spectral_norm`` hook (``weight_orig/_u/_v``), ours the parametrization."""
        renames = {"weight_orig": "parametrizations.weight.original",
                   "weight_u": "parametrizations.weight.0._u",
                   "weight_v": "parametrizations.weight.0._v"}
        out = {}
        for key, value in state.items():
            prefix, _, leaf = key.rpartition(".")
            out[f"{prefix}.{renames[leaf]}" if leaf in renames else key] = value
        return out

    def adapt_init(self, states: dict) -> tuple[dict, tuple[str, ...]]:
        """Fine-tuning rules: the anti-aliasing kernels are fixed functions of a network's scale_factor, not
        learned, so a fine-tune may change the resolution a network works at and keeps its own kernels; a
        background-motion network added to a model trained without one starts as the identity; the weights
        of a learned one are dropped when the config replaces it by the weight-free search."""
        states = dict(states)
        for network, key in (("kp_detector", "down.weight"), ("generator", "dense_motion_network.down.weight")):
            own = getattr(self, network).state_dict()
            if network in states:
                states[network] = {k: v for k, v in states[network].items() if k != key}
                if key in own:
                    states[network][key] = own[key]
        if "generator" in states and isinstance(self.generator.bg_motion, TranslationSearch):
            states["generator"] = {k: v for k, v in states["generator"].items() if not k.startswith("bg_motion.")}
        return states, ("generator.bg_motion.",)
