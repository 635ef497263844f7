"""The floating dtypes equivar computes in, by name: the one table behind every ``dtype=``
argument (``"float32"``/``"float64"`` or the torch dtypes themselves)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

__all__ = ["DTYPES", "default_dtype", "resolve_dtype"]

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


@contextlib.contextmanager
def default_dtype(dtype: Any) -> Iterator[None]:
    """Construct modules with torch's default dtype set to ``dtype`` (restored afterwards, also
    on error). e3nn bakes its Clebsch-Gordan constants and path weights in the default dtype
    when a module is built: built in float64 and cast down, a module is exact in either
    precision, whereas one built in float32 and cast up keeps ~1e-8 symmetry errors.

    Example:
        >>> with default_dtype("float64"):
        ...     layer = torch.nn.Linear(2, 2)
        >>> layer.weight.dtype
        torch.float64
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(resolve_dtype(dtype))
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
