"""Checkpoints are data: ``{state_dict, config, versions}`` (+ the training state for resume),
written atomically and loaded with ``torch.load(weights_only=True)``, never a pickled module.

The format lives in :mod:`equivar.models.checkpoint`, below the tasks, because simulation and
VMC read checkpoints too and may not import training; its names are re-exported here, so
``equivar.train.load_checkpoint`` and ``equivar.train.checkpoint.read_checkpoint`` keep working.
"""

from __future__ import annotations

from equivar._version import versions  # noqa: F401 (re-exported)
from equivar.atomic import atomic_save, atomic_write  # noqa: F401 (re-exported)
from equivar.models.checkpoint import (  # noqa: F401 (re-exported)
    checkpoint_label_keys,
    load_checkpoint,
    model_from_checkpoint_data,
    read_checkpoint,
    save_checkpoint,
)

__all__ = ["checkpoint_label_keys", "load_checkpoint", "model_from_checkpoint_data",
           "read_checkpoint", "save_checkpoint"]  # fmt: skip
