"""Datasets that ship with equivar, are generated on demand by a real physics code, or are read
from a PyPI package (no download at run time): one module per dataset (the N-body simulator
has one of its own, :mod:`~equivar.data.datasets.nbody_simulation`).

Names are resolved lazily, so importing this package does no work.
"""

from __future__ import annotations

from equivar._lazy import lazy_attributes

_WHERE = {
    "load_emt_metals": "emt",
    "read_metadata": "emt",
    "load_md17": "md17",
    "md17_splits": "md17",
    "load_trajectories": "nbody",
    "qm9": "qm9",
    "qm9_splits": "qm9",
}

__all__ = sorted(_WHERE)

__getattr__, __dir__ = lazy_attributes(__name__, _WHERE, __all__)
