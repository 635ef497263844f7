"""The files of a run folder: their names, and ``log.csv`` kept equal to an uninterrupted run's
across kills and resumes."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from equivar.atomic import atomic_write_text

__all__ = ["BEST", "CONFIG", "LAST", "LOG", "append_csv", "drop_rows_after"]

#: resumable checkpoint, best EMA weights, the log, the config as run
LAST, BEST, LOG, CONFIG = "checkpoint_last.pt", "best.pt", "log.csv", "config.yaml"


def drop_rows_after(path: Path, state: dict) -> None:
    """On resume: remove the log rows written after the checkpoint being resumed (a kill between
    a validation's row and the checkpoint that follows it), so that the run's rows, once it has
    finished, equal those of a run never interrupted. A row belongs to the checkpoint when its
    step is earlier, or equal and validated (``validated_step``)."""
    if not path.exists():
        return
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows or "step" not in rows[0]:
        return
    at = rows[0].index("step")

    def kept(row: list[str]) -> bool:
        step = int(row[at])
        return step < state["step"] or (step == state["step"]
                                        and state["validated_step"] == state["step"])

    keep = [rows[0], *(r for r in rows[1:] if len(r) > at and kept(r))]
    if len(keep) != len(rows):
        atomic_write_text(path, _csv_text(keep))


def _csv_text(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


def append_csv(path: Path, record: dict) -> None:
    new = not path.exists()
    if not new:  # keep columns stable across resumes: write in the header's order
        with open(path) as fh:
            header = next(csv.reader(fh), None)
        new = header is None
    with open(path, "a", newline="") as fh:
        if new:
            header = list(record)
            csv.writer(fh).writerow(header)
        csv.writer(fh).writerow([record.get(k, "") for k in header])
