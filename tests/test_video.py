"""Tests for marionet.data.video: all media is generated in tmp_path."""

from __future__ import annotations

import os
import shutil
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from marionet.data.video import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    VideoReader,
    VideoWriter,
    open_video,
    read_image,
    to_uint8,
    write_video,
)
from marionet.errors import MarionetError


def gradient_frames(n, height=72, width=96, seed=0):
    """Smooth, moving colour gradients (mild for H.264, varied for palettes)."""
    rng = np.random.default_rng(seed)
    phases = rng.uniform(0, 2 * np.pi, size=3)
    yy, xx = np.mgrid[0:height, 0:width]
    yy, xx = yy / height, xx / width
    frames = []
    for i in range(n):
        t = i / max(n, 1)
        r = 0.5 + 0.4 * np.sin(2 * np.pi * (xx + t) + phases[0])
        g = 0.5 + 0.4 * np.cos(2 * np.pi * (0.8 * yy + t) + phases[1])
        b = 0.5 + 0.4 * np.sin(2 * np.pi * 0.7 * (xx + yy) - t + phases[2])
        frames.append(to_uint8(np.stack([r, g, b], axis=-1)))
    return frames


def make_av_file(path, n_frames=25, fps=25, audio_seconds=0.0, size=(64, 48), sample_rate=44100, start=0):
    """A file written with PyAV directly: optional H.264 video and an optional AAC sine track,
    both starting `start` seconds into the file's timeline."""
    with av.open(str(path), "w") as container:
        video = audio = None
        if n_frames is not None:
            video = container.add_stream("libx264", rate=fps)
            video.width, video.height = size
            video.pix_fmt = "yuv420p"
        if audio_seconds:
            audio = container.add_stream("aac", rate=sample_rate)
            audio.layout = "mono"
        container.start_encoding()
        for i in range(n_frames or 0):
            frame = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), 8 * i % 256, np.uint8), format="rgb24")
            frame.pts = i + round(start * fps)
            container.mux(video.encode(frame))
        if video is not None:
            container.mux(video.encode(None))
        if audio is not None:
            t = np.arange(int(audio_seconds * sample_rate)) / sample_rate
            samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for offset in range(0, len(samples), 4096):
                chunk = av.AudioFrame.from_ndarray(samples[None, offset:offset + 4096], format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = sample_rate, offset + round(start * sample_rate)
                container.mux(audio.encode(chunk))
            container.mux(audio.encode(None))


def leftovers(directory):
    return sorted(os.listdir(directory))


# ------------------------------------------------------------------------------------------ images


def test_extension_sets():
    assert {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"} == IMAGE_EXTENSIONS
    assert {".mp4", ".avi", ".mov", ".webm", ".mkv", ".gif", ".m4v"} == VIDEO_EXTENSIONS


def test_read_image_rgb_png_exact(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "rgb.png")
    image = read_image(tmp_path / "rgb.png")
    assert image.dtype == np.float32 and image.shape == (17, 23, 3)
    np.testing.assert_array_equal(to_uint8(image), pixels)


def test_read_image_rgba_is_composited_over_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200  # red-ish everywhere
    rgba[0, :, 3] = 0  # transparent row -> white
    rgba[1, :, 3] = 255  # opaque row -> the colour
    rgba[2, :, 3] = 51  # 20% opaque
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    image = read_image(tmp_path / "rgba.png")
    np.testing.assert_allclose(image[0], 1.0)
    np.testing.assert_allclose(image[1], np.tile([200 / 255, 0, 0], (4, 1)), atol=1e-6)
    np.testing.assert_allclose(image[2], np.tile([0.2 * 200 / 255 + 0.8, 0.8, 0.8], (4, 1)), atol=1e-6)


def test_read_image_grayscale_la_and_palette_transparency(tmp_path):
    gray = np.arange(0, 240, 10, dtype=np.uint8).reshape(4, 6)
    Image.fromarray(gray, "L").save(tmp_path / "gray.png")
    image = read_image(tmp_path / "gray.png")
    assert image.shape == (4, 6, 3)
    np.testing.assert_array_equal(to_uint8(image), np.repeat(gray[..., None], 3, axis=2))

    la = Image.merge("LA", [Image.new("L", (3, 3), 0), Image.new("L", (3, 3), 0)])  # black, fully transparent
    la.save(tmp_path / "la.png")
    np.testing.assert_allclose(read_image(tmp_path / "la.png"), 1.0)

    palette = Image.new("P", (3, 3), 1)
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    palette.info["transparency"] = 1
    palette.save(tmp_path / "p.png", transparency=1)
    np.testing.assert_allclose(read_image(tmp_path / "p.png"), 1.0)


def test_read_image_16bit_png(tmp_path):
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")  # mode I;16
    image = read_image(tmp_path / "deep.png")
    assert image.shape == (1, 4, 3)
    np.testing.assert_allclose(image[0, :, 0], values[0] / 65535, atol=1e-6)
    np.testing.assert_array_equal(image[..., 0], image[..., 2])


def test_read_image_jpeg_and_exif_orientation(tmp_path):
    pixels = gradient_frames(1, height=40, width=60)[0]
    Image.fromarray(pixels).save(tmp_path / "photo.jpg", quality=95)
    image = read_image(tmp_path / "photo.jpg")
    assert image.shape == (40, 60, 3)
    assert np.abs(to_uint8(image).astype(int) - pixels).mean() < 3

    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the stored image must be turned 90 degrees clockwise to display
    Image.fromarray(pixels).save(tmp_path / "rotated.jpg", quality=95, exif=exif)
    upright = read_image(tmp_path / "rotated.jpg")
    assert upright.shape == (60, 40, 3)
    np.testing.assert_allclose(upright, np.rot90(image, -1), atol=4 / 255)


def test_read_image_errors_name_the_file(tmp_path):
    with pytest.raises(MarionetError, match=r"missing\.png: no such file"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "corrupt.png").write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(MarionetError, match=r"corrupt\.png: not a readable image"):
        read_image(tmp_path / "corrupt.png")
    # A valid PNG header with its data cut off.
    Image.fromarray(gradient_frames(1)[0]).save(tmp_path / "whole.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "whole.png").read_bytes()[:200])
    with pytest.raises(MarionetError, match=r"cut\.png: not a readable image"):
        read_image(tmp_path / "cut.png")
    with pytest.raises(MarionetError, match="is a folder"):
        read_image(tmp_path)


def test_to_uint8():
    floats = np.array([[[-0.5, 0.0, 0.6 / 255], [0.5, 1.0, 7.0]]], dtype=np.float64)
    np.testing.assert_array_equal(to_uint8(floats), [[[0, 0, 1], [128, 255, 255]]])
    assert to_uint8(np.full((1, 1, 3), np.nan, np.float32)).tolist() == [[[0, 0, 0]]]
    ints = np.zeros((2, 2, 3), np.uint8)
    assert to_uint8(ints) is ints
    with pytest.raises(TypeError):
        to_uint8(np.zeros((2, 2, 3), np.int64))


# ------------------------------------------------------------------------------------------ mp4


def test_mp4_round_trip(tmp_path):
    frames = gradient_frames(24)
    write_video(tmp_path / "clip.mp4", frames, fps=24)
    data = (tmp_path / "clip.mp4").read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # +faststart
    with open_video(tmp_path / "clip.mp4") as reader:
        assert (reader.width, reader.height, reader.fps, reader.frame_count) == (96, 72, 24.0, 24)
        assert reader.has_audio is False
        decoded = list(reader)
    assert len(decoded) == 24 and decoded[0].dtype == np.uint8 and decoded[0].shape == (72, 96, 3)
    error = np.abs(np.stack(decoded).astype(np.int16) - np.stack(frames)).mean()
    assert error < 3, error  # measured ~1.95 at this tiny size (~0.9 at 256x256)
    with av.open(str(tmp_path / "clip.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert not container.streams.audio


def test_mp4_odd_size_is_padded_by_edge_replication(tmp_path):
    frames = gradient_frames(5, height=45, width=63)
    write_video(tmp_path / "odd.mp4", frames, fps=10)
    decoded = list(open_video(tmp_path / "odd.mp4"))
    assert len(decoded) == 5 and decoded[0].shape == (46, 64, 3)
    got = np.stack(decoded).astype(np.int16)
    assert np.abs(got[:, :45, :63] - np.stack(frames)).mean() < 4  # measured ~2.5
    # The padding repeats the last row/column instead of adding a black border.
    assert np.abs(got[:, 45, :63] - got[:, 44, :63]).mean() < 4
    assert np.abs(got[:, :45, 63] - got[:, :45, 62]).mean() < 4


def test_mp4_float_frames_and_fractional_fps(tmp_path):
    frames = [frame / 255.0 for frame in gradient_frames(6, height=32, width=32)]
    with VideoWriter(tmp_path / "ntsc.mp4", fps=30000 / 1001) as writer:
        for frame in frames:
            writer.write(frame)
    reader = open_video(tmp_path / "ntsc.mp4")
    assert reader.fps == pytest.approx(29.97, abs=1e-3)
    with av.open(str(tmp_path / "ntsc.mp4")) as container:
        assert container.streams.video[0].average_rate == Fraction(30000, 1001)


def test_rotated_phone_video_is_turned_upright(tmp_path):
    # Phones store portrait clips as landscape frames plus a display rotation; -90 = turn clockwise.
    with av.open(str(tmp_path / "phone.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.set_display_rotation(-90)
        stored = np.zeros((48, 64, 3), np.uint8)
        stored[:16, :16] = 255  # marker in the stored top-left corner
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(stored, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    reader = open_video(tmp_path / "phone.mp4")
    assert (reader.width, reader.height) == (48, 64)
    upright = next(reader)
    assert upright.shape == (64, 48, 3)
    assert upright[:16, -16:].mean() > 200 and upright[:16, :16].mean() < 50  # now top-right


def test_reader_is_lazy_and_reports_mid_stream_errors(tmp_path):
    frames = [np.random.default_rng(i).integers(0, 256, (96, 128, 3), dtype=np.uint8) for i in range(40)]
    write_video(tmp_path / "noisy.mp4", frames, fps=25)
    data = bytearray((tmp_path / "noisy.mp4").read_bytes())
    start = len(data) * 6 // 10  # the moov atom is at the front, so this lands in frame data
    data[start:] = np.random.default_rng(0).bytes(len(data) - start)
    (tmp_path / "damaged.mp4").write_bytes(bytes(data))

    reader = open_video(tmp_path / "damaged.mp4")  # opening only decodes the first frame...
    assert iter(reader) is reader
    assert next(reader).shape == (96, 128, 3)
    with pytest.raises(MarionetError, match=r"damaged\.mp4: decode error at frame \d+") as caught:
        for _ in reader:
            pass
    index = int(str(caught.value).split("frame ")[1].split()[0])
    assert 1 < index < 40  # ...and earlier frames streamed out before the damage was reached


def test_audio_is_copied_and_trimmed(tmp_path):
    make_av_file(tmp_path / "talk.mp4", n_frames=50, fps=25, audio_seconds=2.0)
    assert open_video(tmp_path / "talk.mp4").has_audio
    write_video(tmp_path / "out.mp4", gradient_frames(30, 48, 64), fps=25, audio_from=tmp_path / "talk.mp4")

    with av.open(str(tmp_path / "talk.mp4")) as source:
        source_packets = [bytes(p) for p in source.demux(source.streams.audio[0]) if p.dts is not None]
    with av.open(str(tmp_path / "out.mp4")) as out:
        assert len(out.streams.video) == 1 and len(out.streams.audio) == 1
        audio = out.streams.audio[0]
        assert audio.codec_context.name == "aac" and audio.sample_rate == 44100
        packets = [p for p in out.demux(audio) if p.dts is not None]
        end = float((packets[-1].pts + packets[-1].duration) * packets[-1].time_base)
        assert end == pytest.approx(30 / 25, abs=0.05)  # trimmed from 2 s to the video's 1.2 s
        # Stream copy: the compressed packets are the source's, byte for byte.
        assert [bytes(p) for p in packets] == source_packets[: len(packets)]
    assert open_video(tmp_path / "out.mp4").has_audio


def test_audio_stays_in_sync_when_the_source_starts_late(tmp_path):
    make_av_file(tmp_path / "late.mkv", n_frames=50, fps=25, audio_seconds=2.0, start=3.0)
    with av.open(str(tmp_path / "late.mkv")) as source:
        assert float(source.streams.video[0].start_time * source.streams.video[0].time_base) == pytest.approx(3.0)
    write_video(tmp_path / "out.mp4", gradient_frames(25, 32, 32), fps=25, audio_from=tmp_path / "late.mkv")
    with av.open(str(tmp_path / "out.mp4")) as out:
        packets = [p for p in out.demux(out.streams.audio[0]) if p.dts is not None]
    times = [float(p.pts * p.time_base) for p in packets]
    assert times[0] == pytest.approx(0.0, abs=0.03)  # the source's 3 s offset is removed
    assert times[-1] == pytest.approx(1.0, abs=0.05)  # trimmed to the 1 s of video
    assert np.allclose(np.diff(times), 1024 / 44100, atol=1e-3)  # contiguous, no packet shifted twice


def test_audio_from_without_audio_or_for_other_formats_is_ignored(tmp_path):
    make_av_file(tmp_path / "silent.mp4", n_frames=5)
    write_video(tmp_path / "a.mp4", gradient_frames(3, 32, 32), fps=10, audio_from=tmp_path / "silent.mp4")
    with av.open(str(tmp_path / "a.mp4")) as out:
        assert not out.streams.audio
    make_av_file(tmp_path / "talk.mp4", n_frames=5, audio_seconds=0.5)
    write_video(tmp_path / "b.gif", gradient_frames(3, 32, 32), fps=10, audio_from=tmp_path / "talk.mp4")
    assert open_video(tmp_path / "b.gif").frame_count == 3


def test_audio_that_mp4_cannot_hold_is_dropped_with_a_warning(tmp_path):
    with av.open(str(tmp_path / "old.avi"), "w") as container:
        audio = container.add_stream("pcm_u8", rate=8000)  # fine in AVI, not allowed in MP4
        audio.layout = "mono"
        chunk = av.AudioFrame.from_ndarray(np.full((1, 800), 128, np.uint8), format="u8", layout="mono")
        chunk.sample_rate, chunk.pts = 8000, 0
        container.mux(audio.encode(chunk))
        container.mux(audio.encode(None))
    with pytest.warns(UserWarning, match=r"old\.avi: pcm_u8 audio cannot be copied into mp4"):
        write_video(tmp_path / "out.mp4", gradient_frames(3, 16, 16), fps=25, audio_from=tmp_path / "old.avi")
    with av.open(str(tmp_path / "out.mp4")) as out:
        assert len(out.streams.video) == 1 and not out.streams.audio


def test_audio_from_missing_file_is_an_error_and_leaves_nothing(tmp_path):
    with pytest.raises(MarionetError, match=r"nope\.mp4: no such file"):
        VideoWriter(tmp_path / "out.mp4", fps=25, audio_from=tmp_path / "nope.mp4")
    assert leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------------ gif, folders


def test_gif_round_trip(tmp_path):
    frames = gradient_frames(8, height=40, width=50)
    frames[3] = frames[2].copy()
    frames[3][5:15, 5:15] = (250, 10, 10)  # only a patch changes: Pillow stores a cropped frame
    write_video(tmp_path / "anim.gif", frames, fps=20)
    with Image.open(tmp_path / "anim.gif") as im:
        assert im.info["loop"] == 0 and im.info["duration"] == 50
    reader = open_video(tmp_path / "anim.gif")
    assert (reader.fps, reader.frame_count, reader.width, reader.height, reader.has_audio) == (20.0, 8, 50, 40, False)
    decoded = np.stack(list(reader)).astype(np.int16)
    assert decoded.shape == (8, 40, 50, 3)
    error = np.abs(decoded - np.stack(frames)).mean()
    assert error < 8, error
    assert (np.abs(decoded[3, 5:15, 5:15] - (250, 10, 10)) < 12).all()


def test_gif_with_repeated_or_uneven_frames_reads_at_a_constant_rate(tmp_path):
    a, b, c = gradient_frames(3, 16, 16)
    write_video(tmp_path / "still.gif", [a, a, a, b, c], fps=25)  # Pillow stores a as one 120 ms frame
    with Image.open(tmp_path / "still.gif") as im:
        assert im.n_frames == 3
    reader = open_video(tmp_path / "still.gif")
    assert (reader.fps, reader.frame_count) == (25.0, 5)
    frames = list(reader)
    assert len(frames) == 5
    np.testing.assert_array_equal(frames[0], frames[2])
    assert not np.array_equal(frames[2], frames[3])

    images = [Image.fromarray(np.full((4, 4, 3), v, np.uint8)) for v in (0, 120, 240)]
    images[0].save(tmp_path / "uneven.gif", save_all=True, append_images=images[1:], duration=[100, 50, 50])
    reader = open_video(tmp_path / "uneven.gif")
    assert (reader.fps, reader.frame_count) == (20.0, 4)
    assert [int(f[0, 0, 0]) for f in reader] == [0, 0, 120, 240]

    images[0].save(tmp_path / "fast.gif", save_all=True, append_images=images[1:], duration=0)
    reader = open_video(tmp_path / "fast.gif")  # browsers play 0 ms delays at 100 ms
    assert (reader.fps, reader.frame_count) == (10.0, 3)


def test_gif_transparency_reads_as_white(tmp_path):
    first = Image.new("P", (8, 8), 0)
    first.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    second = first.copy()
    second.paste(1, (0, 0, 4, 8))
    first.save(tmp_path / "t.gif", save_all=True, append_images=[second], transparency=0, duration=100, disposal=2)
    frames = list(open_video(tmp_path / "t.gif"))
    assert len(frames) == 2
    assert (frames[0] == 255).all()
    assert (frames[1][:, :4] == (255, 0, 0)).all() and (frames[1][:, 4:] == 255).all()


def test_folder_round_trip_is_exact(tmp_path):
    frames = [np.random.default_rng(i).integers(0, 256, (20, 30, 3), dtype=np.uint8) for i in range(4)]
    write_video(tmp_path / "frames", frames, fps=12)
    assert leftovers(tmp_path / "frames") == ["000000.png", "000001.png", "000002.png", "000003.png"]
    reader = open_video(tmp_path / "frames")
    assert (reader.fps, reader.frame_count, reader.width, reader.height) == (25.0, 4, 30, 20)
    np.testing.assert_array_equal(np.stack(list(reader)), np.stack(frames))


def test_folder_natural_order_ignores_other_files(tmp_path):
    folder = tmp_path / "dump"
    folder.mkdir()
    for n in (10, 2, 1, 33):
        Image.fromarray(np.full((4, 4, 3), n, np.uint8)).save(folder / f"frame{n}.png")
    Image.fromarray(np.full((4, 4, 3), 99, np.uint8)).save(folder / "._frame3.png")  # macOS metadata file
    (folder / "notes.txt").write_text("not a frame")
    (folder / "sub.png").mkdir()
    assert [int(f[0, 0, 0]) for f in open_video(folder)] == [1, 2, 10, 33]


def test_folder_frames_are_read_lazily(tmp_path):
    write_video(tmp_path / "frames", [np.full((4, 4, 3), i, np.uint8) for i in range(5)], fps=25)
    reader = open_video(tmp_path / "frames")
    assert next(reader)[0, 0, 0] == 0
    (tmp_path / "frames" / "000003.png").write_bytes(b"garbage")  # damaged after opening
    with pytest.raises(MarionetError, match=r"000003\.png: not a readable image"):
        list(reader)


def test_folder_output_replaces_an_earlier_dump_only(tmp_path):
    write_video(tmp_path / "out", [np.zeros((4, 4, 3), np.uint8)] * 3, fps=25)
    write_video(tmp_path / "out", [np.ones((4, 4, 3), np.uint8)] * 2, fps=25)
    assert leftovers(tmp_path / "out") == ["000000.png", "000001.png"]
    assert leftovers(tmp_path) == ["out"]

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(MarionetError, match="mine: folder holds files other than frames"):
        VideoWriter(tmp_path / "mine", fps=25)
    assert leftovers(tmp_path / "mine") == ["thesis.tex"]


# ------------------------------------------------------------------------------------------ errors


def test_open_video_errors_name_the_file(tmp_path):
    with pytest.raises(MarionetError, match=r"driving\.mp4: no such file"):
        open_video(tmp_path / "driving.mp4")
    (tmp_path / "clip.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(MarionetError, match=r"clip\.mp4: not a readable video \(Invalid data"):
        open_video(tmp_path / "clip.mp4")
    (tmp_path / "clip.gif").write_bytes(b"GIF89a" + bytes(20))
    with pytest.raises(MarionetError, match=r"clip\.gif: not a readable video"):
        open_video(tmp_path / "clip.gif")
    (tmp_path / "clip.xyz").write_bytes(b"")
    with pytest.raises(MarionetError, match=r"clip\.xyz: unknown video format '\.xyz'"):
        open_video(tmp_path / "clip.xyz")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no frames here")
    with pytest.raises(MarionetError, match="empty: no image frames"):
        open_video(tmp_path / "empty")


def test_videos_without_frames_fail_at_open(tmp_path):
    make_av_file(tmp_path / "radio.mp4", n_frames=None, audio_seconds=0.3)
    with pytest.raises(MarionetError, match=r"radio\.mp4: the file has no video stream"):
        open_video(tmp_path / "radio.mp4")
    make_av_file(tmp_path / "blank.mkv", n_frames=0)  # header with a video track, zero frames
    with pytest.raises(MarionetError, match=r"blank\.mkv: the video has no frames"):
        open_video(tmp_path / "blank.mkv")


@pytest.mark.parametrize("name", ["out.mp4", "out.gif", "out"])
def test_exception_in_with_block_leaves_nothing(tmp_path, name):
    with pytest.raises(RuntimeError, match="model crashed"):
        with VideoWriter(tmp_path / name, fps=25) as writer:
            for frame in gradient_frames(3, 32, 32):
                writer.write(frame)
            raise RuntimeError("model crashed")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("name", ["out.mp4", "out.gif", "out"])
def test_failed_write_keeps_the_previous_output(tmp_path, name):
    write_video(tmp_path / name, gradient_frames(2, 16, 16), fps=25)
    before = sorted(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())

    def frames():
        yield gradient_frames(1, 16, 16, seed=5)[0]
        raise MarionetError("driving.mp4: decode error at frame 1 (boom)")

    with pytest.raises(MarionetError, match="boom"):
        write_video(tmp_path / name, frames(), fps=25)
    assert sorted(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()) == before
    assert leftovers(tmp_path) == [name]


@pytest.mark.parametrize("name", ["out.mp4", "out.gif", "out"])
def test_zero_frames_is_an_error_and_writes_nothing(tmp_path, name):
    with pytest.raises(MarionetError, match=f"{name}: no frames were written"):
        write_video(tmp_path / name, [], fps=25)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("name", ["out.mp4", "out.gif", "out"])
def test_unwritable_output_directory_is_a_one_line_error(tmp_path, name):
    # A read-only folder does not stop root (these tests run as root), but a regular file as the parent does.
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(MarionetError, match=f"afile/{name}: cannot write") as caught:
        write_video(tmp_path / "afile" / name, gradient_frames(2, 16, 16), fps=25)
    assert "\n" not in str(caught.value)
    assert leftovers(tmp_path) == ["afile"]
    assert (tmp_path / "afile").read_text() == "not a folder"


@pytest.mark.parametrize("name", ["out.mp4", "out.gif", "out"])
def test_output_directory_lost_while_writing_is_a_one_line_error(tmp_path, name):
    # Fails while writing (mp4, folder) or finishing (gif), after the temporary exists; the clean-up
    # then fails too (ENOTDIR), as on a file system that went read-only, and must not raise that.
    with pytest.raises(MarionetError, match=f"sub/{name}: cannot write") as caught:
        with VideoWriter(tmp_path / "sub" / name, fps=25) as writer:
            writer.write(gradient_frames(1, 16, 16)[0])
            shutil.rmtree(tmp_path / "sub")
            (tmp_path / "sub").write_text("now a file")
            for frame in gradient_frames(30, 16, 16):
                writer.write(frame)
    assert "\n" not in str(caught.value)
    assert leftovers(tmp_path) == ["sub"] and (tmp_path / "sub").read_text() == "now a file"
    with pytest.raises(ValueError, match="closed"):
        writer.write(gradient_frames(1, 16, 16)[0])


def test_writer_argument_errors(tmp_path):
    with pytest.raises(MarionetError, match=r"out\.avi: unsupported output format"):
        VideoWriter(tmp_path / "out.avi", fps=25)
    with pytest.raises(MarionetError, match="fps must be a positive number"):
        VideoWriter(tmp_path / "out.mp4", fps=0)
    writer = VideoWriter(tmp_path / "out.mp4", fps=25)
    writer.write(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="differs from the first frame"):
        writer.write(np.zeros((8, 10, 3), np.uint8))
    with pytest.raises(ValueError, match="HxWx3"):
        writer.write(np.zeros((8, 8), np.uint8))
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        writer.write(np.zeros((8, 8, 3), np.uint8))
    assert leftovers(tmp_path) == ["out.mp4"]


def test_transcode_reader_into_writer(tmp_path):
    write_video(tmp_path / "in.mp4", gradient_frames(6, 32, 48), fps=15)
    with open_video(tmp_path / "in.mp4") as reader:
        write_video(tmp_path / "copy.mp4", reader, fps=reader.fps)
    copy = VideoReader(tmp_path / "copy.mp4")
    assert (copy.fps, copy.frame_count, copy.width, copy.height) == (15.0, 6, 48, 32)
