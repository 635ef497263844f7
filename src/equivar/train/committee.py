"""Committees: N independently trained members whose spread estimates the model's uncertainty.

Members share the data split (``data.seed``) and every other setting; member ``k`` trains with
``seed + k``, which changes its initial weights and the order of its batches. They are written to
``OUTPUT/member_k/`` (each a complete run: ``best.pt``, ``log.csv``, ...), and
``OUTPUT/committee.json`` lists them with their test metrics and those of the committee mean.
:class:`equivar.simulate.EquivarCalculator` takes ``OUTPUT`` and reports the mean with
``energy_std``/``forces_std``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from equivar.atomic import atomic_write_text

# the committee model and the member folders are read by simulation too: they live in models
from equivar.models.checkpoint import load_checkpoint
from equivar.models.committee import MEMBER, CommitteeModel, committee_checkpoints  # noqa: F401
from equivar.train.config import TrainConfig
from equivar.train.datasets import resolve_datasets
from equivar.train.device import precision
from equivar.train.evaluation import evaluate, metric_table
from equivar.train.runfiles import LAST
from equivar.train.trainer import train_one

if TYPE_CHECKING:
    from equivar.train.datasets import DataObject

log = logging.getLogger(__name__)

__all__ = ["CommitteeModel", "committee_checkpoints", "fit_committee", "member_configs"]


def member_configs(config: TrainConfig) -> list[TrainConfig]:
    """One config per member: output ``OUTPUT/member_k``, seed ``seed + k``, ``committee=1``."""
    if config.committee < 2:
        raise ValueError(f"a committee needs committee >= 2 members, got {config.committee}")
    return [
        dataclasses.replace(config, output=str(Path(config.output) / MEMBER.format(k)),
                            seed=config.seed + k, committee=1)
        for k in range(config.committee)
    ]


def fit_committee(
    config: TrainConfig,
    *,
    resume: bool = False,
    train: DataObject = None,
    valid: DataObject = None,
    test: DataObject = None,
) -> dict[str, Any]:
    """Train ``config.committee`` members one after another (see the module docstring).

    Args:
        config: the run; ``committee`` members are trained.
        resume: continue members that have a ``checkpoint_last.pt`` and start the others.
        train, valid, test: structures given as objects, passed to every member's
            :func:`equivar.train.fit` (same kinds and rules; default None: the config's files).

    Returns:
        ``{"output", "members": [fit results], "checkpoints", "test"}``, ``test`` being the
        metrics of the committee mean on the shared test set.

    Raises:
        ValueError: a member folder already holds a run and ``resume`` is False (nothing is
            trained then).
    """
    members = member_configs(config)
    if not resume:
        taken = [m.output for m in members if (Path(m.output) / LAST).exists()]
        if taken:
            raise ValueError(f"committee member folder(s) {taken} already hold a run; pass "
                             "resume=True (--resume) or choose another output")
    objects = {"train": train, "valid": valid, "test": test}
    results = []
    for k, member in enumerate(members):
        log.info("committee member %d/%d (seed %d) -> %s", k + 1, len(members), member.seed,
                 member.output)
        results.append(train_one(member, resume and (Path(member.output) / LAST).exists(),
                                 **objects))
    out = {"output": config.output, "members": results,
           "checkpoints": [r.get("checkpoint") for r in results]}
    if all(out["checkpoints"]):  # rank 0
        out["test"] = _committee_test(config, out["checkpoints"], objects)
        record = {"n_members": len(members), "seeds": [m.seed for m in members],
                  "checkpoints": [os.path.relpath(c, config.output) for c in out["checkpoints"]],
                  "member_test": [r.get("test") for r in results], "test": out["test"]}
        atomic_write_text(Path(config.output) / "committee.json", json.dumps(record, indent=2))
    return out


def _committee_test(
    config: TrainConfig, checkpoints: list[str], objects: dict[str, DataObject]
) -> dict[str, float]:
    """Metrics of the committee mean on the members' (shared) test set (``objects``: fit's
    train/valid/test arguments, from which the test set is made as in each member's run)."""
    dtype, _ = precision(config.precision, torch.device("cpu"))
    _, _, test = resolve_datasets(config, dtype, **objects)
    model = CommitteeModel([load_checkpoint(c) for c in checkpoints])
    metrics, _ = evaluate(model, test, batch_size=config.data.valid_batch_size)
    log.info("\ncommittee mean of %d members, test metrics:\n%s", len(checkpoints),
             metric_table(metrics))
    return metrics
