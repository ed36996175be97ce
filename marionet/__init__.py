"""marionet: animate a still image with the motion of a driving video.

    import marionet
    model = marionet.load(config="configs/vox-256.yaml", checkpoint="vox-cpk.pth.tar")
    frames = model.animate(source, driving)        # numpy, [0, 1]
"""
from __future__ import annotations

__version__ = "0.1.0"

from marionet.errors import MarionetError  # noqa: E402
from marionet.loading import load  # noqa: E402

__all__ = ["load", "MarionetError", "__version__"]
