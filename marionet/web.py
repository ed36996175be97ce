"""``marionet serve``: a browser page to animate a picture (gradio), offline and on localhost by default.

Upload a source image and a driving video, or pick a bundled example; choose a model (the built-in
ones, and each checkpoint in ``--models DIR``), relative or absolute motion, the crop and the best
starting frame; the result comes back as a video with the driving audio, and side by side with the
source and the driving video. Uploads over ``max_upload_mb`` and driving videos longer than
``max_seconds`` are refused with a message. Requests are queued and run one at a time. Every job
works in its own folder, removed when the job fails or is cancelled; results live in a temporary
folder removed when the server stops. Nothing is downloaded: gradio's analytics and the Hugging
Face hub are switched off before gradio is imported.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from marionet.checkpoints import BUILTIN_MODELS
from marionet.errors import MarionetError

EXAMPLES = Path(__file__).resolve().parent / "assets" / "examples"
CHECKPOINT_SUFFIXES = (".safetensors", ".tar", ".pth", ".pt")


def offline_gradio():
    """gradio, imported with every phone-home switched off."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["HF_HUB_OFFLINE"] = "1"
    from marionet.errors import require

    return require("gradio", "web")


def model_choices(models_dir=None) -> dict[str, dict]:
    """Display name -> marionet.load arguments: the built-in models, then each checkpoint of ``models_dir``
    (a marionet .safetensors or run folder, or an official file with a same-named .yaml beside it)."""
    choices = {f"{name} (built-in)": {"checkpoint": name} for name in _animating_builtins()}
    if models_dir is not None:
        folder = Path(models_dir)
        if not folder.is_dir():
            raise MarionetError(f"{folder}: --models must be a folder of checkpoints")
        for path in sorted(folder.iterdir()):
            config = path.with_suffix(".yaml") if path.suffix != ".tar" else Path(str(path)[: -len(".pth.tar")] + ".yaml")
            if path.is_dir() and (path / "model.safetensors").is_file():
                choices[path.name] = {"checkpoint": str(path)}
            elif path.suffix in CHECKPOINT_SUFFIXES:
                choices[path.name] = {"checkpoint": str(path), **({"config": str(config)} if config.is_file() else {})}
    if not choices:
        raise MarionetError("no model to serve: no built-in model is installed and --models names none")
    return choices


def _animating_builtins() -> list[str]:
    """The installed built-in models that animate from a driving video (not those driven by joints),
    the weightless ``faces`` first: it suits the photo a visitor tries first."""
    import json

    from safetensors import safe_open

    from marionet.models import family_class

    names = []
    for name, path in BUILTIN_MODELS.items():
        if not path.is_file():
            continue
        with safe_open(str(path), framework="pt") as f:
            config = json.loads((f.metadata() or {})["config"])
        if not family_class(config, str(path)).driven_by_joints:
            names.append(name)
    return sorted(names, key=lambda name: name != "faces")


def examples() -> dict[str, tuple[Path, Path]]:
    """Bundled (source, driving) pairs: the puppet example, and a photo and a phone clip when the sample
    media packages are installed."""
    from marionet.data.samples import sample_path

    out = {"puppet": (EXAMPLES / "source.png", EXAMPLES / "driving.mp4")}
    try:
        out["astronaut + carphone"] = (sample_path("astronaut"), sample_path("carphone"))
    except MarionetError:
        pass
    return out


class Animator:
    """The page's work: loads each model once, animates one job in its own folder."""

    def __init__(self, models: dict[str, dict], work: Path, max_upload_mb: float, max_seconds: float,
                 device: str = "cpu"):
        self.models, self.work = models, work
        self.max_upload_mb, self.max_seconds, self.device = max_upload_mb, max_seconds, device
        self._loaded: dict[str, object] = {}

    def model(self, name: str):
        if name not in self._loaded:
            import marionet
            self._loaded[name] = marionet.load(device=self.device, **self.models[name])
        return self._loaded[name]

    def check(self, source, driving) -> None:
        from marionet.data.video import open_video

        for label, path in (("source image", source), ("driving video", driving)):
            if not path:
                raise MarionetError(f"no {label}: upload one or pick an example")
            size = Path(path).stat().st_size / 2 ** 20
            if size > self.max_upload_mb:
                raise MarionetError(f"the {label} is {size:.1f} MB; the limit is {self.max_upload_mb:g} MB")
        with open_video(driving) as reader:
            if reader.frame_count and reader.frame_count / reader.fps > self.max_seconds:
                raise MarionetError(f"the driving video lasts {reader.frame_count / reader.fps:.1f} s; the limit is "
                                    f"{self.max_seconds:g} s")

    def __call__(self, source, driving, model_name, motion, crop, best, progress=lambda *a, **k: None):
        """-> (result video, side-by-side video) paths in a fresh job folder (removed on failure)."""
        from marionet.crop import animate_in_place, default_crop
        from marionet.data.video import VideoWriter, open_video, read_image

        self.check(source, driving)
        job = Path(tempfile.mkdtemp(prefix="job-", dir=self.work))
        try:
            model = self.model(model_name)
            image = read_image(source)
            crop = default_crop(model.config) if crop == "auto" else crop
            with open_video(driving) as reader:
                fps, count = reader.fps, reader.frame_count or 0
                audio = reader.path if reader.has_audio else None
            # an uploaded picture was not filmed by the driving video's camera: its background stays still
            frames = animate_in_place(model, image, lambda: open_video(driving), crop=crop, best=best,
                                      relative=motion == "relative", still_background=True)
            result, side = job / "result.mp4", job / "side-by-side.mp4"
            with VideoWriter(result, fps, audio_from=audio) as out, VideoWriter(side, fps) as pair, \
                    open_video(driving) as shown:
                for i, (frame, real) in enumerate(zip(frames, shown)):
                    out.write(frame)
                    h = frame.shape[0] - frame.shape[0] % 2                # source | driving | result
                    if i == 0:
                        source_tile = _tile(image, h)                         # the same for every frame
                    pair.write(np.concatenate([source_tile, _tile(real, h), _tile(frame, h)], axis=1))
                    progress((i + 1) / max(count, i + 1), desc="animating")
            return str(result), str(side)
        except BaseException:
            shutil.rmtree(job, ignore_errors=True)
            raise


def _tile(image, h: int) -> np.ndarray:
    """``image`` resized to height ``h`` (even), its aspect ratio kept to an even width (uint8)."""
    from marionet.data.frames import frames_to_tensor, resize_frames, tensor_to_frames
    from marionet.data.video import to_uint8

    x = frames_to_tensor(image)
    width = max(2, round(x.shape[3] * h / x.shape[2] / 2) * 2)
    return to_uint8(tensor_to_frames(resize_frames(x, (h, width)))[0])


def build_page(animator: Animator):
    gr = offline_gradio()
    samples = examples()
    with gr.Blocks(title="marionet", analytics_enabled=False) as page:
        gr.Markdown("# marionet\nAnimate a picture with the motion of a video. Everything runs on this machine.")
        with gr.Row():
            source = gr.Image(type="filepath", label="Source image", sources=["upload"], height=320)
            driving = gr.Video(label="Driving video", sources=["upload"], height=320)
        with gr.Row():
            example = gr.Dropdown(["(none)", *samples], value="(none)", label="Or a bundled example")
            model = gr.Dropdown(list(animator.models), value=next(iter(animator.models)), label="Model")
            motion = gr.Radio(["relative", "absolute"], value="relative", label="Motion")
            crop = gr.Dropdown(["auto", "face", "body", "none"], value="auto", label="Crop and paste back")
            best = gr.Checkbox(label="Start from the best-matching frame")
        run = gr.Button("Animate", variant="primary")
        with gr.Row():
            result = gr.Video(label="Result", interactive=False, height=320)
            side = gr.Video(label="Source | driving | result", interactive=False, height=320)

        def pick(name):
            if name in samples:
                return str(samples[name][0]), str(samples[name][1])
            return None, None

        def animate(source_path, driving_path, model_name, motion_name, crop_name, best_frame,
                    progress=gr.Progress()):
            try:
                return animator(source_path, driving_path, model_name, motion_name, crop_name, best_frame,
                                progress)
            except MarionetError as e:
                raise gr.Error(str(e)) from None

        example.change(pick, example, [source, driving])
        run.click(animate, [source, driving, model, motion, crop, best], [result, side], concurrency_limit=1)
    return page.queue(default_concurrency_limit=1)


def serve(host: str = "127.0.0.1", port: int = 7860, models_dir=None, max_upload_mb: float = 50,
          max_seconds: float = 60, device: str = "cpu", block: bool = True):
    """Start the page; with ``block=False`` return (page, stop) for tests."""
    work = Path(tempfile.mkdtemp(prefix="marionet-serve-"))
    os.environ["GRADIO_TEMP_DIR"] = str(work / "gradio")
    animator = Animator(model_choices(models_dir), work, max_upload_mb, max_seconds, device)
    page = build_page(animator)

    def stop():
        page.close()
        shutil.rmtree(work, ignore_errors=True)

    try:
        page.launch(server_name=host, server_port=port, max_file_size=f"{max_upload_mb}mb", quiet=True,
                    prevent_thread_lock=not block, show_error=True)
    except BaseException:
        stop()
        raise
    if block:
        stop()
        return None
    return page, stop
