"""Model families, built from a config by name (a registry in the spirit of timm).

Adding a family: one module defining a ``ModelFamily`` subclass (see ``marionet/models/family.py``
and docs/architecture.md), and one ``register`` line below.
"""
from __future__ import annotations

from marionet.models.family import (DEFAULT_FAMILY, FAMILIES, NETWORKS, ModelFamily, build_model, family_class,
                                    family_of, register)
from marionet.models.fomm import FOMM
from marionet.models.monkeynet import MonkeyNet

register(MonkeyNet)
register(FOMM)

__all__ = ["DEFAULT_FAMILY", "FAMILIES", "NETWORKS", "ModelFamily", "build_model", "family_class", "family_of",
           "register"]
