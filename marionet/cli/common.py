"""Arguments and checks shared by several commands."""
from __future__ import annotations

import argparse
from pathlib import Path

OUTPUT_SUFFIXES = ("", ".mp4", ".gif")


def positive_int(text: str) -> int:
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    return _int_at_least(text, 0)


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
    return value


def add_model_arguments(p: argparse.ArgumentParser, untrained: bool = False) -> None:
    """--checkpoint | --model, --config, --device (and --allow-untrained)."""
    p.add_argument("--checkpoint", help="official *.pth.tar, a marionet .safetensors checkpoint, or a training run "
                                        "directory")
    p.add_argument("--model", help="a built-in model by name instead of --checkpoint (puppets: synthetic puppets "
                                   "and cartoons, not photos)")
    p.add_argument("--config", help="model config YAML (the official layout) or a shipped name such as vox-256; "
                                    "needed for an official checkpoint, optional for marionet checkpoints")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    if untrained:
        p.add_argument("--allow-untrained", action="store_true",
                       help="with --config and no checkpoint: run the model with random weights (for testing)")


def model_source(args) -> str | None:
    """The checkpoint the model arguments name (a built-in name or a path), or None for an untrained
    ``--config`` model, which needs --allow-untrained; MarionetError otherwise."""
    from marionet.checkpoints import builtin_checkpoint
    from marionet.errors import MarionetError

    if args.model and args.checkpoint:
        raise MarionetError("give --model or --checkpoint, not both")
    if args.model:
        builtin_checkpoint(args.model)  # an unknown name: the error lists the built-in models
    elif args.checkpoint is None and (args.config is None or not getattr(args, "allow_untrained", False)):
        raise MarionetError("give --model NAME or --checkpoint FILE (with --config for an official checkpoint), e.g. "
                            "--model faces for a photo of a face (no download); --config alone would run the "
                            "model with random weights (add --allow-untrained for that)")
    return args.model or args.checkpoint


def load_model(args):
    """The pipeline the model arguments name (``model_source``)."""
    import marionet

    source = model_source(args)
    if source is None:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return marionet.load(config=args.config, device=args.device)
    return marionet.load(checkpoint=source, config=args.config, device=args.device)


def check_output(path, suffixes=OUTPUT_SUFFIXES) -> Path:
    """A video output path: its format is known and its folder can be written, checked before any work."""
    from marionet.errors import MarionetError
    from marionet.files import check_writable

    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise MarionetError(f"{path}: unknown output format {path.suffix!r} (use .mp4, .gif or a folder)")
    check_writable(path)
    return path
