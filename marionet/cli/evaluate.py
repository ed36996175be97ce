"""marionet evaluate: the papers' metrics between real and generated videos, with offline detectors."""
from __future__ import annotations

import argparse

HELP = "compare generated with real videos: L1, PSNR, SSIM, AKD, MKR, AED; writes a report folder"
KINDS = ("face", "body", "humanoid", "quadruped", "face-puppet")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--real", required=True, help="the real video (file or folder of frames), or a folder of them "
                                                 "(a dataset folder: its test/ split)")
    p.add_argument("--generated", required=True,
                   help="the generated video, or a folder of them matched to the real ones by name (the layout "
                        "marionet reconstruct writes)")
    p.add_argument("--out", required=True, help="report folder: metrics.json, report.md, curves.png, worst.png")
    p.add_argument("--kind", choices=KINDS,
                   help="keypoint estimator for AKD/MKR: face (dlib 68 landmarks; also AED), body (mediapipe "
                        "pose), or a puppet kind (the shipped regressors); default: pixel metrics only")
    p.add_argument("--lpips", nargs=2, metavar=("VGG16", "HEADS"),
                   help="compute LPIPS from torchvision's ImageNet vgg16 weights and the LPIPS linear heads (vgg.pth)")
    p.add_argument("--fid", metavar="INCEPTION",
                   help="compute FID from pytorch-fid's Inception weights (pt_inception-2015-12-05-*.pth)")


def run(args) -> int:
    import json

    from marionet.evaluate.real import evaluate
    from marionet.files import check_writable

    check_writable(f"{args.out}/metrics.json")
    metrics = evaluate(args.real, args.generated, args.out, kind=args.kind, lpips=args.lpips, fid=args.fid)
    print(json.dumps({k: v for k, v in metrics.items() if k != "per_frame"}, indent=2))
    return 0
