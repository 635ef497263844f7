"""Atomic file replacement: the one place equivar writes a file that a reader may open at any
moment (checkpoints, caches, shards, compiled kernels, predictions).

The bytes go to a temporary file beside the destination, are flushed and fsync'ed, and the file
is renamed over the destination (``os.replace``, atomic on POSIX and Windows): a reader sees the
old file or the new one, never a partial one, whatever kills the writer; a failed write leaves
no temporary file behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["atomic_save", "atomic_write", "atomic_write_bytes", "atomic_write_text"]


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any], *,
                 mode: int | None = None) -> Path:  # fmt: skip
    """Call ``write(file)`` on a temporary file beside ``path``, fsync, rename it over ``path``.

    Args:
        path: destination (missing parent folders are created).
        write: writes the content to the open binary file it is given.
        mode: permission bits of the result (default: ``mkstemp``'s private 0o600; pass 0o644
            for a cache other users read).

    Returns:
        ``path`` as a ``Path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda fh: fh.write(data), mode=mode)


def atomic_write_text(path: str | os.PathLike, text: str, *, mode: int | None = None) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def atomic_save(payload: Any, path: str | os.PathLike) -> Path:
    """``torch.save(payload)`` to ``path`` atomically (see :func:`atomic_write`)."""
    import torch

    return atomic_write(path, lambda fh: torch.save(payload, fh))
