"""`marionet serve`: the page driven in headless Chromium with Playwright (upload, run, a result video
that decodes, an oversized upload refused), and the Animator behind it."""
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from marionet.data.video import open_video, write_video
from marionet.errors import MarionetError
from marionet.web import EXAMPLES, Animator, model_choices

CHROMIUM = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory):
    """8 frames of the carphone talking head."""
    from marionet.data.samples import sample_path

    with open_video(sample_path("carphone")) as reader:
        frames = [f for _, f in zip(range(8), reader)]
    path = tmp_path_factory.mktemp("media") / "carphone.mp4"
    write_video(path, frames, 25)
    return path


@pytest.fixture(scope="module")
def short_driving(tmp_path_factory):
    with open_video(EXAMPLES / "driving.mp4") as reader:
        frames = [f for _, f in zip(range(8), reader)]
    path = tmp_path_factory.mktemp("media") / "driving.mp4"
    write_video(path, frames, 25)
    return path


def test_the_models_offered_animate_from_video_faces_first():
    names = list(model_choices())
    assert names[0] == "faces (built-in)" and "puppets (built-in)" in names
    assert "posewarp-puppets (built-in)" not in names                # driven by joints, not by a video


def test_animator_runs_a_job_and_refuses_what_is_too_big(tmp_path, short_driving):
    animator = Animator(model_choices(), tmp_path, max_upload_mb=1, max_seconds=60)
    result, side = animator(str(EXAMPLES / "source.png"), str(short_driving), "puppets (built-in)", "relative",
                            "auto", False)
    with open_video(result) as reader:
        frames = list(reader)
    assert len(frames) == 8 and frames[0].shape == (64, 64, 3)
    with open_video(side) as reader:
        assert next(reader).shape[1] > 3 * 60                       # source | driving | result
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (900, 900, 3), dtype=np.uint8)).save(big)
    with pytest.raises(MarionetError, match="limit is 1 MB"):
        animator(str(big), str(short_driving), "puppets (built-in)", "relative", "auto", False)
    short = Animator(model_choices(), tmp_path, max_upload_mb=10, max_seconds=0.1)
    with pytest.raises(MarionetError, match="the limit is 0.1 s"):
        short(str(EXAMPLES / "source.png"), str(short_driving), "puppets (built-in)", "relative", "auto", False)
    jobs = [p for p in tmp_path.iterdir() if p.name.startswith("job-")]
    assert len(jobs) == 1                                            # refused jobs left no folder behind


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (tools/ensure_chromium.sh installs it)")
def test_the_page_in_a_browser(tmp_path, face_clip):
    """The default model (faces) on a photo and a phone clip, as a visitor's first try."""
    from playwright.sync_api import sync_playwright

    from marionet.data.samples import sample_path
    from marionet.web import serve

    port = free_port()
    _, stop = serve(port=port, block=False, max_upload_mb=1)
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (900, 900, 3), dtype=np.uint8)).save(big)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")
            animate = page.get_by_role("button", name="Animate")
            animate.wait_for(timeout=60_000)
            inputs = page.locator("input[type=file]")
            inputs.nth(0).set_input_files(str(sample_path("astronaut")))
            inputs.nth(1).set_input_files(str(face_clip))
            page.wait_for_function("() => [...document.querySelectorAll('video')].some(v => v.src)", timeout=30_000)
            animate.click()
            page.wait_for_function("() => [...document.querySelectorAll('video')].some("
                                   "v => v.src.includes('result.mp4') && v.readyState >= 2)", timeout=300_000)
            src = page.evaluate("() => [...document.querySelectorAll('video')].map(v => v.src)"
                                ".find(s => s.includes('result.mp4'))")
            video = tmp_path / "downloaded.mp4"
            video.write_bytes(page.request.get(src).body())
            with open_video(video) as reader:
                assert sum(1 for _ in reader) == 8                    # the result decodes, every frame there
            screenshot = tmp_path / "serve.png"
            page.screenshot(path=str(screenshot), full_page=True)
            if os.environ.get("MARIONET_SCREENSHOT"):                # how the README's picture is made
                shutil.copy(screenshot, os.environ["MARIONET_SCREENSHOT"])

            page.reload()
            page.get_by_role("button", name="Animate").wait_for(timeout=60_000)
            page.locator("input[type=file]").nth(0).set_input_files(str(big))
            page.get_by_text("exceed the maximum allowed size").wait_for(timeout=30_000)
            browser.close()
    finally:
        stop()
    assert not Path(os.environ["GRADIO_TEMP_DIR"]).exists()         # the server's files went with it
