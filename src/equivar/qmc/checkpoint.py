"""VMC checkpoints: plain data, written atomically, loaded with ``weights_only=True``.

A checkpoint is ``{"state_dict", "config", "versions", "run"}``: the wavefunction's parameters,
the options that rebuild it and the run (``config["model"]``, ``config["vmc"]``,
``config["system"]``), library versions, and the run state that makes a resumed run continue
exactly (iteration, walkers, step size, generator state, optimiser state, history). Nothing is
pickled: no modules, no classes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from equivar._version import versions
from equivar.atomic import atomic_save
from equivar.models.checkpoint import read_checkpoint

__all__ = ["load_checkpoint", "load_wavefunction", "save_checkpoint"]


def _to(value: Any, device: str | torch.device | None) -> Any:
    """Move the tensors of a nested record to ``device`` (read_checkpoint loads onto the CPU)."""
    if device is None or str(device) == "cpu":
        return value
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to(v, device) for v in value)
    return value


_KEYS = ("state_dict", "config", "versions", "run")


def save_checkpoint(path: str | os.PathLike, wavefunction: nn.Module, config: dict[str, Any],
                    run: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint to a temporary file in the same folder, then rename it over ``path``
    (atomic: a crash leaves the previous checkpoint intact).

    Args:
        path: destination (folders are created).
        wavefunction: the model (its ``state_dict`` is saved).
        config: plain data (``{"model": ..., "vmc": ..., "system": ...}``).
        run: plain data and tensors of the run state (default empty).

    Returns:
        the path written.
    """
    record = {"state_dict": wavefunction.state_dict(), "config": config,
              "versions": versions(), "run": run or {}}
    atomic_save(record, path)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device | None = "cpu"
                    ) -> dict[str, Any]:
    """Read a checkpoint (``torch.load(weights_only=True)``: tensors and plain data only).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an equivar VMC checkpoint.
    """
    record = read_checkpoint(path)  # missing, truncated and unsafe files get named errors
    record = {k: _to(v, map_location) for k, v in record.items()}
    if any(k not in record for k in _KEYS):
        raise ValueError(f"{path} is not an equivar VMC checkpoint (expected keys {_KEYS})")
    return record


def load_wavefunction(path: str | os.PathLike, map_location: str | torch.device | None = "cpu"
                      ) -> nn.Module:
    """Rebuild the wavefunction of a checkpoint through ``build("wavefunction", ...)``."""
    from equivar.models import build

    record = load_checkpoint(path, map_location)
    options = {k: v for k, v in record["config"]["model"].items() if k != "name"}
    model = build("wavefunction", **options)
    model.load_state_dict(record["state_dict"])
    return model.to(map_location) if map_location is not None else model
