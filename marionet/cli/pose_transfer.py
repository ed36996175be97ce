"""marionet pose-transfer: render the person of a source image in target poses (a posewarp model)."""
from __future__ import annotations

import argparse

from marionet.cli.common import OUTPUT_SUFFIXES, add_model_arguments, positive_int

HELP = "render the person of a source image in the poses of a joints file, an image or a video (posewarp)"
IMAGE_OUTPUTS = (".png", ".jpg", ".jpeg")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--source", required=True, help="source image of one person (png, jpg, ...; any size)")
    p.add_argument("--target", required=True,
                   help="target pose: a joints file (.json: {\"joints\": [[x, y] or null, ...]}, 14 MPII joints in "
                        "pixels of the source image from its top-left corner), an image, or a video (mp4, gif, a "
                        "folder of frames: one output frame per frame); joints of images and videos are detected "
                        "(mediapipe) and brought to the source person's size")
    p.add_argument("--output", required=True,
                   help="result: .png/.jpg for one target pose; .mp4 (the target video's fps and audio), .gif, or a "
                        "folder of PNG frames")
    p.add_argument("--source-joints", help="the source's joints file (same format); default: detected (mediapipe)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="target poses per forward pass (default: 8)")


def run(args) -> int:
    from pathlib import Path

    import numpy as np
    from tqdm import tqdm

    from marionet.cli.common import check_output, load_model
    from marionet.data import poses
    from marionet.data.video import VIDEO_EXTENSIONS, VideoWriter, open_video, read_image, to_uint8
    from marionet.errors import MarionetError
    from marionet.files import atomic_write

    target = Path(args.target)
    if not target.exists():
        raise MarionetError(f"{target}: no such file")
    single = target.suffix.lower() == ".json" or (target.is_file() and target.suffix.lower() not in VIDEO_EXTENSIONS)
    output = check_output(args.output, OUTPUT_SUFFIXES + (IMAGE_OUTPUTS if single else ()))
    source = read_image(args.source)
    model = load_model(args)
    family = model.model
    if not family.driven_by_joints:
        raise MarionetError(f"{args.model or args.checkpoint}: a {family.family} model; pose-transfer needs a posewarp "
                            "model (marionet animate drives the others)")
    joint_set = family.pose.joint_set
    detector = None

    def detect(image, where: str, video: bool = False) -> np.ndarray:
        nonlocal detector
        from marionet.landmarks import PoseLandmarks

        if detector is None or video != detector[1]:
            detector = (PoseLandmarks(video=video), video)
        found = detector[0](image)
        if found is None:
            raise MarionetError(f"{where}: no person found")
        return poses.mediapipe_joints(found[0])

    joints_source = (poses.read_joints_file(args.source_joints, joint_set) if args.source_joints
                     else detect(source, args.source))
    poses.check_joints(joints_source, joint_set, args.source_joints or args.source)

    def render(joints: np.ndarray) -> np.ndarray:
        return family.transfer(source, joints_source, joints, batch_size=args.batch_size)

    if target.suffix.lower() == ".json":
        frames, fps, audio = render(poses.read_joints_file(target, joint_set)[None]), 25.0, None
    elif single:
        joints = detect(read_image(target), str(target))
        frames, fps, audio = render(poses.retarget(joints[None], joints, joints_source, joint_set)), 25.0, None
    else:
        frames = None
    if frames is not None and output.suffix.lower() in IMAGE_OUTPUTS:
        from PIL import Image

        image = Image.fromarray(to_uint8(frames[0]))
        atomic_write(output, lambda tmp: image.save(tmp, format="JPEG" if output.suffix.lower() != ".png" else "PNG"))
    elif frames is not None:
        with VideoWriter(output, fps=fps, audio_from=audio) as writer:
            writer.write(frames[0])
    else:
        with open_video(target) as reader:
            audio = reader.path if reader.has_audio and output.suffix.lower() == ".mp4" else None
            with VideoWriter(output, fps=reader.fps, audio_from=audio) as writer:
                reference, batch = None, []
                for k, frame in enumerate(tqdm(reader, total=reader.frame_count, unit="frame", disable=None,
                                               desc="pose-transfer")):
                    joints = detect(frame, f"{target} frame {k}", video=True)
                    reference = joints if reference is None else reference   # the first frame's person
                    batch.append(poses.retarget(joints[None], reference, joints_source, joint_set)[0])
                    if len(batch) == args.batch_size:
                        for out in render(np.stack(batch)):
                            writer.write(out)
                        batch = []
                if batch:
                    for out in render(np.stack(batch)):
                        writer.write(out)
    print(f"wrote {output}")
    return 0
