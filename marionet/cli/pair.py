"""``marionet pair``: find the videos that show the same motion and write a paired dataset (Donkey-Net)."""
from __future__ import annotations

import argparse

from marionet.cli.common import add_model_arguments

HELP = ("pair videos of different subjects in the same motion (keypoint tracks matched up to an affine map), "
        "resample each pair's second video to the first, write the pairing files")
FEATURES = ("auto", "vgg19", "colour")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset folder: train/ and test/ of videos (pairs stay within a split)")
    p.add_argument("--out", required=True, help="the paired dataset to write: <split>/<video>/ frames, "
                                                "<split>_pairing.txt, pairs.json, preview.png")
    add_model_arguments(p)
    p.add_argument("--features", default="auto", choices=FEATURES,
                   help="appearance: vgg19 (ImageNet weights, see the README), colour (RGB histograms), auto "
                        "(vgg19 when its weights are found, else colour; default)")
    p.add_argument("--uniqueness-weight", type=float, default=0.8,
                   help="score = residual - W * uniqueness (the margin to the next best candidate; default 0.8)")
    p.add_argument("--max-residual", type=float, default=0.14, help="the largest score a pair may have (default 0.14)")
    p.add_argument("--repeat-limit", type=_fraction, default=0.25,
                   help="the fraction of the first video's frames one frame of the second may stand in for "
                        "(default 0.25)")
    p.add_argument("--appearance-weight", type=float, default=0.05,
                   help="adds W * (1 - appearance similarity) to the motion residual (default 0.05)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from marionet.data.pairs import PairingParams, pair_dataset
    from marionet.errors import MarionetError
    from marionet.files import check_writable

    check_writable(args.out)
    if args.model or args.checkpoint:
        keypoints = _model_keypoints(args)
    elif args.config:
        raise MarionetError("--config needs --checkpoint (an official checkpoint's config)")
    else:
        keypoints = _ground_truth_keypoints
    params = PairingParams(uniqueness_weight=args.uniqueness_weight, max_residual=args.max_residual,
                           repeat_limit=args.repeat_limit, appearance_weight=args.appearance_weight)
    report = pair_dataset(args.data, args.out, keypoints, _describer(args.features), params, overwrite=args.overwrite,
                          progress=not args.quiet)
    for split, entry in report["splits"].items():
        line = f"{split}: {len(entry['videos'])} videos, {len(entry['pairs'])} pairs"
        if "accuracy" in entry:
            acc = entry["accuracy"]
            line += (f"; against {args.data}/pairs.csv: precision {acc['precision']:.3f}, recall {acc['recall']:.3f} "
                     f"({acc['correct']} of {acc['true']} true pairs)")
        print(line)
    print(f"wrote {args.out}")
    return 0


def _ground_truth_keypoints(video, frames):
    from marionet.data.puppets import ground_truth_path, load_ground_truth
    from marionet.errors import MarionetError

    if not ground_truth_path(video).is_file():
        raise MarionetError(f"{video}: no puppet ground truth ({ground_truth_path(video)}); give --checkpoint or "
                            "--model for a trained keypoint detector")
    return load_ground_truth(video)["joints"]


def _model_keypoints(args):
    """A trained model's keypoint detector: each video's frames -> (T, K, 2)."""
    import numpy as np
    import torch

    from marionet.cli.common import load_model

    pipeline = load_model(args)

    @torch.no_grad()
    def keypoints(video, frames):
        values = [pipeline.model.detect(pipeline.to_tensor(frames[t:t + 16]))["value"] for t in range(0, len(frames), 16)]
        return torch.cat(values).cpu().numpy().astype(np.float64)

    return keypoints


def _describer(features: str):
    """The appearance descriptor: VGG19's relu4_1, averaged over space and 4 frames, or colour histograms."""
    from marionet.data.pairs import colour_descriptor
    from marionet.errors import MarionetError
    from marionet.losses import find_vgg19_weights

    weights = find_vgg19_weights() if features in ("auto", "vgg19") else None
    if features == "vgg19" and weights is None:
        raise MarionetError("--features vgg19: no VGG19 weights found (train_params.vgg19_weights, "
                            "MARIONET_VGG19_WEIGHTS or torch.hub's cache; see marionet train --download-vgg19)")
    if weights is None:
        return colour_descriptor
    import numpy as np
    import torch

    from marionet.data.frames import frames_to_tensor
    from marionet.losses import Vgg19

    vgg = Vgg19().eval()
    vgg.load_torchvision(weights)

    @torch.no_grad()
    def describe(frames):
        picked = frames[np.linspace(0, len(frames) - 1, min(4, len(frames))).round().astype(int)]
        feature = vgg(frames_to_tensor(picked, (128, 128), fit="pad"))[3].mean(dim=(0, 2, 3)).double().numpy()
        return feature / max(np.linalg.norm(feature), 1e-12)

    return describe
