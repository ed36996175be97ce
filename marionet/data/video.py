"""Reading and writing images, videos and folders of frames.

Frames are HxWx3 RGB numpy arrays: readers yield uint8; writers take uint8 or float in [0, 1].
Videos go through PyAV (FFmpeg); still images and GIFs through Pillow.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import struct
import warnings
import zlib
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import ColorPrimaries, ColorRange, Colorspace, ColorTrc, Interpolation
from PIL import Image, ImageOps

from marionet.errors import MarionetError

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
    if not path.is_dir():
        raise MarionetError(f"{path}: exists and is not a folder")
    if any(not _FRAME_NAME.fullmatch(p.name) for p in path.iterdir()):
        raise MarionetError(f"{path}: folder holds files other than frames; not replacing it (use a new folder)")


class VideoWriter:
    """Writes frames to '.mp4' (H.264), '.gif', or a folder of PNG frames (no suffix or an existing folder).

    Output is atomic: frames go to a hidden temporary next to `path`, published by a successful close().
    An exception inside a `with` block, abort(), or closing with zero frames leaves nothing at `path`
    (and an earlier output there untouched). `audio_from` (mp4 only) names a video whose first audio
    track is copied without re-encoding, trimmed to the written video's length.
    """

    def __init__(self, path, fps, audio_from=None):
        self.path = Path(path)
        self._closed = True  # until the temporary exists, so a failed __init__ leaves nothing to clean
        try:
            self.fps = float(fps)
        except (TypeError, ValueError):
            self.fps = float("nan")
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise MarionetError(f"{self.path}: fps must be a positive number, got {fps!r}")
        suffix = self.path.suffix.lower()
        if self.path.is_dir() or not suffix:
            self._kind = "folder"
            if self.path.exists():
                _check_replaceable_folder(self.path)
        elif suffix in (".mp4", ".gif"):
            self._kind = suffix[1:]
        else:
            raise MarionetError(
                f"{self.path}: unsupported output format '{suffix}' (use .mp4, .gif or a folder)"
            )

        self._count = 0
        self._size: tuple[int, int] | None = None
        self._container = self._video = self._gif_file = None
        self._gif_frames: list[Image.Image] = []
        self._audio_in = self._audio_src = self._audio_out = None
        self._audio_packets = self._audio_pending = None
        self._audio_shift = 0  # source audio timestamps are moved by this to start with its video
        self._tmp = self.path.parent / f".{self.path.name}.{secrets.token_hex(4)}.tmp"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self._kind == "folder":
                os.mkdir(self._tmp)
            elif self._kind == "gif":
                self._gif_file = open(self._tmp, "xb")
            else:
                self._container = av.open(
                    str(self._tmp), "w", format="mp4", options={"movflags": "+faststart"}
                )
        except _AV_ERRORS as e:
            raise MarionetError(f"{self.path}: cannot write ({_reason(e)})") from e
        self._closed = False
        if audio_from is not None and self._kind == "mp4":
            try:
                self._open_audio(Path(audio_from))
            except BaseException:
                self.abort()
                raise

    def _open_audio(self, source: Path) -> None:
        if not source.exists():
            raise MarionetError(f"{source}: no such file")
        try:
            container = av.open(str(source), metadata_errors="ignore")
        except _AV_ERRORS as e:
            raise MarionetError(f"{source}: not a readable video ({_reason(e)})") from e
        if not container.streams.audio:
            container.close()
            return
        stream = container.streams.audio[0]
        codec = stream.codec_context.name
        if codec not in self._container.supported_codecs:
            container.close()
            warnings.warn(
                f"{source}: {codec} audio cannot be copied into mp4; writing the video without sound",
                stacklevel=3,
            )
            return
        # Keep audio in sync with the source's first video frame, which becomes our time zero.
        video = container.streams.video[0] if container.streams.video else None
        if video is not None and video.start_time is not None:
            self._audio_shift = round(video.start_time * video.time_base / stream.time_base)
        self._audio_in, self._audio_src = container, stream
        self._audio_packets = container.demux(stream)

    def _start_mp4(self, height: int, width: int) -> None:
        rate = Fraction(self.fps).limit_denominator(1001)
        video = self._container.add_stream("libx264", rate=rate)
        video.width, video.height = width + width % 2, height + height % 2  # yuv420p needs even sizes
        video.pix_fmt = "yuv420p"
        video.options = dict(_X264_OPTIONS)
        # Tag the colour matrix we convert with, so players do not guess (they guess differently).
        ctx = video.codec_context
        ctx.colorspace, ctx.color_range = Colorspace.ITU709, ColorRange.MPEG
        ctx.color_primaries, ctx.color_trc = ColorPrimaries.BT709, ColorTrc.BT709
        self._video = video
        if self._audio_in is not None:
            self._audio_out = self._container.add_stream_from_template(self._audio_src)

    def _mux_audio(self, until: float) -> None:
        """Copy the source audio packets that start before `until` seconds, interleaved with the video."""
        while self._audio_packets is not None:
            packet, self._audio_pending = self._audio_pending, None
            if packet is None:
                packet = next(self._audio_packets, None)
                if packet is None:
                    self._audio_packets = None
                    break
                if packet.dts is None:  # the demuxer's empty flush packet
                    continue
                packet.dts -= self._audio_shift
                if packet.pts is not None:
                    packet.pts -= self._audio_shift
            if (packet.pts if packet.pts is not None else packet.dts) * packet.time_base >= until:
                self._audio_pending = packet  # not due yet: keep it for the next call
                break
            packet.stream = self._audio_out
            self._container.mux(packet)

    def write(self, frame) -> None:
        """Append one HxWx3 frame (uint8, or float in [0, 1]); every frame must have the same size."""
        if self._closed:
            raise ValueError(f"{self.path}: write() on a closed VideoWriter")
        frame = to_uint8(frame)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 frame, got shape {frame.shape}")
        if self._size is None:
            self._size = frame.shape[:2]
        elif frame.shape[:2] != self._size:
            raise ValueError(f"frame size {frame.shape[1]}x{frame.shape[0]} differs from the first frame's "
                             f"{self._size[1]}x{self._size[0]}")
        try:
            if self._kind == "mp4":
                self._write_mp4(frame)
            elif self._kind == "gif":
                self._write_gif(frame)
            else:
                self._write_folder(frame)
        except _AV_ERRORS as e:
            raise MarionetError(f"{self.path}: cannot write ({_reason(e)})") from e
        self._count += 1

    def _write_mp4(self, frame: np.ndarray) -> None:
        if self._video is None:
            self._start_mp4(*frame.shape[:2])
        pad_h, pad_w = self._video.height - frame.shape[0], self._video.width - frame.shape[1]
        if pad_h or pad_w:
            frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        yuv = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(
            format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG,
            interpolation=_RGB_TO_YUV,
        )
        yuv.pts = self._count
        for packet in self._video.encode(yuv):
            self._container.mux(packet)
        self._mux_audio(self._count / self.fps)

    def _write_gif(self, frame: np.ndarray) -> None:
        # Per-frame adaptive palette from a pixel subsample; stored paletted (1 byte/pixel) until close.
        step = max(1, int(np.ceil(np.sqrt(frame.shape[0] * frame.shape[1] / _GIF_PALETTE_SAMPLE))))
        sample = Image.fromarray(np.ascontiguousarray(frame[::step, ::step]))
        palette = sample.quantize(256, method=Image.Quantize.MAXCOVERAGE)
        self._gif_frames.append(Image.fromarray(frame).quantize(palette=palette, dither=Image.Dither.NONE))

    def _write_folder(self, frame: np.ndarray) -> None:
        Image.fromarray(frame).save(self._tmp / f"{self._count:06d}.png")

    def close(self) -> None:
        """Finish the file and publish it at `path`. MarionetError (and nothing written) if no frames."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._count == 0:
                raise MarionetError(f"{self.path}: no frames were written")
            try:
                self._finish()
                self._publish()
            except _AV_ERRORS as e:
                raise MarionetError(f"{self.path}: cannot write ({_reason(e)})") from e
        except BaseException:
            self._discard()
            raise

    def _finish(self) -> None:
        if self._kind == "mp4":
            for packet in self._video.encode(None):
                self._container.mux(packet)
            self._mux_audio(self._count / self.fps)
            self._close_audio()
            self._container.close()
        elif self._kind == "gif":
            # GIF delays are in 1/100 s, and browsers slow down delays under 20 ms.
            delay_ms = max(20, round(100 / self.fps) * 10)
            first, *rest = self._gif_frames
            first.save(
                self._gif_file, format="GIF", save_all=True, append_images=rest, duration=delay_ms, loop=0
            )
            self._gif_frames = []
            self._gif_file.close()

    def _publish(self) -> None:
        if self._kind != "folder" or not (self.path.exists() or self.path.is_symlink()):
            os.replace(self._tmp, self.path)
            return
        # A directory cannot be renamed over a non-empty one: move the old one aside first.
        _check_replaceable_folder(self.path)
        old = self.path.parent / f".{self.path.name}.{secrets.token_hex(4)}.old"
        os.replace(self.path, old)
        try:
            os.replace(self._tmp, self.path)
        except OSError:
            os.replace(old, self.path)
            raise
        shutil.rmtree(old, ignore_errors=True)

    def _close_audio(self) -> None:
        if self._audio_in is not None:
            self._audio_in.close()
            self._audio_in = self._audio_packets = self._audio_pending = None

    def _discard(self) -> None:
        """Drop the temporary output; never raises."""
        for resource in (self._audio_in, self._container, self._gif_file):
            try:
                if resource is not None:
                    resource.close()
            except Exception:
                pass
        self._audio_in = self._audio_packets = self._audio_pending = None
        self._gif_frames = []
        if self._tmp.is_dir():
            shutil.rmtree(self._tmp, ignore_errors=True)
        else:
            self._tmp.unlink(missing_ok=True)

    def abort(self) -> None:
        """Discard everything written so far; nothing appears at `path`."""
        if not self._closed:
            self._closed = True
            self._discard()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self):
        # A writer dropped without close() must not leave its temporary behind (and never publishes).
        try:
            self.abort()
        except Exception:
            pass


def write_video(path, frames: Iterable, fps, audio_from=None) -> None:
    """Write an iterable of frames to `path` (see VideoWriter); nothing is left at `path` on error."""
    with VideoWriter(path, fps, audio_from=audio_from) as writer:
        for frame in frames:
            writer.write(frame)
