"""Checks of the numbers a simulation is run with (steps, time step, temperatures...)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["check_positive"]


def check_positive(name: str, value: Any, integer: bool = False, allow_zero: bool = False) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a finite number (an integer if
    ``integer``) > 0 (>= 0 with ``allow_zero``)."""
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    ok = isinstance(value, kinds) and not isinstance(value, bool) and np.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        want = "an integer" if integer else "a finite number"
        raise ValueError(f"{name} must be {want} {'>= 0' if allow_zero else '> 0'}, got {value!r}")
