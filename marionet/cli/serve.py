"""marionet serve: a browser page to animate pictures (gradio), offline, on localhost by default."""
from __future__ import annotations

import argparse

from marionet.cli.common import positive_int

HELP = "start a browser page to animate pictures (upload or pick an example; needs marionet[web])"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=positive_int, default=7860, help="port (default 7860)")
    p.add_argument("--models", metavar="DIR",
                   help="a folder of checkpoints to offer beside the built-in models (marionet .safetensors or run "
                        "folders; an official *.pth.tar with its config as NAME.yaml beside it)")
    p.add_argument("--max-upload-mb", type=float, default=50, help="largest upload accepted, in MB (default 50)")
    p.add_argument("--max-seconds", type=float, default=60,
                   help="longest driving video accepted, in seconds (default 60)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")


def run(args) -> int:
    from marionet.errors import MarionetError
    from marionet.web import serve

    if args.max_upload_mb <= 0 or args.max_seconds <= 0:
        raise MarionetError("--max-upload-mb and --max-seconds must be positive")
    print(f"serving on http://{args.host}:{args.port} (Ctrl-C to stop)")
    serve(args.host, args.port, args.models, args.max_upload_mb, args.max_seconds, args.device)
    return 0
