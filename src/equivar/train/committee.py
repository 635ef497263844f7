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
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from equivar.train.config import TrainConfig

if TYPE_CHECKING:
    from equivar.train.loop import DataObject

__all__ = ["CommitteeModel", "committee_checkpoints", "fit_committee", "member_configs"]

MEMBER = "member_{}"
_MEMBER_RE = re.compile(r"^member_(\d+)$")


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
    from equivar.train.loop import LAST, fit

    members = member_configs(config)
    if not resume:
        taken = [m.output for m in members if (Path(m.output) / LAST).exists()]
        if taken:
            raise ValueError(f"committee member folder(s) {taken} already hold a run; pass "
                             "resume=True (--resume) or choose another output")
    objects = {"train": train, "valid": valid, "test": test}
    results = []
    for k, member in enumerate(members):
        print(f"committee member {k + 1}/{len(members)} (seed {member.seed}) -> {member.output}")
        results.append(fit(member, resume=resume and (Path(member.output) / LAST).exists(),
                           **objects))
    out = {"output": config.output, "members": results,
           "checkpoints": [r.get("checkpoint") for r in results]}
    if all(out["checkpoints"]):  # rank 0
        out["test"] = _committee_test(config, out["checkpoints"], objects)
        record = {"n_members": len(members), "seeds": [m.seed for m in members],
                  "checkpoints": [os.path.relpath(c, config.output) for c in out["checkpoints"]],
                  "member_test": [r.get("test") for r in results], "test": out["test"]}
        (Path(config.output) / "committee.json").write_text(json.dumps(record, indent=2))
    return out


def _committee_test(
    config: TrainConfig, checkpoints: list[str], objects: dict[str, DataObject]
) -> dict[str, float]:
    """Metrics of the committee mean on the members' (shared) test set (``objects``: fit's
    train/valid/test arguments, from which the test set is made as in each member's run)."""
    from equivar.train.checkpoint import load_checkpoint
    from equivar.train.evaluation import evaluate, metric_table
    from equivar.train.loop import _datasets, _precision

    dtype, _ = _precision(config.precision, torch.device("cpu"))
    _, _, test = _datasets(config, dtype, **objects)
    model = CommitteeModel([load_checkpoint(c) for c in checkpoints])
    metrics, _ = evaluate(model, test, batch_size=config.data.valid_batch_size)
    print(f"\ncommittee mean of {len(checkpoints)} members, test metrics:\n"
          f"{metric_table(metrics)}")
    return metrics


class CommitteeModel(nn.Module):
    """The member mean of every output (``model(batch) -> dict``), for evaluation.

    Outputs present in every member are averaged; ``<name>_std`` (over members, ``ddof=0``) is
    added for each. Members must take the same batches (same cutoff).

    Shapes:
        as the members' outputs; ``<name>_std`` has the shape of ``<name>``.
    """

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("a committee needs at least one member")
        self.members = nn.ModuleList(members)
        self.species = getattr(members[0], "species", None)
        self.cutoff = getattr(members[0], "cutoff", None)

    def forward(self, data, **kwargs: Any) -> dict[str, torch.Tensor]:
        outs = [m(data, **kwargs) for m in self.members]
        names = [k for k in outs[0] if all(k in o for o in outs)]
        result = {}
        for name in names:
            stacked = torch.stack([o[name] for o in outs])  # [n_members, ...]
            result[name] = stacked.mean(0)
            result[f"{name}_std"] = stacked.std(0, unbiased=False)
        return result


def committee_checkpoints(path: str | os.PathLike) -> list[Path]:
    """The member checkpoints of a committee folder, in member order.

    ``path`` may be a committee output (``member_k/best.pt``), a single run's folder
    (``best.pt``) or a checkpoint file (returned as is).

    Raises:
        FileNotFoundError: no such path.
        ValueError: a folder with neither, or a member without ``best.pt`` (unfinished).
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{str(path)!r} does not exist")
    members = sorted(
        (int(m.group(1)), p) for p in path.iterdir()
        if p.is_dir() and (m := _MEMBER_RE.match(p.name))
    )
    if members:
        missing = [str(p) for _, p in members if not (p / "best.pt").is_file()]
        if missing:
            raise ValueError(f"committee member(s) {missing} have no best.pt (unfinished?)")
        return [p / "best.pt" for _, p in members]
    if (path / "best.pt").is_file():
        return [path / "best.pt"]
    raise ValueError(f"folder {str(path)!r} holds neither a committee (member_k/best.pt) nor a "
                     "run (best.pt)")
