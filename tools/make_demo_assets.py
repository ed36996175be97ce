"""Regenerate the bundled demo inputs (marionet/assets/examples): a puppet image and a driving video
of another puppet, both from identities the built-in model never saw in training.

    .venv/bin/python tools/make_demo_assets.py
"""
from pathlib import Path

from PIL import Image

from marionet.data.puppets import render_video
from marionet.data.video import write_video

OUT = Path(__file__).resolve().parent.parent / "marionet" / "assets" / "examples"
SOURCE_SEED, DRIVING_SEED, SIZE, FRAMES = 900_001, 900_002, 64, 64

if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    source, _ = render_video("humanoid", SIZE, 1, SOURCE_SEED)
    Image.fromarray(source[0]).save(OUT / "source.png")
    driving, _ = render_video("humanoid", SIZE, FRAMES, DRIVING_SEED)
    write_video(OUT / "driving.mp4", driving, fps=12)
    print(f"wrote {OUT / 'source.png'} and {OUT / 'driving.mp4'}")
