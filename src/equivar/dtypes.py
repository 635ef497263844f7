"""The floating dtypes equivar computes in, by name: the one table behind every ``dtype=``
argument (``"float32"``/``"float64"`` or the torch dtypes themselves)."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["DTYPES", "resolve_dtype"]

#: name -> torch dtype
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_dtype(dtype: Any, *, none: Any = None) -> Any:
    """``torch.float32``/``torch.float64`` from a name or a dtype; None gives ``none``.

    Raises:
        ValueError: anything else (the message lists the accepted names).
    """
    if dtype is None:
        return none
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    raise ValueError(f"dtype must be 'float32' or 'float64' (or the torch dtype), got {dtype!r}")
