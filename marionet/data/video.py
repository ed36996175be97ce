"""Reading and writing images, videos and folders of frames.

Frames are HxWx3 RGB numpy arrays: readers yield uint8; writers take uint8 or float in [0, 1].
Videos go through PyAV (FFmpeg); still images and GIFs through Pillow.
"""

from __future__ import annotations

import re
import struct
import warnings
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import ColorPrimaries, ColorRange, Colorspace, ColorTrc, Interpolation
from PIL import Image, ImageOps

from marionet.errors import MarionetError
from marionet.files import Staged

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".webm", ".mkv", ".gif", ".m4v"})

DEFAULT_FPS = 25.0

# Pillow reports a bad file through many exception types, not only OSError.
_PIL_ERRORS = (
    OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error, Image.DecompressionBombError,
)
_AV_ERRORS = (av.FFmpegError, OSError)

# swscale's default fast path upsamples chroma crudely; these flags cut the RGB error about 5x.
_YUV_TO_RGB = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
_RGB_TO_YUV = Interpolation.BILINEAR | Interpolation.ACCURATE_RND

_X264_OPTIONS = {"crf": "18", "preset": "medium"}
_GIF_PALETTE_SAMPLE = 8192  # pixels used to build each frame's palette (quantizing a full frame is slow)
_FRAME_NAME = re.compile(r"[0-9]+\.png")


# ---------------------------------------------------------------------------------------------- images


def _reason(e: Exception) -> str:
    """The short cause of an I/O error (FFmpeg's str() also carries an errno and the C function)."""
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def to_uint8(frame) -> np.ndarray:
    """Float [0, 1] HxWx3 -> uint8 (rounded, clipped); uint8 passes through unchanged."""
    frame = np.asarray(frame)
    if frame.dtype == np.uint8:
        return frame
    if not np.issubdtype(frame.dtype, np.floating):
        raise TypeError(f"expected a uint8 or float frame, got dtype {frame.dtype}")
    scaled = np.nan_to_num(frame.astype(np.float32) * 255.0, copy=False)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _pil_to_float(im: Image.Image) -> np.ndarray:
    """Any Pillow image -> HxWx3 float32 RGB in [0, 1], transparency composited over white."""
    if im.mode.startswith("I"):
        # 16-bit grayscale PNGs arrive as "I;16" or "I" (Pillow has no 16-bit RGB mode, so 16-bit
        # colour PNGs arrive already reduced to 8-bit RGB/RGBA).
        gray = np.clip(np.asarray(im, dtype=np.float32) / 65535.0, 0.0, 1.0)
        return np.repeat(gray[..., None], 3, axis=2)
    if im.has_transparency_data:
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[..., 3:]
        return rgba[..., :3] * alpha + (1.0 - alpha)
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def _load_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            try:
                upright = ImageOps.exif_transpose(im)
            except _PIL_ERRORS:
                upright = im  # a damaged EXIF block should not make the pixels unreadable
            return _pil_to_float(upright)
    except Image.UnidentifiedImageError as e:
        raise MarionetError(f"{path}: not a readable image") from e
    except _PIL_ERRORS as e:
        raise MarionetError(f"{path}: not a readable image ({_reason(e)})") from e


def read_image(path) -> np.ndarray:
    """HxWx3 float32 RGB in [0, 1].

    Grayscale becomes 3 channels; RGBA / LA / palette-with-transparency is composited over white;
    16-bit PNG is handled; the EXIF orientation is applied. MarionetError if missing or unreadable.
    """
    path = Path(path)
    if not path.exists():
        raise MarionetError(f"{path}: no such file")
    if path.is_dir():
        raise MarionetError(f"{path}: is a folder, not an image")
    return _load_image(path)


# ---------------------------------------------------------------------------------------------- reading


def _natural_key(path: Path):
    # Split into text and digit runs so "frame2" sorts before "frame10"; odd positions are numbers.
    parts = re.split(r"([0-9]+)", path.name.lower())
    return [int(p) if i % 2 else p for i, p in enumerate(parts)], path.name


def _image_files(folder: Path) -> list[Path]:
    files = [
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    ]
    return sorted(files, key=_natural_key)


class VideoReader:
    """Streams RGB frames (HxWx3 uint8) from a video file, a GIF or a folder of image frames.

    Use as an iterator (single pass) and as a context manager. Attributes: path, fps, width, height,
    frame_count (None when the container does not say) and has_audio. Opening decodes the first
    frame, so an unreadable or empty input fails here rather than midway through processing.
    A folder's fps is DEFAULT_FPS; a GIF is resampled to a constant rate (its shortest frame delay).
    """

    def __init__(self, path):
        self.path = Path(path)
        self.fps = DEFAULT_FPS
        self.frame_count: int | None = None
        self.has_audio = False
        self._index = 0
        if not self.path.exists():
            raise MarionetError(f"{self.path}: no such file")
        suffix = self.path.suffix.lower()
        if self.path.is_dir():
            self._frames, self._errors = self._folder_frames(), _PIL_ERRORS
        elif suffix == ".gif":
            self._frames, self._errors = self._gif_frames(), _PIL_ERRORS
        elif suffix in VIDEO_EXTENSIONS:
            self._frames, self._errors = self._av_frames(), _AV_ERRORS
        else:
            known = ", ".join(sorted(VIDEO_EXTENSIONS))
            raise MarionetError(f"{self.path}: unknown video format '{suffix}' (expected a folder or {known})")

        try:
            self._pending: np.ndarray | None = next(self._frames)
        except (StopIteration, EOFError):  # some demuxers report an empty stream as end-of-file
            raise MarionetError(f"{self.path}: the video has no frames") from None
        except self._errors as e:
            raise MarionetError(f"{self.path}: not a readable video ({_reason(e)})") from e
        self.height, self.width = self._pending.shape[:2]

    def _av_frames(self) -> Iterator[np.ndarray]:
        container = av.open(str(self.path), metadata_errors="ignore")
        try:
            if not container.streams.video:
                raise MarionetError(f"{self.path}: the file has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = stream.average_rate or stream.guessed_rate
            self.fps = float(rate) if rate else DEFAULT_FPS
            self.frame_count = stream.frames or None
            self.has_audio = bool(container.streams.audio)
            for frame in container.decode(stream):
                rgb = frame.to_ndarray(format="rgb24", interpolation=_YUV_TO_RGB)
                # Phones store portrait video as landscape frames plus a display rotation.
                quarter_turns = round(frame.rotation / 90) % 4
                if quarter_turns:
                    rgb = np.ascontiguousarray(np.rot90(rgb, quarter_turns))
                yield rgb
        finally:
            container.close()

    def _gif_frames(self) -> Iterator[np.ndarray]:
        # GIF frames have their own delays (encoders merge repeated frames into one longer frame), so
        # resample to a constant rate: one output frame every `step` ms, the shortest delay in the file.
        with Image.open(self.path) as im:
            delays = []
            for i in range(getattr(im, "n_frames", 1)):
                im.seek(i)
                delay = im.info.get("duration") or 0
                delays.append(delay if delay > 10 else 100)  # browsers show delays of 0-10 ms as 100 ms
            step = min(delays)
            ends = np.cumsum(delays)
            # Frame i covers [ends[i] - delays[i], ends[i]); it is shown at every multiple of `step` in there.
            repeats = np.diff(np.ceil(ends / step).astype(int), prepend=0)
            self.fps = 1000.0 / step
            self.frame_count = int(repeats.sum())
            for i, count in enumerate(repeats):
                im.seek(i)  # Pillow applies the palette and disposal; later frames come out RGB(A)
                frame = to_uint8(_pil_to_float(im))
                for k in range(count):
                    yield frame if k == 0 else frame.copy()

    def _folder_frames(self) -> Iterator[np.ndarray]:
        files = _image_files(self.path)
        if not files:
            raise MarionetError(f"{self.path}: no image frames in the folder")
        self.frame_count = len(files)
        first_shape = None
        for file in files:
            frame = to_uint8(_load_image(file))
            first_shape = first_shape or frame.shape
            if frame.shape != first_shape:
                raise MarionetError(
                    f"{file}: frame is {frame.shape[1]}x{frame.shape[0]} but the first frame is "
                    f"{first_shape[1]}x{first_shape[0]}"
                )
            yield frame

    def __iter__(self) -> VideoReader:
        return self

    def __next__(self) -> np.ndarray:
        if self._pending is not None:
            frame, self._pending = self._pending, None
        else:
            try:
                frame = next(self._frames)
            except StopIteration:
                self.close()
                raise
            except MarionetError:
                self.close()
                raise
            except self._errors as e:
                self.close()
                raise MarionetError(f"{self.path}: decode error at frame {self._index} ({_reason(e)})") from e
        self._index += 1
        return frame

    def close(self) -> None:
        self._pending = None
        self._frames.close()  # runs the generator's cleanup, which closes the file

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_video(path) -> VideoReader:
    """Open a video file, a GIF or a folder of frames for streaming (see VideoReader)."""
    return VideoReader(path)


# ---------------------------------------------------------------------------------------------- writing


def _check_replaceable_folder(path: Path) -> None:
    # Replacing a folder deletes it, so only do that to an earlier frame dump (or an empty folder).
    if not (path.exists() or path.is_symlink()):
        return
    if not path.is_dir():
        raise MarionetError(f"{path}: exists and is not a folder")
    if any(not _FRAME_NAME.fullmatch(p.name) for p in path.iterdir()):
        raise MarionetError(f"{path}: folder holds files other than frames; not replacing it (use a new folder)")


class _AudioCopy:
    """The first audio track of `source` (if any), copied into the mp4 container `output` without
    re-encoding, packet by packet as the video catches up."""

    def __init__(self, source, output):
        self._output, self._input = output, None
        self._source = self._stream = self._next = None
        if source is None:
            return
        source = Path(source)
        if not source.exists():
            raise MarionetError(f"{source}: no such file")
        try:
            self._input = av.open(str(source), metadata_errors="ignore")
        except _AV_ERRORS as e:
            raise MarionetError(f"{source}: not a readable video ({_reason(e)})") from e
        streams = self._input.streams
        if not streams.audio:
            return
        codec = streams.audio[0].codec_context.name
        if codec not in output.supported_codecs:
            warnings.warn(  # stacklevel 4: the caller of VideoWriter(...)
                f"{source}: {codec} audio cannot be copied into mp4; writing the video without sound", stacklevel=4
            )
            return
        self._source = streams.audio[0]
        # Keep audio in sync with the source's first video frame, which becomes our time zero.
        video = streams.video[0] if streams.video else None
        start = video.start_time if video is not None else None
        shift = 0 if start is None else round(start * video.time_base / self._source.time_base)
        self._packets = self._shifted(shift)
        self._next = next(self._packets, None)

    def _shifted(self, shift: int):
        for packet in self._input.demux(self._source):
            if packet.dts is not None:  # None: the demuxer's empty flush packet
                packet.dts -= shift
                if packet.pts is not None:
                    packet.pts -= shift
                yield packet

    def add_stream(self) -> None:
        if self._source is not None:
            self._stream = self._output.add_stream_from_template(self._source)

    def mux_until(self, seconds: float) -> None:
        """Copy the packets that start before `seconds`."""
        while (packet := self._next) is not None:
            if (packet.pts if packet.pts is not None else packet.dts) * packet.time_base >= seconds:
                return  # not due yet
            packet.stream = self._stream
            self._output.mux(packet)
            self._next = next(self._packets, None)

    def close(self) -> None:
        if self._input is not None:
            self._input.close()


class _Output:
    """One output format, written into the temporary `tmp` that VideoWriter publishes: write() takes
    HxWx3 uint8 frames of one size, finish() completes the output, close() releases it and never raises."""

    def __init__(self, tmp: Path, fps: float, audio_from=None):
        self._tmp, self._fps, self._count = tmp, fps, 0

    def finish(self) -> None:
        pass

    def close(self) -> None:
        pass


class _Mp4Output(_Output):
    """H.264 video, plus the first audio track of `audio_from` if it has one."""

    def __init__(self, tmp: Path, fps: float, audio_from=None):
        super().__init__(tmp, fps)
        self._container = av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"})
        self._video = None
        try:
            self._audio = _AudioCopy(audio_from, self._container)
        except BaseException:
            self._container.close()
            raise

    def _add_streams(self, height: int, width: int) -> None:
        video = self._container.add_stream("libx264", rate=Fraction(self._fps).limit_denominator(1001))
        video.width, video.height = width + width % 2, height + height % 2  # yuv420p needs even sizes
        video.pix_fmt = "yuv420p"
        video.options = dict(_X264_OPTIONS)
        # Tag the colour matrix we convert with, so players do not guess (they guess differently).
        ctx = video.codec_context
        ctx.colorspace, ctx.color_range = Colorspace.ITU709, ColorRange.MPEG
        ctx.color_primaries, ctx.color_trc = ColorPrimaries.BT709, ColorTrc.BT709
        self._video = video
        self._audio.add_stream()

    def write(self, frame: np.ndarray) -> None:
        if self._video is None:
            self._add_streams(*frame.shape[:2])
        pad_h, pad_w = self._video.height - frame.shape[0], self._video.width - frame.shape[1]
        if pad_h or pad_w:
            frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        yuv = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(
            format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG,
            interpolation=_RGB_TO_YUV,
        )
        yuv.pts = self._count
        self._container.mux(self._video.encode(yuv))
        self._audio.mux_until(self._count / self._fps)
        self._count += 1

    def finish(self) -> None:
        self._container.mux(self._video.encode(None))
        self._audio.mux_until(self._count / self._fps)
        self._audio.close()
        self._container.close()

    def close(self) -> None:
        for resource in (self._audio, self._container):
            with suppress(Exception):
                resource.close()


class _GifOutput(_Output):
    """A looping GIF; each frame gets its own palette."""

    def __init__(self, tmp: Path, fps: float, audio_from=None):
        super().__init__(tmp, fps)
        self._frames: list[Image.Image] = []

    def write(self, frame: np.ndarray) -> None:
        # Per-frame adaptive palette from a pixel subsample; stored paletted (1 byte/pixel) until finish.
        step = max(1, int(np.ceil(np.sqrt(frame.shape[0] * frame.shape[1] / _GIF_PALETTE_SAMPLE))))
        sample = Image.fromarray(np.ascontiguousarray(frame[::step, ::step]))
        palette = sample.quantize(256, method=Image.Quantize.MAXCOVERAGE)
        self._frames.append(Image.fromarray(frame).quantize(palette=palette, dither=Image.Dither.NONE))

    def finish(self) -> None:
        # GIF delays are in 1/100 s, and browsers slow down delays under 20 ms.
        delay_ms = max(20, round(100 / self._fps) * 10)
        first, *rest = self._frames
        with open(self._tmp, "wb") as file:
            first.save(file, format="GIF", save_all=True, append_images=rest, duration=delay_ms, loop=0)


class _FolderOutput(_Output):
    """PNG frames 000000.png, 000001.png, ... in a folder."""

    def write(self, frame: np.ndarray) -> None:
        Image.fromarray(frame).save(self._tmp / f"{self._count:06d}.png")
        self._count += 1


class VideoWriter:
    """Writes frames to '.mp4' (H.264), '.gif', or a folder of PNG frames (no suffix or an existing folder).

    Output is atomic: frames go to a hidden temporary next to `path`, published by a successful close().
    An exception inside a `with` block, abort(), closing with zero frames or a failed write leaves
    nothing at `path` (and an earlier output there untouched). `audio_from` (mp4 only) names a video
    whose first audio track is copied without re-encoding, trimmed to the written video's length.
    """

    def __init__(self, path, fps, audio_from=None):
        self.path = Path(path)
        self._output = self._staged = None  # abort() cleans up whichever exists
        try:
            self.fps = float(fps)
        except (TypeError, ValueError):
            self.fps = float("nan")
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise MarionetError(f"{self.path}: fps must be a positive number, got {fps!r}")
        suffix = self.path.suffix.lower()
        self._folder = self.path.is_dir() or not suffix
        output = _FolderOutput if self._folder else {".mp4": _Mp4Output, ".gif": _GifOutput}.get(suffix)
        if output is None:
            raise MarionetError(f"{self.path}: unsupported output format '{suffix}' (use .mp4, .gif or a folder)")
        if self._folder:
            _check_replaceable_folder(self.path)
        self._count = 0
        self._size: tuple[int, int] | None = None
        self._staged = Staged(self.path, directory=self._folder)
        with self._aborting_on_error():
            self._output = output(self._staged.tmp, self.fps, audio_from)

    @contextmanager
    def _aborting_on_error(self):
        """Any exception discards the output; an I/O error becomes a MarionetError naming `path`."""
        try:
            yield
        except BaseException as e:
            self.abort()
            if isinstance(e, _AV_ERRORS):
                raise MarionetError(f"{self.path}: cannot write ({_reason(e)})") from e
            raise

    def write(self, frame) -> None:
        """Append one HxWx3 frame (uint8, or float in [0, 1]); every frame must have the same size."""
        if self._output is None:
            raise ValueError(f"{self.path}: write() on a closed VideoWriter")
        frame = to_uint8(frame)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 frame, got shape {frame.shape}")
        if self._size is None:
            self._size = frame.shape[:2]
        elif frame.shape[:2] != self._size:
            raise ValueError(f"frame size {frame.shape[1]}x{frame.shape[0]} differs from the first frame's "
                             f"{self._size[1]}x{self._size[0]}")
        with self._aborting_on_error():
            self._output.write(frame)
        self._count += 1

    def close(self) -> None:
        """Finish the file and publish it at `path`. MarionetError (and nothing written) if no frames."""
        if self._output is None:
            return
        with self._aborting_on_error():
            if self._count == 0:
                raise MarionetError(f"{self.path}: no frames were written")
            self._output.finish()
            if self._folder:
                _check_replaceable_folder(self.path)
            self._staged.publish()
        self._output = None

    def abort(self) -> None:
        """Discard everything written so far; nothing appears at `path`."""
        if self._output is not None:
            self._output.close()
            self._output = None
        if self._staged is not None:
            self._staged.discard()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self):
        # A writer dropped without close() must not leave its temporary behind (and never publishes).
        with suppress(Exception):
            self.abort()


def write_video(path, frames: Iterable, fps, audio_from=None) -> None:
    """Write an iterable of frames to `path` (see VideoWriter); nothing is left at `path` on error."""
    with VideoWriter(path, fps, audio_from=audio_from) as writer:
        for frame in frames:
            writer.write(frame)
