"""marionet: animate a still image with the motion of a driving video.

    import marionet
    model = marionet.load(config="configs/vox-256.yaml", checkpoint="vox-cpk.pth.tar")
    frames = model.animate(source, driving)        # numpy, [0, 1]
"""
from __future__ import annotations

from marionet.errors import MarionetError

__version__ = "0.1.0"
__all__ = ["load", "MarionetError", "__version__"]


def __getattr__(name):
    # Imported on first use so that `marionet --help` and the CLI's argument parsing do not load torch.
    if name == "load":
        from marionet.loading import load

        return load
    raise AttributeError(f"module 'marionet' has no attribute {name!r}")
