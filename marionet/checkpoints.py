"""Reading and writing model weights.

Two formats are read:
- marionet's own: one safetensors file holding ``generator.*``, ``kp_detector.*`` (and
  ``discriminator.*``) tensors, with the YAML config in the file's metadata;
- the official first-order-model / monkey-net ``*.pth.tar``: a ``torch.save``d dict with one
  state dict per network (possibly with DataParallel ``module.`` prefixes). It is read with
  ``torch.load(weights_only=True)``, which cannot execute code from the file, and carries no config.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file

from marionet.errors import MarionetError
from marionet.files import atomic_write, read_safetensors
from marionet.models.family import NETWORKS, ModelFamily

FORMAT = "marionet-checkpoint/1"
MODEL_FILE = "model.safetensors"      # a training run's inference checkpoint
ASSETS = Path(__file__).resolve().parent / "assets"
# Built-in models: name -> marionet checkpoint shipped in marionet/assets (trained by benchmarks/train_builtin.py).
BUILTIN_MODELS: dict[str, Path] = {"puppets": ASSETS / "models" / "puppets-64.safetensors",
                                   "posewarp-puppets": ASSETS / "models" / "posewarp-puppets-64.safetensors",
                                   "kpmask-puppets": ASSETS / "models" / "kpmask-puppets-64.safetensors",
                                   # no weights, only their configs (benchmarks/faces_eval.py --export)
                                   "faces": ASSETS / "models" / "faces.safetensors",
                                   "bodies": ASSETS / "models" / "bodies.safetensors"}


def builtin_checkpoint(name: str) -> Path:
    """The weights file of a built-in model; MarionetError listing the built-in models otherwise."""
    if name not in BUILTIN_MODELS:
        raise MarionetError(f"--model {name}: no such built-in model (built-in: {', '.join(BUILTIN_MODELS)}); "
                            "for your own weights use --checkpoint")
    path = BUILTIN_MODELS[name]
    if not path.is_file():
        raise MarionetError(f"built-in model {name!r}: its weights ({path}) are not installed")
    return path


def resolve_checkpoint(checkpoint) -> Path:
    """A built-in name, a training run directory (its model.safetensors) or a file path."""
    if str(checkpoint) in BUILTIN_MODELS:
        return builtin_checkpoint(str(checkpoint))
    path = Path(checkpoint)
    if path.is_dir():
        if not (path / MODEL_FILE).is_file():
            raise MarionetError(f"{path}: a folder without {MODEL_FILE} (not a training run)")
        return path / MODEL_FILE
    if not path.exists():
        hint = f"; built-in models: {', '.join(BUILTIN_MODELS)}" if path.parent == Path(".") and not path.suffix else ""
        raise MarionetError(f"{path}: no such checkpoint file{hint}")
    return path


def is_safetensors(path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def read_checkpoint(path) -> tuple[dict[str, dict[str, torch.Tensor]], dict | None, bool]:
    """-> ({network: state_dict}, config or None, is_official)."""
    path = Path(path)
    if not path.is_file():
        raise MarionetError(f"{path}: no such checkpoint file")
    if is_safetensors(path):
        flat, metadata = read_safetensors(path)
        config = json.loads(metadata["config"]) if "config" in metadata else None
        states: dict[str, dict] = {}
        for key, tensor in flat.items():
            network, _, name = key.partition(".")
            states.setdefault(network, {})[name] = tensor
        return states, config, False
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # zip/pickle errors, or a pickle that asks for arbitrary code
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            reason = "it holds Python objects other than tensors, refusing to unpickle them"
        raise MarionetError(f"{path}: not a readable checkpoint ({reason[:200]})") from None
    if not isinstance(data, dict) or not any(isinstance(data.get(n), dict) for n in NETWORKS):
        keys = list(data)[:6] if isinstance(data, dict) else type(data).__name__
        raise MarionetError(f"{path}: not a model checkpoint (no generator/kp_detector state dicts; found {keys})")
    states = {n: {k.removeprefix("module."): v for k, v in data[n].items()}
              for n in NETWORKS if isinstance(data.get(n), dict)}
    return states, None, True


def load_weights(model: ModelFamily, states: dict, path, official: bool, networks=("generator", "kp_detector"),
                 missing_ok: tuple[str, ...] = ()) -> None:
    """Strictly load the named networks; one-line error listing what does not match. Weights named
    ``<network>.<prefix>...`` for a prefix in ``missing_ok`` may be absent and keep their initialisation."""
    for name in networks:
        module = model.networks.get(name)
        if module is None or (name not in states and not module.state_dict()):   # a network without weights
            continue
        if name not in states:
            raise MarionetError(f"{path}: the checkpoint has no '{name}' weights (it has: {', '.join(states) or 'none'})")
        state = model.convert_official(name, states[name]) if official else states[name]
        optional = tuple(p[len(name) + 1:] for p in missing_ok if p.startswith(name + "."))
        _check_match(module, state, name, path, optional)
        module.load_state_dict(state, strict=not optional)


def load_init(model: ModelFamily, checkpoint) -> None:
    """``train --init``: start ``model`` from the weights of another checkpoint (official, marionet, a run
    directory or a built-in name), adapted by the family's rules (``ModelFamily.adapt_init``). The
    generator and keypoint detector must match; a discriminator that does not (e.g. an -adv config
    fine-tuning a checkpoint trained without one) starts from random weights, as officially."""
    path = resolve_checkpoint(checkpoint)
    states, _, official = read_checkpoint(path)
    states, missing_ok = model.adapt_init(states)
    load_weights(model, states, path, official, missing_ok=missing_ok)
    try:
        load_weights(model, states, path, official, networks=("discriminator",))
    except MarionetError as e:
        warnings.warn(f"the discriminator starts from random weights ({e})", stacklevel=3)


def _check_match(module: torch.nn.Module, state: dict, name: str, path, optional: tuple[str, ...] = ()) -> None:
    expected = module.state_dict()
    missing = [k for k in expected if k not in state and not (optional and k.startswith(optional))]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch (checkpoint vs config)", shapes)):
        if items:
            more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
            problems.append(f"{label}: {', '.join(items[:3])}{more}")
    if problems:
        raise MarionetError(f"{path}: does not match the config's {name}: {'; '.join(problems)}")


def save_checkpoint(path, model: ModelFamily, config: dict, networks=NETWORKS, dtype: torch.dtype | None = None) -> None:
    """Write marionet's safetensors checkpoint atomically (temp file + rename).

    ``networks`` and ``dtype`` make smaller inference exports (e.g. no discriminator, float16)."""
    tensors = {}
    for name, module in model.networks.items():
        if name not in networks:
            continue
        for key, value in module.state_dict().items():
            value = value.detach().contiguous().cpu()
            tensors[f"{name}.{key}"] = value.to(dtype) if dtype is not None and value.is_floating_point() else value
    metadata = {"format": FORMAT, "config": json.dumps(config)}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
