"""Simulation with learned models: an ASE calculator, MD drivers, and N-body rollouts.

Names are resolved lazily, so ``import equivar.simulate`` does no work.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "EquivarCalculator": "calculator",
    "run_md": "md",
    "rollout": "rollout",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
