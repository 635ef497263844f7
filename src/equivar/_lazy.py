"""Lazy attribute loading for package ``__init__`` files (PEP 562), so imports stay cheap."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def lazy_attributes(
    package: str, where: Mapping[str, str], public: Iterable[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: name -> submodule it lives in, imported on
    first access and cached in the package's namespace.

    Example (in a package's ``__init__.py``)::

        _WHERE = {"fit": "loop"}
        __all__ = sorted(_WHERE)
        __getattr__, __dir__ = lazy_attributes(__name__, _WHERE, __all__)
    """
    public = sorted(set(public))

    def __getattr__(name: str) -> Any:
        if name in where:
            value = getattr(importlib.import_module(f"{package}.{where[name]}"), name)
            setattr(sys.modules[package], name, value)  # later lookups skip __getattr__
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(public))

    return __getattr__, __dir__
