"""Image Animation with Keypoint Mask (Toledano, Marmor, Gertz 2021).

No dense motion at all. A frozen FOMM keypoint detector turns a frame into a one-channel structure
mask; a low-resolution generator maps (source, source mask, driving mask) to the driving frame, and
a high-resolution hourglass refines it from the full-size source, the (detached) masks and the
(detached) low-resolution frame. Module names follow the official code
(``or-toledano/animation-with-keypoint-mask``) so that its checkpoints load by name; its
configs are FOMM's layout, with ``scale_factor`` in ``common_params`` (detector and generator share
it) and the mask chosen in ``kp_detector_params``:

    heatmap   kp_after_softmax: False              sum of the K pre-softmax keypoint maps
    softmax   kp_after_softmax: False, softmax_mask: True   sum of the K softmax heatmaps
    circles   kp_after_softmax: True               a Gaussian circle drawn at each keypoint

Each raw map (h x w, S - 6 without padding) is min-max normalised per sample and zero-padded back
to S x S, S = frame size x scale_factor. Shapes: B batch, K keypoints, C channels, H x W frame.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from marionet.config import TrainParams, check_divisible, check_values, construct, frame_shape
from marionet.errors import ConfigError, MarionetError
from marionet.geometry import geometry_precision, heatmap_to_mean, kp2gaussian
from marionet.losses import ImagePyramid, Objective, PerceptualPyramidLoss
from marionet.models.family import ModelFamily
from marionet.models.fomm import FOMMLossWeights, KPDetector
from marionet.nn.blocks import AntiAliasInterpolation2d, DownBlock2d, Hourglass, ResBlock2d, SameBlock2d, UpBlock2d

MASKS = ("heatmap", "softmax", "circles")
CIRCLE_VARIANCE = 0.003   # official draw_kp: exp(-0.5 |z - kp|^2 / 0.003), about 2 px at S = 32


# ------------------------------------------------------------------------------------------------
# Masks
# ------------------------------------------------------------------------------------------------

class FrozenKPDetector(KPDetector):
    """FOMM's keypoint detector, always in eval mode, so that training does not move its batch-norm
    statistics (the official code lets them drift); ``KPMask`` also turns its gradients off and
    sets ``loaded`` when weights are loaded into it (a random detector makes meaningless masks)."""
    loaded = False

    def train(self, mode: bool = True):
        return super().train(False)


def _mark_loaded(module, incompatible_keys):
    module.loaded = True


def raw_keypoint_maps(detector: KPDetector, frames: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """frames (B, C, H, W) -> the detector's K keypoint logits (B, K, h, w) before the softmax, and
    the size S of its input (H, W) x scale_factor, which the masks are padded back to."""
    x = detector.down(frames) if detector.scale_factor != 1 else frames
    return geometry_precision(detector.kp(detector.predictor(x))), tuple(x.shape[2:])   # as KPDetector.forward


def draw_circles(value: torch.Tensor, size) -> torch.Tensor:
    """keypoints (B, K, 2) -> (B, h, w): the sum of a Gaussian of variance 0.003 at each keypoint."""
    return kp2gaussian(value, size, CIRCLE_VARIANCE).sum(1)


def normalise_and_pad(raw: torch.Tensor, size) -> torch.Tensor:
    """(B, h, w) -> (B, S_h, S_w): min-max normalised per sample to [0, 1], zero-padded centred."""
    b, h, w = raw.shape
    flat = raw.reshape(b, -1)
    flat = flat - flat.min(1, keepdim=True).values
    flat = flat / flat.max(1, keepdim=True).values.clamp_min(1e-12)   # a constant map stays 0, not NaN
    top, left = (size[0] - h) // 2, (size[1] - w) // 2
    return F.pad(flat.reshape(b, h, w), (left, size[1] - w - left, top, size[0] - h - top))


def keypoint_mask(detector: KPDetector, frames: torch.Tensor, kind: str) -> dict:
    """frames (B, C, H, W) -> {"raw": (B, h, w), "mask": (B, S, S), "value": (B, K, 2)}: the mask of
    ``kind`` (MASKS), the map it was normalised from, and the keypoints (softmax means)."""
    logits, size = raw_keypoint_maps(detector, frames)
    return masks_from_logits(logits, detector.temperature, kind, size)


def masks_from_logits(logits: torch.Tensor, temperature: float, kind: str, size) -> dict:
    """keypoint logits (B, K, h, w) -> ``keypoint_mask``'s dict, masks padded to ``size`` (S, S)."""
    assert kind in MASKS, kind
    b, k, h, w = logits.shape
    heatmap = F.softmax(logits.reshape(b, k, -1) / temperature, dim=2).reshape(b, k, h, w)
    value = heatmap_to_mean(heatmap)                                          # (B, K, 2)
    if kind == "heatmap":
        raw = logits.sum(1)
    elif kind == "softmax":
        raw = heatmap.sum(1)
    else:
        raw = draw_circles(value, (h, w))
    return {"raw": raw, "mask": normalise_and_pad(raw, size), "value": value}


# ------------------------------------------------------------------------------------------------
# Generator
# ------------------------------------------------------------------------------------------------

class KPMaskGenerator(nn.Module):
    """(source, source mask, driving mask) -> {"low_res_prediction", "prediction"} (B, C, H, W).

    Low-resolution stage, at S = H x scale_factor: the anti-aliased source and the two masks
    (C + 2 channels), a 7x7 block to block_expansion * 2**num_down_blocks channels, residual blocks,
    num_down_blocks up blocks back to H x W, a 7x7 conv and a sigmoid. Refiner, at H x W: an
    hourglass (block_expansion, 5 levels) on the full source, the bilinearly resized masks and the
    low-resolution frame, both detached, so each stage learns from its own loss only.

    The official constructor also builds ``down_blocks`` (an encoder the paper describes) that its
    forward never calls: they are kept, frozen, so that official checkpoints load strictly.
    ``hourglass_max_features`` (marionet's key) caps the refiner's width, 1024 in the official code.
    """

    def __init__(self, num_channels, block_expansion, max_features, num_down_blocks, num_bottleneck_blocks,
                 scale_factor=1, hourglass_max_features=1024):
        super().__init__()
        if abs(scale_factor * 2 ** num_down_blocks - 1) > 1e-9:
            raise ConfigError(f"model_params.generator_params.num_down_blocks: {num_down_blocks} up blocks must bring "
                              f"the scale_factor {scale_factor:g} stage back to the frame size "
                              f"(2**num_down_blocks = 1 / scale_factor)")
        widths = [min(max_features, block_expansion * 2 ** i) for i in range(num_down_blocks + 1)]
        if widths[-1] != block_expansion * 2 ** num_down_blocks:
            raise ConfigError(f"model_params.generator_params.max_features: {max_features} is less than "
                              f"block_expansion * 2**num_down_blocks = {block_expansion * 2 ** num_down_blocks}")
        self.source_first = AntiAliasInterpolation2d(num_channels, scale_factor)
        self.first = SameBlock2d(num_channels + 2, widths[-1], kernel_size=7, padding=3)
        self.down_blocks = nn.ModuleList(DownBlock2d(a, b) for a, b in zip(widths, widths[1:])).requires_grad_(False)
        self.up_blocks = nn.ModuleList(UpBlock2d(a, b) for a, b in zip(widths[:0:-1], widths[-2::-1]))
        self.bottleneck = nn.Sequential()
        for i in range(num_bottleneck_blocks):
            self.bottleneck.add_module(f"r{i}", ResBlock2d(widths[-1]))
        self.final = nn.Conv2d(block_expansion, num_channels, kernel_size=7, padding=3)
        self.hourglass = Hourglass(block_expansion, 2 * num_channels + 2, 5, hourglass_max_features)
        self.final_hourglass = nn.Conv2d(self.hourglass.out_filters, num_channels, kernel_size=7, padding=3)

    def encode_source(self, source):
        """(B, C, H, W) -> the anti-aliased source (B, C, S, S); depends on the source only."""
        return self.source_first(source)

    def forward(self, source, mask_source, mask_driving, source_features=None):
        """source (1|B, C, H, W), masks (1|B, 1, S, S) and (B, 1, S, S)."""
        b = mask_driving.shape[0]
        small = self.encode_source(source) if source_features is None else source_features
        small, source = small.expand(b, *small.shape[1:]), source.expand(b, *source.shape[1:])
        mask_source = mask_source.expand(b, *mask_source.shape[1:])
        out = self.first(torch.cat([small, mask_source, mask_driving], dim=1))   # (B, F, S, S)
        out = self.bottleneck(out)
        for block in self.up_blocks:
            out = block(out)                                                      # -> (B, be, H, W)
        low_res = torch.sigmoid(self.final(out))
        masks = F.interpolate(torch.cat([mask_source, mask_driving], dim=1), size=source.shape[2:],
                              mode="bilinear", align_corners=False)               # (B, 2, H, W)
        refined = self.hourglass(torch.cat([source, masks.detach(), low_res.detach()], dim=1))
        return {"low_res_prediction": low_res, "prediction": torch.sigmoid(self.final_hourglass(refined))}


# ------------------------------------------------------------------------------------------------
# Training objective (the official GeneratorFullModel)
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class KPMaskTrainParams(TrainParams):
    # FOMM's loss-weight keys, which the official KP-mask configs keep; only ``perceptual`` is used.
    loss_weights: FOMMLossWeights = field(default_factory=FOMMLossWeights)

    def validate(self, where: str) -> None:
        super().validate(where)
        if not sum(self.loss_weights.perceptual):
            raise MarionetError(f"{where}.loss_weights.perceptual: KP-mask trains with the perceptual loss only; "
                                "give it non-zero weights")


class KPMaskObjective(Objective):
    """The perceptual pyramid loss on both predictions against the driving frame (``perceptual_low_res``
    and ``perceptual``), with FOMM's VGG19 and fallback rules. The masks come from the frozen
    detector without gradients. batch: {"source": (B, C, H, W), "driving": (B, C, H, W)}."""

    def __init__(self, model: "KPMask", params: KPMaskTrainParams):
        super().__init__(model)
        self.kind = model.mask_kind
        self.scales = list(params.scales)
        self.pyramid = ImagePyramid(self.scales)
        self.perceptual = PerceptualPyramidLoss(params.loss_weights.perceptual, params.perceptual_backbone,
                                                params.vgg19_weights)
        w = params.loss_weights
        self.ignored = [k for k in ("generator_gan", "feature_matching", "equivariance_value", "equivariance_jacobian",
                                    "keypoint_separation") if np.any(getattr(w, k))]

    def generator_loss(self, batch: dict):
        with torch.no_grad():
            kp_source = keypoint_mask(self.kp_detector, batch["source"], self.kind)
            kp_driving = keypoint_mask(self.kp_detector, batch["driving"], self.kind)
        generated = self.generator(batch["source"], kp_source["mask"][:, None], kp_driving["mask"][:, None])
        generated.update(kp_source=kp_source, kp_driving=kp_driving)
        real = self.pyramid(batch["driving"])
        losses = {f"perceptual{suffix}": self.perceptual(self.pyramid(generated[key]), real)
                  for key, suffix in (("low_res_prediction", "_low_res"), ("prediction", ""))}
        return losses, generated

    def describe(self) -> list[str]:
        lines = super().describe()
        if not self.kp_detector.loaded:
            lines.append("warning: the frozen keypoint detector has random weights; give a FOMM checkpoint with "
                         "--init (its kp_detector: the built-in puppets model, an official file or a run)")
        if self.ignored:
            lines.append(f"KP-mask trains with the perceptual loss only: loss_weights {', '.join(self.ignored)} "
                         "are not used (no discriminator, frozen detector), as in the official code")
        return lines

    def visualize(self, batch: dict, generated: dict):
        """One row per sample: source | source mask | driving | driving mask | low-res | prediction."""
        from PIL import Image

        def cells(i):
            h, w = batch["source"].shape[2:]
            for x in (batch["source"][i], generated["kp_source"]["mask"][i], batch["driving"][i],
                      generated["kp_driving"]["mask"][i], generated["low_res_prediction"][i],
                      generated["prediction"][i]):
                x = x.detach().float().cpu().reshape(-1, *x.shape[-2:])
                yield F.interpolate(x[None], size=(h, w), mode="nearest")[0].expand(3, h, w)

        rows = [torch.cat(list(cells(i)), dim=2) for i in range(min(4, batch["source"].shape[0]))]
        grid = torch.cat(rows, dim=1).clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
        return Image.fromarray(grid)


# ------------------------------------------------------------------------------------------------
# The family
# ------------------------------------------------------------------------------------------------

_VALUES = {  # model_params keys whose values are checked before building (config.check_values)
    **{f"common_params.{k}": "count" for k in ("num_kp", "num_channels")},
    "common_params.scale_factor": "fraction",
    **{f"kp_detector_params.{k}": "count" for k in ("block_expansion", "max_features", "num_blocks")},
    "kp_detector_params.temperature": "positive",
    **{f"generator_params.{k}": "count" for k in ("block_expansion", "max_features", "hourglass_max_features")},
    **{f"generator_params.{k}": "count0" for k in ("num_down_blocks", "num_bottleneck_blocks")},
}


def check_model_params(config: dict) -> None:
    """Values and frame size of a KP-mask config, checked before anything is built (one-line errors)."""
    params = config["model_params"]
    check_values(params, _VALUES)
    size = frame_shape(config)
    scale = (params.get("common_params") or {}).get("scale_factor", 1)
    kp = params.get("kp_detector_params") or {}
    if "num_blocks" in kp:  # its 7x7 keypoint convolution needs 7 pixels
        check_divisible(size, scale, kp["num_blocks"], "the keypoint detector",
                        minimum=max(1, -(-7 // 2 ** kp["num_blocks"])))
    check_divisible(size, 1, 5, "the refining hourglass")
    for key in ("kp_after_softmax", "softmax_mask"):
        if not isinstance(kp.get(key, False), bool):
            raise MarionetError(f"model_params.kp_detector_params.{key}: must be true or false, got {kp[key]!r}")


class KPMask(ModelFamily):
    """A frozen FOMM keypoint detector and the two-stage mask-to-frame generator.

    Official checkpoints load strictly, with the weights that affect nothing: ``generator.down_blocks.*``
    (never called) and ``kp_detector.jacobian.*`` (no mask uses the Jacobians).
    """

    family = "kpmask"
    TrainParams = KPMaskTrainParams
    image_outputs = ("mask",)

    def __init__(self, model_params: dict, with_discriminator: bool = True):
        super().__init__()
        common = dict(model_params.get("common_params") or {})
        common.pop("align_corners", None)  # marionet's FOMM key; nothing here samples a grid
        kp = dict(model_params.get("kp_detector_params") or {})
        circles, softmax = kp.pop("kp_after_softmax", False), kp.pop("softmax_mask", False)
        if circles and softmax:
            raise ConfigError("model_params.kp_detector_params: softmax_mask applies to kp_after_softmax: False only "
                              "(circles are drawn at the softmax means)")
        self.mask_kind = "circles" if circles else "softmax" if softmax else "heatmap"
        self.kp_detector = construct(FrozenKPDetector, kp, "kp_detector_params", **common).requires_grad_(False).eval()
        self.kp_detector.register_load_state_dict_post_hook(_mark_loaded)
        shared = {k: common[k] for k in ("num_channels", "scale_factor") if k in common}
        self.generator = construct(KPMaskGenerator, model_params.get("generator_params"), "generator_params", **shared)
        self.discriminator = None

    @classmethod
    def recognizes(cls, config: dict, states: dict | None = None) -> bool:
        """Only KP-mask configs have the mask switches; taichi-256-d has neither, but its generator has
        no dense motion and its scale_factor sits in common_params (FOMM's generator would reject it)."""
        params = config["model_params"]
        kp, generator = params.get("kp_detector_params") or {}, params.get("generator_params") or {}
        if "kp_after_softmax" in kp or "softmax_mask" in kp:
            return True
        if states and "final_hourglass.weight" in states.get("generator", {}):
            return True
        return ("scale_factor" in (params.get("common_params") or {}) and "dense_motion_params" not in generator
                and "kp_embedding_params" not in generator)

    @classmethod
    def from_config(cls, config: dict, with_discriminator: bool = True) -> "KPMask":
        check_model_params(config)
        return cls(config["model_params"], with_discriminator=with_discriminator)

    def trained_networks(self) -> dict[str, nn.Module]:
        return {"generator": self.generator}

    # ---------------------------------------------------------------------------------- inference

    def mask(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, S, S) masks in [0, 1]."""
        return keypoint_mask(self.kp_detector, frames, self.mask_kind)["mask"]

    def detect(self, frames: torch.Tensor) -> dict:
        """(B, C, H, W) -> {"value": (B, K, 2) keypoints, "mask": (B, S, S)}."""
        out = keypoint_mask(self.kp_detector, frames, self.mask_kind)
        return {"value": out["value"], "mask": out["mask"]}

    def transfer_keypoints(self, kp_source: dict, kp_driving: dict, kp_initial: dict, relative: bool = True,
                           scale: float = 1.0) -> dict:
        """Absolute: the driving frame's own mask. Relative (circles only): FOMM's relative keypoints,
        with both circle masks drawn on the whole S x S grid, unpadded, as the official animate mode
        does (so the same keypoint lands on another pixel than in training masks)."""
        if not relative:
            return dict(kp_driving)
        if self.mask_kind != "circles":
            raise MarionetError(f"relative motion: the KP-mask {self.mask_kind} mask is computed from the driving "
                                "frame itself and cannot be moved; use absolute motion (--absolute, relative=False), "
                                "or a circles model (kp_after_softmax: True)")
        value = (kp_driving["value"] - kp_initial["value"]) * scale + kp_source["value"]
        size = kp_driving["mask"].shape[1:]
        return {"value": value, "mask": normalise_and_pad(draw_circles(value, size), size),
                "source_mask": normalise_and_pad(draw_circles(kp_source["value"], size), size)}

    def generate(self, source, kp_source, kp_driving, source_features=None, background=None):
        mask_source = kp_driving.get("source_mask", kp_source["mask"])
        return self.generator(source, mask_source[:, None], kp_driving["mask"][:, None], source_features)

    # ---------------------------------------------------------------------------------- training

    def objective(self, train_params: KPMaskTrainParams) -> KPMaskObjective:
        return KPMaskObjective(self, train_params)

    def adapt_init(self, states: dict) -> tuple[dict, tuple[str, ...]]:
        """``--init``: a FOMM checkpoint (official, built-in, a run) gives the frozen detector only and
        the generator starts from random weights; a KP-mask checkpoint gives both (fine-tuning)."""
        if "final_hourglass.weight" in states.get("generator", {}):
            return states, ()
        return {**{k: v for k, v in states.items() if k == "kp_detector"}, "generator": {}}, ("generator.",)
