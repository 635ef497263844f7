"""Which structures a run trains, validates and tests on, and which of a file's frames it held out.

:func:`held_out` is the one place that splits a training set: :func:`equivar.train.fit` calls it,
and so does :func:`frames_to_score` (``equivar evaluate``), so the test frames it scores are
exactly the ones training never saw.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from equivar.train.config import DataConfig

__all__ = ["ScoredFrames", "frames_to_score", "held_out", "run_data_files"]

#: ``data.train`` etc. of a recorded config whose structures came from an object start with this.
OBJECT_MARK = "<"


def held_out(train, data: DataConfig, *, valid=None, test=None) -> tuple:
    """``(train, valid, test)``: whichever of ``valid``/``test`` is None is held out of ``train``
    as ``data.valid_fraction`` / ``data.test_fraction`` of it (rounded), split with
    ``data.seed``; the rest stays ``train``.

    The split depends on the seed and ``len(train)`` only (:meth:`SplitMixin.split`), so the same
    file gives the same frames in every run, on ``--resume`` and in ``equivar evaluate``.

    Args:
        train: a dataset with ``split`` (:class:`~equivar.data.AtomsDataset`,
            :class:`~equivar.data.ShardedDataset`), after ``data.max_structures``.
        data: the run's data config (fractions and seed).
        valid, test: given datasets (kept as they are) or None (held out of ``train``).

    Returns:
        ``(train, valid, test)`` datasets.

    Raises:
        ValueError: ``train`` is too small for the held-out fractions.
    """
    held = [f for f, given in ((data.valid_fraction, valid), (data.test_fraction, test))
            if given is None]
    if held:
        n = len(train)
        sizes = [int(round(f * n)) for f in held]
        if any(s < 1 for s in sizes) or n - sum(sizes) < 1:
            raise ValueError(f"{n} structures cannot be split into train and held-out fractions "
                             f"{held}; give data.valid/data.test files or more data")
        parts = train.split([n - sum(sizes), *sizes], seed=data.seed)
        train, rest = parts[0], list(parts[1:])
        valid = rest.pop(0) if valid is None else valid
        test = rest.pop(0) if test is None else test
    return train, valid, test


def run_data_files(data: DataConfig, given: dict[str, Any]) -> dict[str, str]:
    """Absolute paths of the files a run read (``{"train": ..., "valid": ..., "test": ...}``,
    the ones set and not replaced by an object), recorded in ``best.pt`` so that
    ``equivar evaluate`` recognises them from any working directory."""
    return {name: str(Path(getattr(data, name)).resolve()) for name in ("train", "valid", "test")
            if getattr(data, name) and given.get(name) is None
            and not getattr(data, name).startswith(OBJECT_MARK)}


@dataclass
class ScoredFrames:
    """What :func:`frames_to_score` chose: ``dataset`` (the frames to score) and ``description``
    (one line saying which frames and why)."""

    dataset: Any
    description: str


def _same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def frames_to_score(checkpoint: dict[str, Any], path: str | os.PathLike, dataset, *,
                    all_frames: bool = False) -> ScoredFrames:
    """The frames of ``dataset`` (read from ``path``) that evaluating ``checkpoint`` should score.

    When ``path`` is the file the checkpoint's run trained on and the run held its test set out
    of it, only those test frames (the same ones: :func:`held_out` with the run's recorded
    fractions, seed and ``max_structures``); with ``all_frames``, or for any other file, every
    frame. The description says which, e.g. ``"test split: 20 of 200 frames, the ones training
    held out"``.

    Args:
        checkpoint: the checkpoint's data (:func:`~equivar.train.checkpoint.read_checkpoint`);
            ``fit`` records its config (``train_config``), data files (``data_files``) and
            split sizes (``data_sizes``) there. Checkpoints without them score every frame.
        path: the file ``dataset`` was read from (every frame, in order).
        dataset: its structures, with ``subset``/``split``.
        all_frames: score every frame even of the training file.

    Returns:
        A :class:`ScoredFrames`.
    """
    state = checkpoint.get("train_state") or {}
    run = checkpoint.get("train_config") or state.get("train_config")
    n = len(dataset)
    every = f"all {n} frames"
    if not run:
        return ScoredFrames(dataset, f"{every} (the checkpoint records no training run)")
    known = {f.name for f in dataclasses.fields(DataConfig)}  # tolerate other versions' keys
    data = DataConfig(**{k: v for k, v in (run.get("data") or {}).items() if k in known})
    files = checkpoint.get("data_files") or {
        name: getattr(data, name) for name in ("train", "valid", "test")
        if getattr(data, name) and not getattr(data, name).startswith(OBJECT_MARK)}
    role = next((name for name in ("train", "valid", "test")
                 if name in files and _same_file(path, files[name])), None)
    if role in ("valid", "test"):
        return ScoredFrames(dataset, f"{every} (the run's data.{role} file: none trained on)")
    if role is None:
        trained = files.get("train") or data.train or "unrecorded"
        return ScoredFrames(dataset, f"{every} (not the training file, {trained})")
    sizes = checkpoint.get("data_sizes") or state.get("data_sizes")
    if data.test:
        return ScoredFrames(dataset, f"{every} of the training file, trained on; the run's test "
                            f"frames are data.test {files.get('test', data.test)}: evaluate that")
    if all_frames:
        trained = f"{sizes['train']} of them" if sizes else "some"
        return ScoredFrames(dataset, f"{every} (--all) of the training file, {trained} trained on")
    pool = dataset
    if data.max_structures and data.max_structures < n:
        pool = dataset.subset(range(data.max_structures))  # as fit reads it: index=":N"
    # a data.valid file was not split off: stand in for it so that only the test part is held
    _, _, test = held_out(pool, data, valid=[] if data.valid else None)
    if sizes and (sizes["test"] != len(test) or len(pool) != sizes["train"] + sizes["test"] + (
            0 if data.valid else sizes["valid"])):
        raise ValueError(
            f"{path} has {n} frames now, which do not split into the run's sizes {sizes}: the "
            "file changed since training, so its test frames are unknown (pass --all to score "
            "every frame)")
    first = f"the first {len(pool)} of {n}" if len(pool) < n else f"{n}"
    return ScoredFrames(test, f"test split: {len(test)} of {first} frames, the ones training "
                        "held out (--all scores every frame)")
