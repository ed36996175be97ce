"""Synthetic articulated 2-D puppets with exact ground truth (issue #3).

Three kinds (``humanoid``, ``quadruped``, ``face``) are rendered with analytic anti-aliasing,
deterministically for a given seed on any machine. See docs/puppets.md for the dataset layout and
the ground-truth format.

    >>> from marionet.data.puppets import render_video
    >>> frames, gt = render_video("humanoid", size=64, frames=32, seed=0)
    >>> frames.shape, gt["joints"].shape
    ((32, 64, 64, 3), (32, 15, 2))
"""
from .dataset import (DEFAULT_FPS, FORMATS, GT_DIR, contact_sheet, derive_seed, ground_truth_path,
                      load_ground_truth, render_video, save_ground_truth, synthesize, write_preview)
from .rig import KINDS

__all__ = ["DEFAULT_FPS", "FORMATS", "GT_DIR", "KINDS", "contact_sheet", "derive_seed",
           "ground_truth_path", "load_ground_truth", "render_video", "save_ground_truth",
           "synthesize", "write_preview"]
