"""Configuration: the official FOMM / Monkey-Net YAML layout, and typed sections parsed from it.

``model_params`` is read by the model families (``marionet.models``); ``train_params`` is parsed once
into a ``TrainParams`` dataclass (each family extends it with its own keys and loss weights), with
every default stated there and an unknown or ill-typed key reported on one line naming the key and
the file. A config dict is never changed by parsing.

marionet adds two optional keys, both documented in the README:
``model_params.common_params.align_corners`` (grid_sample convention, default true) and a
top-level ``family`` (guessed from the model keys when absent).
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from marionet.errors import MarionetError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def load_config(path) -> dict:
    """Read a YAML config; a bare name like ``vox-256`` means the config shipped with marionet."""
    path = Path(path)
    if not path.exists() and not path.suffix and (CONFIG_DIR / f"{path}.yaml").exists():
        path = CONFIG_DIR / f"{path}.yaml"
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
        raise MarionetError(f"{path}: no such config file (shipped configs: {shipped})")
    try:
        with open(path) as f:
            config = yaml.safe_load(f)
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise MarionetError(f"{path}: not a valid YAML file ({str(e).splitlines()[0]})") from None
    return validate_config(config, str(path))


def validate_config(config, source: str = "config") -> dict:
    """A deep copy of ``config`` once its sections are there (the caller's dict stays untouched)."""
    if not isinstance(config, dict) or not isinstance(config.get("model_params"), dict):
        raise MarionetError(f"{source}: no 'model_params' section (expected the official FOMM/Monkey-Net layout)")
    params = config["model_params"]
    for key in ("common_params", "kp_detector_params", "generator_params"):
        if key in params and not isinstance(params[key], dict):
            raise MarionetError(f"{source}: 'model_params.{key}' must be a mapping")
    return copy.deepcopy(config)


def frame_shape(config: dict) -> tuple[int, int]:
    """(H, W) the model works at; official configs give dataset_params.frame_shape [H, W, C]
    (FOMM) or dataset_params.image_shape (Monkey-Net)."""
    dataset = config.get("dataset_params") or {}
    key = "image_shape" if "image_shape" in dataset and "frame_shape" not in dataset else "frame_shape"
    shape = dataset.get(key) or [256, 256, 3]
    if (not isinstance(shape, (list, tuple)) or len(shape) not in (2, 3)
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)):
        raise MarionetError(f"dataset_params.{key}: expected [height, width, channels] of positive whole numbers, "
                            f"got {shape!r}")
    return shape[0], shape[1]


# ------------------------------------------------------------------------------------------------
# Values of model_params
# ------------------------------------------------------------------------------------------------

_RULES = {  # kind -> (test, what it must be)
    "count": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "a whole number >= 1"),
    "count0": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "a whole number >= 0"),
    "positive": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0, "a number > 0"),
    "fraction": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1,
                 "a number in (0, 1]"),
}


def check_values(model_params: dict, rules: dict[str, str]) -> None:
    """Each ``"section.sub.key": kind`` present in ``model_params`` must be of that kind (see _RULES);
    a list value (e.g. scales) is checked element by element. One-line MarionetError naming the key."""
    for dotted, kind in rules.items():
        value, found = model_params, True
        for part in dotted.split("."):
            if not isinstance(value, dict) or part not in value:
                found = False
                break
            value = value[part]
        if not found or value is None:
            continue
        test, must = _RULES[kind]
        if not all(test(v) for v in (value if isinstance(value, (list, tuple)) else [value])):
            raise MarionetError(f"model_params.{dotted}: must be {must}, got {value!r}")


def check_divisible(size: tuple[int, int], scale: float, levels: int, what: str, minimum: int = 1) -> None:
    """An hourglass of ``levels`` 2x poolings at ``scale`` of a frame of ``size`` (H, W) needs that
    resolution divisible by 2**levels (its skips must meet their upsampled levels) and at least
    ``minimum`` pixels after the poolings."""
    factor = 2 ** levels
    for side, name in zip(size, ("height", "width")):
        scaled = side * scale
        if abs(scaled - round(scaled)) > 1e-6 or round(scaled) % factor or round(scaled) // factor < minimum:
            raise MarionetError(
                f"dataset_params.frame_shape: the frame {name} {side} does not suit {what}: at scale {scale:g} it "
                f"must give a whole multiple of 2**{levels} = {factor} pixels"
                + (f", at least {minimum * factor}" if minimum > 1 else ""))


# ------------------------------------------------------------------------------------------------
# Typed sections
# ------------------------------------------------------------------------------------------------

def parse_section(cls, data, where: str):
    """A dataclass ``cls`` from the mapping ``data`` (None = all defaults). ``where`` names the section
    in messages (``train_params.loss_weights``). Numbers given as strings (YAML reads ``2e-4`` as one)
    are accepted for float fields; anything else of the wrong type is an error."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MarionetError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise MarionetError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    return cls(**{key: _coerce(hints[key], value, f"{where}.{key}") for key, value in data.items()})


def _coerce(kind, value, where: str):
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(option, value, where)
            except MarionetError as e:
                errors.append(str(e))
        raise MarionetError(errors[-1])
    if dataclasses.is_dataclass(kind):
        return parse_section(kind, value, where)
    if origin is tuple:  # tuple[X, ...]
        if not isinstance(value, (list, tuple)):
            raise MarionetError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value  # an int stays one: scales name modules ("1", official checkpoints) as str(scale)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is str:
        if isinstance(value, str):
            return value
    elif kind is dict:
        if isinstance(value, dict):
            return dict(value)
    else:
        raise TypeError(f"{where}: no parser for the type {kind!r}")
    raise MarionetError(f"{where}: expected {_type_name(kind)}, got {value!r}")


def _type_name(kind) -> str:
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a string",
            dict: "a mapping"}.get(kind, str(kind))


@dataclass(frozen=True)
class LossWeights:
    """``train_params.loss_weights``; each family extends it with its own terms and defaults."""


@dataclass(frozen=True)
class LogParams:
    """Monkey-Net's ``train_params.log_params``."""
    log_freq_iter: int = 100
    cpk_freq_epoch: int = 50


@dataclass(frozen=True)
class TrainParams:
    """``train_params``: the keys the trainer reads, with their defaults. A family subclasses it to add
    its own keys and to type ``loss_weights`` (``ModelFamily.TrainParams``)."""
    num_epochs: int = 1
    num_repeats: int = 1
    epoch_milestones: tuple[float, ...] = ()
    batch_size: int = 4
    lr: float = 2e-4                                  # Monkey-Net gives one rate for every network
    lr_generator: float | None = None                 # FOMM gives one per network
    lr_kp_detector: float | None = None
    lr_discriminator: float | None = None
    checkpoint_freq: int | None = None                # epochs; default log_params.cpk_freq_epoch
    log_params: LogParams = field(default_factory=LogParams)
    seed: int = 0
    scales: tuple[float, ...] = (1,)                # image-pyramid scales of the reconstruction loss
    perceptual_backbone: str = "vgg19"                # vgg19 | random-vgg19 | pixels
    vgg19_weights: str | None = None
    loss_weights: LossWeights = field(default_factory=LossWeights)

    def learning_rate(self, network: str) -> float:
        rate = getattr(self, f"lr_{network}", None)
        return self.lr if rate is None else rate

    @property
    def checkpoint_epochs(self) -> int:
        return self.checkpoint_freq if self.checkpoint_freq is not None else self.log_params.cpk_freq_epoch

    def validate(self, where: str) -> None:
        for name in ("num_epochs", "num_repeats", "batch_size"):
            if getattr(self, name) < 1:
                raise MarionetError(f"{where}.{name}: must be at least 1, got {getattr(self, name)}")
        if self.checkpoint_epochs < 1:
            raise MarionetError(f"{where}.checkpoint_freq: must be at least 1, got {self.checkpoint_epochs}")


def parse_train_params(cls: type[TrainParams], config: dict, source: str = "config") -> TrainParams:
    params = parse_section(cls, config.get("train_params"), f"{source}: train_params")
    params.validate(f"{source}: train_params")
    return params


def construct(cls, params, where: str, **fixed):
    """``cls(**params, **fixed)`` once the keys of ``params`` are checked against its signature, so
    that an unknown or missing config key is a one-line error while errors raised inside the
    constructor (bugs) keep their traceback. ``where`` names the section (``kp_detector_params``)."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise MarionetError(f"model_params.{where}: expected a mapping, got {params!r}")
    clash = sorted(set(params) & set(fixed))
    if clash:
        raise MarionetError(f"model_params.{where}: {clash[0]!r} is set elsewhere (common_params) and may not "
                            "be repeated here")
    try:
        inspect.signature(cls).bind(**params, **fixed)
    except TypeError as e:
        raise MarionetError(f"model_params.{where}: {e}") from None
    return cls(**params, **fixed)
