"""``fit(config)``: the importable training entry point (the CLI's ``equivar train`` calls only
this): one run (:func:`equivar.train.trainer.train_one`) or a committee of them
(:func:`equivar.train.committee.fit_committee`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from equivar.train.config import TrainConfig, config_from_dict, load_config
from equivar.train.runfiles import BEST, LAST  # noqa: F401 (re-exported)
from equivar.train.trainer import train_one

if TYPE_CHECKING:
    from equivar.train.datasets import DataObject

__all__ = ["fit"]


def resolve_config(config, *, require_train: bool = True) -> TrainConfig:
    """A :class:`TrainConfig` from itself, a mapping or a YAML path."""
    if isinstance(config, TrainConfig):
        return config
    if isinstance(config, Mapping):
        return config_from_dict(dict(config), require_train=require_train)
    return load_config(config, require_train=require_train)


def fit(
    config,
    *,
    resume: bool = False,
    train: DataObject = None,
    valid: DataObject = None,
    test: DataObject = None,
) -> dict[str, Any]:
    """Train a model as ``config`` says; return validation/test metrics and output paths.

    Writes to ``config.output``: ``checkpoint_last.pt`` (resumable, atomic, after every epoch
    and every ``checkpoint_every`` steps), ``best.pt`` (EMA weights with the lowest validation
    loss; load with :func:`equivar.train.load_checkpoint`; it also records the run's config,
    data files and split sizes, so that ``equivar evaluate`` scores the held-out test frames),
    ``log.csv``, ``config.yaml``, ``test_predictions.npz``, ``learning_curves.png``,
    ``parity.png``. Checkpoints, ``config.yaml`` and the predictions are written atomically.

    The structures come from the config's files (``data.train``, ``data.valid``,
    ``data.test``) or from objects passed here, each on its own: an object replaces its file,
    and whichever of valid/test is given by neither is held out of the training set
    (``data.valid_fraction``, ``data.test_fraction``, split with ``data.seed``). Objects are
    recorded in ``config.yaml`` by a description, e.g. ``"<in-memory AtomsDataset, 30
    structures>"``; a resumed run needs the same objects again (their sizes are checked).

    Training stops after ``epochs``, on early stopping (``patience``), or after the optimiser
    step that spends ``time_budget`` minutes (saved with the checkpoint, so ``resume``
    continues against the same budget). It ends the same way in each case: the EMA weights
    are validated, ``best.pt`` and ``checkpoint_last.pt`` written, the best model tested.

    Progress (a line per validation, why training stopped, the test metrics) is logged to the
    ``equivar`` logger at INFO - ``logging.basicConfig(level=logging.INFO)`` shows it, and
    ``equivar train`` prints it; ``progress: true`` adds a progress bar.

    Fine-tuning (``init_from``, ``freeze``, ``reset``) is described in
    :mod:`equivar.train.finetune`; ``committee: N`` trains N members instead (returning
    :func:`equivar.train.committee.fit_committee`'s result; the objects go to every member).

    Args:
        config: a :class:`TrainConfig`, a mapping, or a YAML path. ``data.train`` may be empty
            when ``train`` is given.
        resume: continue from ``checkpoint_last.pt`` in the output folder. A run killed at any
            moment (even ``kill -9``) resumes to the same final state as an uninterrupted run
            (given the same data objects, if any).
        train: training structures instead of ``data.train``: an
            :class:`~equivar.data.AtomsDataset`, a :class:`~equivar.data.ShardedDataset`, or a
            list of ``ase.Atoms`` (with their targets; converted with
            :class:`~equivar.data.AtomsDataset` at ``data.cutoff``). Datasets must have been
            built at ``data.cutoff``; ones in another floating dtype than ``precision`` are
            rebuilt in it. ``data.max_structures`` applies to it. Default None: the file.
        valid: validation structures instead of ``data.valid`` (same kinds). Default None.
        test: test structures instead of ``data.test`` (same kinds). Default None.

    Returns:
        On rank 0: ``{"output": str, "best_epoch": int (1-based), "stopped": "epochs" |
        "early_stopping" | "time_budget", "steps": int (optimiser steps in all),
        "elapsed_s": float (training time, resumed segments included), "test": {metric:
        float}, "checkpoint": str (best.pt)}``; on other ranks without ``test`` and
        ``checkpoint``.

    Raises:
        TypeError: ``train``/``valid``/``test`` of another kind (the message names which).
        ValueError: bad config; a dataset built at another cutoff; an output folder that
            already holds a run and no ``resume`` (work is never overwritten); a resume with
            data of other sizes than the run's.

    Example:
        >>> from equivar.data import read
        >>> data = read("datasets/ethanol_xtb.extxyz", cutoff=4.0)  # doctest: +SKIP
        >>> result = fit({"data": {"cutoff": 4.0}, "epochs": 50, "time_budget": 10,
        ...               "output": "runs/ethanol"}, train=data)  # doctest: +SKIP
        >>> result["stopped"], result["test"]["forces_mae"]  # doctest: +SKIP
        ('time_budget', 0.071...)
    """
    objects = {"train": train, "valid": valid, "test": test}
    config = resolve_config(config, require_train=train is None)
    if config.committee > 1:
        from equivar.train.committee import fit_committee

        return fit_committee(config, resume=resume, **objects)
    return train_one(config, resume, **objects)
