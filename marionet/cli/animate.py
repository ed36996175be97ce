"""marionet animate: animate a source image with the motion of a driving video."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "animate a source image with the motion of a driving video"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="model config YAML (the official layout) or a shipped name "
                                    "such as vox-256; optional for marionet checkpoints, which carry theirs")
    p.add_argument("--checkpoint", help="official *.pth.tar, a marionet .safetensors checkpoint, or a training run "
                                        "directory")
    p.add_argument("--model", help="a built-in model by name, instead of --checkpoint (puppets)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--source", required=True, help="source image (png, jpg, ...; any size)")
    p.add_argument("--driving", required=True,
                   help="driving video (mp4, avi, mov, webm, mkv, gif) or a folder of frames")
    p.add_argument("--output", required=True,
                   help="result: .mp4 (H.264, driving fps and audio), .gif, or a folder for PNG frames")
    p.add_argument("--absolute", action="store_true",
                   help="use the driving keypoints as they are (default: relative motion from the first frame)")
    p.add_argument("--no-adapt-scale", action="store_true",
                   help="in relative mode, do not rescale the motion by the keypoint clouds' size ratio")
    p.add_argument("--batch-size", type=int, default=4, help="driving frames per forward pass (default: 4)")


def run(args) -> int:
    from tqdm import tqdm

    import marionet
    from marionet.data.video import VideoWriter, open_video, read_image
    from marionet.errors import MarionetError

    if args.batch_size < 1:
        raise MarionetError(f"--batch-size {args.batch_size}: must be at least 1")
    if args.model and args.checkpoint:
        raise MarionetError("give --model or --checkpoint, not both")
    if args.checkpoint is None and args.config is None and args.model is None:
        raise MarionetError("give --model, or --checkpoint (and --config for an official checkpoint)")
    output = Path(args.output)
    if output.suffix.lower() not in ("", ".mp4", ".gif"):
        raise MarionetError(f"{output}: unknown output format {output.suffix!r} (use .mp4, .gif or a folder)")
    model = marionet.load(checkpoint=args.model or args.checkpoint, config=args.config, device=args.device)
    source = read_image(args.source)
    with open_video(args.driving) as reader:
        audio = reader.path if reader.has_audio and output.suffix.lower() == ".mp4" else None
        frames = (frame for frame in tqdm(reader, total=reader.frame_count, unit="frame", disable=None,
                                          desc="animate"))
        with VideoWriter(output, fps=reader.fps, audio_from=audio) as writer:
            for frame in model.animate_stream(source, frames, relative=not args.absolute,
                                              adapt_scale=not args.no_adapt_scale, batch_size=args.batch_size):
                writer.write(frame)
    print(f"wrote {output}")
    return 0
