"""ONNX export of a model's inference: keypoint detector, source encoder, per-frame generator.

    marionet export --config vox-256 --checkpoint vox-cpk.pth.tar --format onnx --out vox-onnx
    export_onnx(pipeline, "vox-onnx")            # from Python; pipeline = marionet.load(...)

The folder holds one graph per step of ``AnimationPipeline`` (each through the family's own method, so any
family exports the same way), the config, and ``export.json`` saying what each graph takes and gives:

    detector.onnx    frames (B, C, H, W) -> one output per keypoint field, e.g. value (B, K, 2), jacobian (B, K, 2, 2)
    encoder.onnx     source (S, C, H, W) -> feature_0 .. feature_n (what encode_source returns, flattened)
    generator.onnx   source (1, C, H, W), feature_i (1, ...), source_<field> (1, K, ...), driving_<field> (B, K, ...)
                     [, background (B, 2, 3)] -> prediction (B, C, H, W)
    background.onnx  only for a model with camera motion: reference (1, C, H, W), driving (B, C, H, W) -> (B, 2, 3)

B and S are dynamic axes. Relative motion transfer stays outside the graphs (float32 keypoint geometry;
``marionet.inference.ort.OnnxModel`` runs it with the family's own code). At export, each graph runs in
onnxruntime on smooth test frames at two batch sizes other than the traced one and must match PyTorch
within ``tolerance``, or the export fails and writes nothing. 2x2 matrix inverses (Jacobians, covariances),
which ONNX has no operator for, are exported in closed form.

``onnx_pipeline(...)`` gives an ``AnimationPipeline`` on onnxruntime from an exported folder, or exports
into a cache beside the checkpoint first (``marionet animate --backend onnxruntime``).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
import yaml
from torch import nn
from torch.utils import _pytree as pytree

from marionet.errors import MarionetError
from marionet.files import Staged, check_writable
from marionet.inference.ort import FORMAT, MANIFEST, OnnxModel, require

OPSET = 18
TOLERANCE = 1e-4


# ------------------------------------------------------------------------------------------------
# The graphs: each wraps one of the family's inference methods
# ------------------------------------------------------------------------------------------------

class Detector(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, frames):
        kp = self.model.detect(frames)
        return tuple(kp[k] for k in self.model.keypoint_fields)


class Encoder(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, source):
        return tuple(pytree.tree_leaves(self.model.encode_source(source)))


class Background(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, reference, driving):
        return self.model.background(reference, driving)


class Generator(nn.Module):
    """(source, *features, *kp_source fields, *kp_driving fields[, background]) -> prediction."""

    def __init__(self, model, spec, fields, with_background):
        super().__init__()
        self.model, self.spec, self.fields, self.with_background = model, spec, fields, with_background

    def forward(self, *inputs):
        source, args = inputs[0], inputs[1:]
        n, k = self.spec.num_leaves, len(self.fields)
        features = pytree.tree_unflatten(list(args[:n]), self.spec) if n else None
        kp_source = dict(zip(self.fields, args[n:n + k]))
        kp_driving = dict(zip(self.fields, args[n + k:n + 2 * k]))
        background = args[n + 2 * k] if self.with_background else None
        return self.model.generate(source, kp_source, kp_driving, features, background)["prediction"]


def _inverse_2x2(matrix):
    """aten.linalg_inv for (..., 2, 2) in closed form: [[d, -b], [-c, a]] / (ad - bc)."""
    from onnxscript import opset18 as op

    def entry(i, j):
        row = op.Gather(matrix, op.Constant(value_int=i), axis=-2)
        return op.Gather(row, op.Constant(value_int=j), axis=-1)

    a, b, c, d = entry(0, 0), entry(0, 1), entry(1, 0), entry(1, 1)
    last, second = op.Constant(value_ints=[-1]), op.Constant(value_ints=[-2])
    row0 = op.Concat(op.Unsqueeze(d, last), op.Unsqueeze(op.Neg(b), last), axis=-1)
    row1 = op.Concat(op.Unsqueeze(op.Neg(c), last), op.Unsqueeze(a, last), axis=-1)
    det = op.Sub(op.Mul(a, d), op.Mul(b, c))
    return op.Div(op.Concat(op.Unsqueeze(row0, second), op.Unsqueeze(row1, second), axis=-2),
                  op.Unsqueeze(op.Unsqueeze(det, last), last))


def _inverse_2x2_ex(matrix):
    inverse = _inverse_2x2(matrix)
    from onnxscript import opset18 as op

    return inverse, op.Cast(op.ReduceSum(op.Mul(inverse, op.Constant(value_float=0.0)), op.Constant(value_ints=[-1, -2]),
                                         keepdims=0), to=6)


def _translations() -> dict:
    aten = torch.ops.aten
    return {aten.linalg_inv_ex.default: _inverse_2x2_ex, aten.linalg_inv.default: _inverse_2x2,
            aten.inverse.default: _inverse_2x2}


def _export(module: nn.Module, args: tuple, names: list[str], outputs: list[str], batch_axes: dict[str, int],
            path: Path) -> None:
    """torch.export -> ONNX (opset 18) at ``path``; ``batch_axes``: input name -> its dynamic axis 0's Dim."""
    require("onnxscript")
    batch = torch.export.Dim("batch", min=1, max=4096)
    shapes = tuple({0: batch} if name in batch_axes else None for name in names)
    if isinstance(module, Generator):  # forward(*inputs): one variadic argument
        shapes = (shapes,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import logging

        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        # opt_einsum picks a contraction order from the operands' sizes, which fixes the batch size
        optimize_einsum, torch.backends.opt_einsum.enabled = torch.backends.opt_einsum.enabled, False
        try:
            program = torch.onnx.export(module, args, input_names=names, output_names=outputs, dynamic_shapes=shapes,
                                        dynamo=True, opset_version=OPSET, custom_translation_table=_translations(),
                                        verbose=False, optimize=True)
        except Exception as e:  # noqa: BLE001 -- an exporter failure names the operation it could not convert
            if os.environ.get("MARIONET_DEBUG"): raise
            raise MarionetError(f"{path.name}: this model cannot be exported to ONNX "
                                f"({' '.join(str(e).split())[:300]})") from None
        finally:
            torch.backends.opt_einsum.enabled = optimize_einsum
    program.save(str(path))


# ------------------------------------------------------------------------------------------------
# Export and its check
# ------------------------------------------------------------------------------------------------

def check_frames(n: int, channels: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """(n, C, H, W) frames in [0, 1]: a colour gradient with four coloured Gaussian blobs that move from
    frame to frame (noise would test the graphs on inputs no model sees, where float32 itself is unstable)."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.linspace(0, 1, height)[:, None], torch.linspace(0, 1, width)[None, :]
    base = 0.15 + 0.3 * (x * torch.rand(channels, 1, 1, generator=g) + y * torch.rand(channels, 1, 1, generator=g))
    colours = torch.rand(4, channels, 1, 1, generator=g) * 0.6 - 0.3
    start, step = torch.rand(4, 2, generator=g) * 0.6 + 0.2, (torch.rand(4, 2, generator=g) - 0.5) * 0.1
    frames = []
    for t in range(n):
        cx, cy = (start + t * step).unbind(1)
        blobs = torch.exp(-((x - cx[:, None, None]) ** 2 + (y - cy[:, None, None]) ** 2) / 0.01)   # (4, H, W)
        frames.append(base + (colours * blobs[:, None]).sum(0))
    return torch.stack(frames).clamp(0, 1)


def export_onnx(pipeline, out_dir, tolerance: float = TOLERANCE, checkpoint: Path | None = None,
                progress=None) -> dict:
    """Write the ONNX graphs of ``pipeline``'s model (an ``AnimationPipeline``) to the folder ``out_dir``
    (replaced when it is an earlier export) -> the manifest (also in export.json)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not (out_dir / MANIFEST).is_file() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise MarionetError(f"{out_dir}: exists and is not a marionet export; give a new or empty folder")
    check_writable(out_dir / MANIFEST)
    require("onnx")
    require("onnxruntime")
    say = progress or (lambda message: None)
    model = pipeline.model.eval()
    config = pipeline.config
    h, w = pipeline.frame_shape
    c = int((config.get("model_params", {}).get("common_params") or {}).get("num_channels", 3))
    fields = list(model.keypoint_fields)
    frames = check_frames(6, c, h, w)
    source, traced, checks = frames[:1], frames[1:3], (frames[3:4], frames[3:6])  # traced at batch 2, checked at 1 and 3
    manifest = {"format": FORMAT, "family": model.family, "keypoint_fields": fields, "frame_shape": [h, w],
                "channels": c, "opset": OPSET, "tolerance": tolerance, "graphs": {}, "max_abs_diff": {}}
    if checkpoint is not None:
        manifest["checkpoint"] = checkpoint_stamp(checkpoint)
    with torch.no_grad(), Staged(out_dir, directory=True) as tmp:
        tmp = Path(tmp)
        say("keypoint detector")
        _export(Detector(model), (traced,), ["frames"], fields, {"frames": 0}, tmp / "detector.onnx")
        manifest["graphs"]["detector"] = {"inputs": ["frames"], "outputs": fields}

        features = model.encode_source(source)
        leaves, spec = pytree.tree_flatten(features)
        feature_names = [f"feature_{i}" for i in range(len(leaves))]
        manifest["features"] = pytree.treespec_dumps(spec)
        if leaves:
            say("source encoder")
            _export(Encoder(model), (traced,), ["source"], feature_names, {"source": 0}, tmp / "encoder.onnx")
            manifest["graphs"]["encoder"] = {"inputs": ["source"], "outputs": feature_names}

        background = model.background(source, traced)
        if background is not None:
            say("background motion")
            _export(Background(model), (source, traced), ["reference", "driving"], ["background"], {"driving": 0},
                    tmp / "background.onnx")
            manifest["graphs"]["background"] = {"inputs": ["reference", "driving"], "outputs": ["background"]}

        say("generator")
        kp_source = model.detect(source)
        kp_driving = model.detect(traced)
        names = (["source"] + feature_names + [f"source_{k}" for k in fields] + [f"driving_{k}" for k in fields]
                 + (["background"] if background is not None else []))
        args = ((source, *leaves, *(kp_source[k] for k in fields), *(kp_driving[k] for k in fields))
                + ((background,) if background is not None else ()))
        dynamic = {f"driving_{k}": 0 for k in fields} | ({"background": 0} if background is not None else {})
        _export(Generator(model, spec, fields, background is not None), args, names, ["prediction"], dynamic,
                tmp / "generator.onnx")
        manifest["graphs"]["generator"] = {"inputs": names, "outputs": ["prediction"]}

        say("checking the graphs against PyTorch")
        manifest["max_abs_diff"] = check_export(model, tmp, manifest, source, checks)
        bad = {k: v for k, v in manifest["max_abs_diff"].items() if not v <= tolerance}
        if bad:
            raise MarionetError(f"{out_dir}: the exported graphs differ from PyTorch by more than {tolerance:g} "
                                f"({', '.join(f'{k} {v:.2g}' for k, v in bad.items())}); nothing written")
        (tmp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def check_export(model, folder: Path, manifest: dict, source, batches) -> dict[str, float]:
    """Largest |onnxruntime - PyTorch| per graph on ``source`` and each driving batch in ``batches``."""

    onnx_model = OnnxModel(folder, manifest=manifest)
    diffs = {}

    def note(name, a, b):
        for x, y in zip(pytree.tree_leaves(a), pytree.tree_leaves(b)):
            diffs[name] = max(diffs.get(name, 0.0), float((x.float() - y.float()).abs().max()))

    note("encoder", model.encode_source(source), onnx_model.encode_source(source))
    for driving in batches:
        note("detector", model.detect(driving), onnx_model.detect(driving))
        background = model.background(source, driving)
        if background is not None:
            note("background", background, onnx_model.background(source, driving))
        kp_source, kp_driving = model.detect(source), model.detect(driving)
        features = model.encode_source(source)
        note("generator", model.generate(source, kp_source, kp_driving, features, background)["prediction"],
             onnx_model.generate(source, kp_source, kp_driving, features, background)["prediction"])
    return diffs


# ------------------------------------------------------------------------------------------------
# Loading, and the cache beside a checkpoint
# ------------------------------------------------------------------------------------------------

def is_export(path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def checkpoint_stamp(path: Path) -> dict:
    """What identifies a checkpoint file's contents for the cache: size, modification time, SHA-256."""
    stat = Path(path).stat()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return {"name": Path(path).name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest.hexdigest()}


def cache_dir(checkpoint: Path, builtin: bool = False) -> Path:
    """Where the export of ``checkpoint`` is cached: ``<checkpoint>.onnx/`` beside it; for a built-in model
    or an unwritable folder, under the user's cache (``$XDG_CACHE_HOME/marionet``, else ~/.cache/marionet)."""
    checkpoint = Path(checkpoint).absolute()
    beside = checkpoint.parent / f"{checkpoint.name}.onnx"
    if not builtin and os.access(checkpoint.parent, os.W_OK | os.X_OK):
        return beside
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "marionet" / "onnx"
    key = hashlib.sha256(str(checkpoint).encode()).hexdigest()[:12]
    return root / f"{checkpoint.name}-{key}.onnx"


def _cache_is_current(folder: Path, checkpoint: Path, config: dict | None) -> bool:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        stamp = manifest.get("checkpoint") or {}
        stat = checkpoint.stat()
        same_config = config is None or yaml.safe_load((folder / "config.yaml").read_text()) == config
        return (manifest.get("format") == FORMAT and stamp.get("size") == stat.st_size
                and stamp.get("mtime_ns") == stat.st_mtime_ns and same_config)
    except (OSError, ValueError, yaml.YAMLError):
        return False


def onnx_pipeline(checkpoint=None, config=None, device: str = "cpu", progress=None):
    """An ``AnimationPipeline`` on onnxruntime: ``checkpoint`` is an exported folder, or a checkpoint (a
    built-in name, a file or a run folder; with ``config`` for an official one) exported into its cache
    first; with ``config`` alone, an untrained model exported into a temporary folder."""
    import marionet
    from marionet.checkpoints import BUILTIN_MODELS, resolve_checkpoint
    from marionet.config import load_config
    from marionet.pipeline import AnimationPipeline

    if str(device) != "cpu":
        raise MarionetError(f"--device {device}: the onnxruntime backend runs on the CPU here (use --device cpu)")
    require("onnxruntime")
    if checkpoint is not None and is_export(checkpoint):
        model = OnnxModel(checkpoint)
        return AnimationPipeline(model, model.config, "cpu")
    if checkpoint is None:
        folder = Path(tempfile.mkdtemp(prefix="marionet-onnx-"))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                export_onnx(marionet.load(config=config), folder / "model", progress=progress)
            model = OnnxModel(folder / "model")
        finally:
            shutil.rmtree(folder, ignore_errors=True)  # the sessions hold the graphs in memory
        return AnimationPipeline(model, model.config, "cpu")
    path = resolve_checkpoint(checkpoint)
    wanted = None
    if config is not None:
        wanted = load_config(config) if not isinstance(config, dict) else config
    folder = cache_dir(path, builtin=str(checkpoint) in BUILTIN_MODELS)
    if not _cache_is_current(folder, path, wanted):
        if progress:
            progress(f"exporting {path.name} to ONNX in {folder} (once)")
        export_onnx(marionet.load(checkpoint=checkpoint, config=config), folder, checkpoint=path, progress=progress)
    model = OnnxModel(folder)
    return AnimationPipeline(model, model.config, "cpu")
