"""marionet demo: animate the bundled puppet with the bundled driving video, no arguments, no network."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "animate the bundled example (writes demo.mp4 and a side-by-side demo.gif)"

EXAMPLES = Path(__file__).resolve().parent.parent / "assets" / "examples"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out-dir", default=".", help="where to write demo.mp4 and demo.gif (default: here)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")


def run(args) -> int:
    import warnings

    import numpy as np

    import marionet
    from marionet.data.video import open_video, read_image, to_uint8, write_video
    from marionet.checkpoints import BUILTIN_MODELS

    out_dir = Path(args.out_dir)
    source = read_image(EXAMPLES / "source.png")
    with open_video(EXAMPLES / "driving.mp4") as reader:
        driving, fps = np.stack([f.astype(np.float32) / 255 for f in reader]), reader.fps
    if BUILTIN_MODELS["puppets"].is_file():
        model, trained = marionet.load("puppets", device=args.device), True
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model, trained = marionet.load(config="puppets-64", device=args.device), False
    frames = model.animate(source, driving, relative=True, adapt_scale=True)

    h, w = frames.shape[1:3]
    src = model.to_tensor(source)[0].permute(1, 2, 0).cpu().numpy()
    drv = model.to_tensor(driving).permute(0, 2, 3, 1).cpu().numpy()
    side = [np.concatenate([src, d, f], axis=1) for d, f in zip(drv, frames)]
    write_video(out_dir / "demo.mp4", (to_uint8(f) for f in frames), fps)
    write_video(out_dir / "demo.gif", (to_uint8(f) for f in side), fps)
    print(f"wrote {out_dir / 'demo.mp4'} ({len(frames)} frames, {w}x{h}) and {out_dir / 'demo.gif'} "
          "(source | driving | result)")
    if not trained:
        print("NOTE: no built-in trained model is installed yet, so this ran an UNTRAINED model (random weights): "
              "the result shows the pipeline working end to end, not a meaningful animation.")
    return 0
