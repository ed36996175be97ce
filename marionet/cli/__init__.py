"""The ``marionet`` command: one sub-command per module in this package.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
Modules import heavy dependencies (torch, av) inside ``run`` so that ``marionet --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from marionet.errors import MarionetError

# name -> module; the order is the order of ``marionet --help``.
COMMANDS = {
    "animate": "marionet.cli.animate",
    "demo": "marionet.cli.demo",
    "train": "marionet.cli.train",
    "reconstruct": "marionet.cli.reconstruct",
    "synth": "marionet.cli.synth",
    "train-predictor": "marionet.cli.train_predictor",
    "predict": "marionet.cli.predict",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="marionet", description="Animate a still image with the motion of a driving video.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except MarionetError as e:
        print(f"marionet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"marionet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
