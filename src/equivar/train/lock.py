"""One process at a time per output folder: a lock file taken before anything is read or written.

Two ``equivar train`` runs pointed at the same folder would interleave their ``log.csv`` and
overwrite each other's checkpoints. The first takes ``<output>/.equivar.lock`` (created with
``O_EXCL``, holding its pid, host and start time); a second is refused with a message naming the
holder. A lock whose process is gone (``kill -9``, a crash) is stale and taken over, so
``--resume`` after a kill just works.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["LOCK_NAME", "output_lock"]

LOCK_NAME = ".equivar.lock"


def _holder(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # being written this instant, or garbage: treated as held below


def _alive(holder: dict) -> bool:
    """Whether the lock's process still runs (on another host: assumed so)."""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, TypeError, ValueError):
        return True
    return True


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike, what: str = "run") -> Iterator[Path]:
    """Hold ``folder``'s lock for the ``with`` block (the folder is created if needed, and
    removed again if it was new and is left empty).

    Args:
        folder: the output folder.
        what: what the holder does, for the message (``"training run"``).

    Raises:
        ValueError: another live process holds the lock; the message names its pid, host and
            start time, and the file to delete if that process is known to be gone.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"output {str(folder)!r} is an existing file, not a folder; choose "
                         "another output")
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    for attempt in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            holder = _holder(path)
            if holder is None or _alive(holder) or attempt:
                who = (f"process {holder.get('pid')} on {holder.get('host')}, started "
                       f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(holder['started']))}"
                       if holder and "started" in holder else "another process")
                raise ValueError(f"{str(folder)!r} is in use by another {what} ({who}); wait "
                                 f"for it, choose another output, or delete {str(path)!r} if "
                                 "that process is gone") from None
            path.unlink(missing_ok=True)  # stale: its process is gone (kill -9, a crash)
    with os.fdopen(fd, "w") as fh:
        json.dump({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}, fh)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
        if created and not any(folder.iterdir()):  # a run refused before writing: no trace
            folder.rmdir()
