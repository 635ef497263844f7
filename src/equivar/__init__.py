"""equivar: symmetry-aware neural networks for molecules and point clouds.

Submodules load on first use (``import equivar`` imports neither torch nor e3nn):
``equivar.data``, ``equivar.nn``, ``equivar.heads``, ``equivar.models``, ``equivar.train``,
``equivar.simulate``, ``equivar.symmetry``, ``equivar.qmc``, ``equivar.testing``.
"""

from __future__ import annotations

import importlib
from typing import Any

from equivar._version import __version__

_SUBMODULES = (
    "data", "nn", "heads", "models", "testing", "keys", "train", "simulate", "symmetry", "qmc",
)  # fmt: skip

__all__ = ["__version__", "build", *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"equivar.{name}")
    if name == "build":
        return importlib.import_module("equivar.models").build
    raise AttributeError(f"module 'equivar' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
