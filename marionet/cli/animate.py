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
    p.add_argument("--still-background", action="store_true",
                   help="keep the source's background still instead of moving it with the driving video's camera "
                        "(only models that estimate camera motion, such as the built-in puppets, move it)")
    p.add_argument("--fit", choices=FITS, default="crop",
                   help="how a non-square source or driving frame meets the model's square frame: centre crop "
                        "(default), pad with its edges, or stretch")
    p.add_argument("--crop", choices=("face", "body", "none"),
                   help="animate only the face or body found in the source and paste it back into the full picture "
                        "(the output has the source's size); default: face for face models such as vox, body for "
                        "taichi/fashion, none otherwise (puppets)")
    p.add_argument("--driving-crop", choices=("fixed", "track"), default="fixed",
                   help="with --crop: one square covering the subject's motion over the clip (default), or a "
                        "smoothed square per frame")
    p.add_argument("--best-frame", action="store_true",
                   help="start from the driving frame whose face pose is closest to the source's, animating "
                        "forward and backward from it (relative motion is measured from that frame)")
    p.add_argument("--batch-size", type=positive_int, default=4, help="driving frames per forward pass (default: 4)")
    p.add_argument("--precision", choices=("fp32", "bf16", "int8"), default="fp32",
                   help="arithmetic of the convolutions: fp32 (default), bf16 or int8 where the CPU has it "
                        "(AVX512-BF16/AMX, VNNI; otherwise fp32, with a note); keypoint geometry stays fp32")
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                   help="run the model in PyTorch (default) or onnxruntime (the 'export' extra): --checkpoint is "
                        "then a folder from `marionet export`, or a checkpoint exported once into a cache beside it")


def run(args) -> int:
    import sys

    from tqdm import tqdm

    from marionet.crop import animate_in_place, default_crop
    from marionet.data.video import VideoWriter, open_video, read_image

    output = check_output(args.output)
    source = read_image(args.source)
    with open_video(args.driving) as reader:
        audio = reader.path if reader.has_audio and output.suffix.lower() == ".mp4" else None
        fps, count = reader.fps, reader.frame_count
    with VideoWriter(output, fps=fps, audio_from=audio) as writer:
        model = load_backend(args)
        crop = args.crop or default_crop(model.config)
        if args.model == "puppets" and source.shape[:2] != model.frame_shape:
            print("note: the built-in 'puppets' model is trained on synthetic 64x64 puppets; it suits puppets "
                  "and simple cartoons, not photos (for a face photo try --model faces, or an official checkpoint)",
                  file=sys.stderr)

        def driving():
            return open_video(args.driving)

        frames = animate_in_place(model, source, driving, crop=crop, driving_crop=args.driving_crop,
                                  best=args.best_frame, relative=not args.absolute,
                                  adapt_scale=not args.no_adapt_scale, batch_size=args.batch_size, fit=args.fit,
                                  names=(args.source, args.driving), still_background=args.still_background)
        for frame in tqdm(frames, total=count, unit="frame", disable=None, desc="animate"):
            writer.write(frame)
    print(f"wrote {output}" + (f" ({crop} cropped and pasted back at {source.shape[1]}x{source.shape[0]})"
                               if crop != "none" else ""))
    return 0


def load_backend(args):
    """The pipeline of the model arguments on --backend, its convolutions at --precision."""
    import sys

    from marionet.cli.common import load_model, model_source
    from marionet.errors import MarionetError

    if args.backend == "onnxruntime":
        from marionet.export import onnx_pipeline

        if args.precision != "fp32":
            raise MarionetError(f"--precision {args.precision}: only with --backend torch (onnxruntime runs the "
                                "exported float32 graphs)")
        return onnx_pipeline(model_source(args), args.config, args.device,
                             progress=lambda step: print(f"onnxruntime: {step}", file=sys.stderr))
    pipeline = load_model(args).optimized(args.precision, inplace=True)
    if pipeline.precision != args.precision:
        from marionet.inference import unavailable

        print(f"note: --precision {args.precision}: {unavailable(args.precision)}; running fp32", file=sys.stderr)
    return pipeline
