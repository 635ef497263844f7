"""A committee's members as one model, and where a committee's members are on disk.

A committee is N independently trained potentials whose spread estimates the model's
uncertainty (:func:`equivar.train.committee.fit_committee` trains one into ``OUTPUT/member_k/``).
Evaluation and simulation both read committees, so the model and the folder layout live here,
below the tasks; :mod:`equivar.train.committee` re-exports them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["MEMBER", "MEMBER_PATTERN", "CommitteeModel", "committee_checkpoints"]

#: folder of member ``k`` inside a committee's output (``MEMBER.format(k)``)
MEMBER = "member_{}"
#: matches a member folder's name; group 1 is ``k``
MEMBER_PATTERN = re.compile(r"^member_(\d+)$")


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
        if p.is_dir() and (m := MEMBER_PATTERN.match(p.name))
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
