"""marionet predict: image-to-video from a run and its trained keypoint-trajectory predictor."""
from __future__ import annotations

import argparse

from marionet.cli.common import positive_int
import sys

HELP = "make a video from one image: predicted keypoint motion rendered by the model (image-to-video)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True,
                   help="run folder (model.safetensors + predictor.safetensors) or a checkpoint file whose keypoints carry "
                        "covariances")
    p.add_argument("--config", help="config YAML, only for an official *.pth.tar checkpoint")
    p.add_argument("--predictor", help="keypoint predictor (default: predictor.safetensors next to the checkpoint)")
    p.add_argument("--source", required=True, help="source image (png, jpg, ...; any size)")
    p.add_argument("--frames", type=positive_int, required=True, help="frames to generate, the source's included")
    p.add_argument("--output", required=True, help="result: .mp4 (H.264), .gif, or a folder for PNG frames")
    p.add_argument("--fps", type=float, default=25.0, help="frame rate of the output (default: 25)")
    p.add_argument("--fixed-covariance", action="store_true",
                   help="keep the source keypoints' covariances in every frame (default: predicted ones, unless "
                        "the config's prediction_params.predict_variance says otherwise)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="frames per generator pass (default: 8)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")


def run(args) -> int:
    from pathlib import Path

    import marionet
    from marionet.cli.common import check_output
    from marionet.data.video import VideoWriter, read_image
    from marionet.predict import (PREDICTOR_FILE, load_predictor, mean_displacement, predict_keypoints,
                                  prediction_defaults, render_frames, require_covariances, resolve_run)

    output = check_output(args.output)
    model_path, run_dir = resolve_run(args.checkpoint)
    predictor_path = Path(args.predictor) if args.predictor else run_dir / PREDICTOR_FILE
    predictor, info = load_predictor(predictor_path)  # before the model: a missing predictor fails fast
    pipe = marionet.load(checkpoint=model_path, config=args.config, device=args.device)
    require_covariances(pipe, model_path)
    predictor.to(pipe.device)
    source = read_image(args.source)
    window = info.get("num_frames")
    if window and args.frames > window:
        print(f"note: --frames {args.frames} is longer than the {window}-frame windows the predictor was trained "
              "on; later frames extrapolate", file=sys.stderr)
    covariance = not args.fixed_covariance and prediction_defaults(pipe.config)["predict_covariance"]
    keypoints = predict_keypoints(pipe, predictor, source, args.frames, predict_covariance=covariance)
    with VideoWriter(output, fps=args.fps) as writer:
        for frame in render_frames(pipe, source, keypoints, batch_size=args.batch_size):
            writer.write(frame)
    h, w = pipe.frame_shape
    normalised, pixels = mean_displacement(keypoints["value"].cpu(), (h, w))
    print(f"wrote {output} ({args.frames} frames at {w}x{h})")
    print(f"mean keypoint displacement: {normalised:.4f} (keypoint units, [-1, 1] across the frame) = "
          f"{pixels:.2f} px; mean over frames 1..{args.frames - 1} and {keypoints['value'].shape[1]} keypoints "
          "of |kp_t - kp_0|")
    return 0
