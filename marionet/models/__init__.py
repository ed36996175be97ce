"""Model families, built from a config by name (a registry in the spirit of timm).

Adding a family: one module defining a ``ModelFamily`` subclass (see ``marionet/models/family.py``
and docs/architecture.md), and one ``register`` line below.
"""
from __future__ import annotations

from marionet.models.family import (DEFAULT_FAMILY, FAMILIES, NETWORKS, ModelFamily, build_model, family_class,
                                    family_of, register)
from marionet.models.donkeynet import DonkeyNet
from marionet.models.fomm import FOMM
from marionet.models.kpmask import KPMask
from marionet.models.landmark_warp import Bodies, Faces
from marionet.models.monkeynet import MonkeyNet
from marionet.models.posewarp import Posewarp

register(DonkeyNet)   # before Monkey-Net: recognised by its checkpoints' attention keys
register(MonkeyNet)
register(KPMask)
register(Posewarp)
register(FOMM)
register(Faces)
register(Bodies)

__all__ = ["DEFAULT_FAMILY", "FAMILIES", "NETWORKS", "ModelFamily", "build_model", "family_class", "family_of",
           "register"]
