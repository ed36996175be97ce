"""marionet export: a model's keypoint detector, source encoder and per-frame generator as ONNX graphs."""
from __future__ import annotations

import argparse

from marionet.cli.common import add_model_arguments

HELP = "export a model to ONNX (keypoint detector, source encoder, per-frame generator) for onnxruntime"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p, untrained=True)
    p.add_argument("--format", choices=("onnx",), default="onnx", help="export format (default: onnx)")
    p.add_argument("--out", required=True, help="folder to write the graphs, config.yaml and export.json to "
                                                "(new, empty, or an earlier export, which is replaced)")


def run(args) -> int:
    import sys

    from marionet.checkpoints import resolve_checkpoint
    from marionet.cli.common import load_model, model_source
    from marionet.errors import MarionetError
    from marionet.export import export_onnx, require
    from marionet.files import check_writable

    if args.device != "cpu":
        raise MarionetError(f"--device {args.device}: export runs on the CPU (use --device cpu)")
    check_writable(args.out)
    require("onnx")
    require("onnxscript")
    require("onnxruntime")
    pipeline = load_model(args)
    source = model_source(args)
    checkpoint = resolve_checkpoint(source) if source else None
    manifest = export_onnx(pipeline, args.out, checkpoint=checkpoint,
                           progress=lambda step: print(f"export: {step}", file=sys.stderr))
    worst = max(manifest["max_abs_diff"].values())
    print(f"wrote {args.out}: {', '.join(manifest['graphs'])} (largest difference from PyTorch {worst:.1e})")
    return 0
