"""The ``marionet`` command: one sub-command per module in this package.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
Modules import heavy dependencies (torch, av) inside ``run`` so that ``marionet --help`` stays fast.

Exit status: 0 on success; 2 with one line on stderr for bad input or arguments; 130 when interrupted
(Ctrl-C or SIGTERM, after outputs in progress are discarded, or a training run is checkpointed).
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

from marionet import __version__
from marionet.errors import Interrupted, MarionetError

# name -> module; the order is the order of ``marionet --help``.
COMMANDS = {
    "animate": "marionet.cli.animate",
    "demo": "marionet.cli.demo",
    "serve": "marionet.cli.serve",
    "train": "marionet.cli.train",
    "reconstruct": "marionet.cli.reconstruct",
    "evaluate": "marionet.cli.evaluate",
    "synth": "marionet.cli.synth",
    "pair": "marionet.cli.pair",
    "train-predictor": "marionet.cli.train_predictor",
    "predict": "marionet.cli.predict",
    "pose-transfer": "marionet.cli.pose_transfer",
    "joints": "marionet.cli.joints",
    "vgg-stats": "marionet.cli.vgg_stats",
    "export": "marionet.cli.export",
}


class _Parser(argparse.ArgumentParser):
    """Argument errors on one line, as every other error (argparse adds a usage block)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="marionet", description="Animate a still image with the motion of a driving video.")
    parser.add_argument("--version", action="version", version=f"marionet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _terminate(signum, frame):
    # SIGTERM unwinds like Ctrl-C, so outputs being written are discarded by their own clean-up.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()  # only there can signals be caught
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        return int(args._run(args) or 0)
    except MarionetError as e:
        print(f"marionet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"marionet {args.command}: interrupted: {e}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"marionet {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
