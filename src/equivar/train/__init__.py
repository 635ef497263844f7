"""Training: ``fit(config)``, typed configs, losses and metrics, EMA, checkpoints.

Names are resolved lazily, so ``import equivar.train`` does no work.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "fit": "loop",
    "evaluate": "evaluation",
    "load_config": "config",
    "config_from_dict": "config",
    "TrainConfig": "config",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "ExponentialMovingAverage": "ema",
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
