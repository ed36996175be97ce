"""marionet animate: animate a source image with the motion of a driving video."""
from __future__ import annotations

import argparse

from marionet.cli.common import add_model_arguments, check_output, positive_int

HELP = "animate a source image with the motion of a driving video"
FITS = ("crop", "pad", "stretch")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p, untrained=True)
    p.add_argument("--source", required=True, help="source image (png, jpg, ...; any size)")
    p.add_argument("--driving", required=True,
                   help="driving video (mp4, avi, mov, webm, mkv, gif) or a folder of frames")
    p.add_argument("--output", required=True,
                   help="result: .mp4 (H.264, driving fps and audio), .gif, or a folder for PNG frames")
    p.add_argument("--absolute", action="store_true",
                   help="use the driving keypoints as they are (default: relative motion from the first frame)")
    p.add_argument("--no-adapt-scale", action="store_true",
                   help="in relative mode, do not rescale the motion by the keypoint clouds' size ratio")
    p.add_argument("--fit", choices=FITS, default="crop",
                   help="how a non-square source or driving frame meets the model's square frame: centre crop "
                        "(default), pad with its edges, or stretch")
    p.add_argument("--batch-size", type=positive_int, default=4, help="driving frames per forward pass (default: 4)")


def run(args) -> int:
    import sys

    from tqdm import tqdm

    from marionet.cli.common import load_model
    from marionet.data.video import VideoWriter, open_video, read_image

    output = check_output(args.output)
    source = read_image(args.source)
    with open_video(args.driving) as reader:
        audio = reader.path if reader.has_audio and output.suffix.lower() == ".mp4" else None
        with VideoWriter(output, fps=reader.fps, audio_from=audio) as writer:
            model = load_model(args)
            if args.model == "puppets" and source.shape[:2] != model.frame_shape:
                print("note: the built-in 'puppets' model is trained on synthetic 64x64 puppets; it suits puppets "
                      "and simple cartoons, not photos (for faces use an official checkpoint, see the README)",
                      file=sys.stderr)
            frames = tqdm(reader, total=reader.frame_count, unit="frame", disable=None, desc="animate")
            for frame in model.animate_stream(source, frames, relative=not args.absolute,
                                              adapt_scale=not args.no_adapt_scale, batch_size=args.batch_size,
                                              fit=args.fit):
                writer.write(frame)
    print(f"wrote {output}")
    return 0
