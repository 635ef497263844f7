"""Data-parallel training with ``torch.distributed`` (DDP), launched by ``torchrun``.

Every rank draws the same global batch order and takes an interleaved shard of each global batch;
each loss term is a sum over the rank's items divided by the *global* count, times the world size,
so DDP's gradient average equals the gradient of the single-process mean over the global batch.
One process and N processes with the same global batch therefore take the same steps.
"""

from __future__ import annotations

import torch
import torch.distributed as tdist
from torch import nn

# set-up, the rank's device and tear-down are shared with VMC's walkers: one copy, below both
from equivar.parallel import device_for_rank, setup, teardown  # noqa: F401 (re-exported)


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``DistributedDataParallel(model)`` when running distributed, else the model itself."""
    if not (tdist.is_available() and tdist.is_initialized()):
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def shard(indices: list[int], rank: int, world: int) -> list[int]:
    """This rank's items of a global batch (interleaved); never empty.

    Raises:
        ValueError: a global batch smaller than the number of processes.
    """
    if len(indices) < world:
        raise ValueError(f"a batch of {len(indices)} structures cannot feed {world} processes; "
                         "use data.batch_size >= the number of processes (and a training set "
                         "whose last batch is not smaller)")
    return indices[rank::world]


def global_counts(batch, weights, world: int) -> dict[str, float] | None:
    """Number of loss elements of each target over all ranks (None when not distributed)."""
    if world == 1:
        return None
    names = [n for n in weights if getattr(batch, n, None) is not None]
    local = torch.tensor([float(getattr(batch, n).numel()) for n in names], dtype=torch.float64)
    tdist.all_reduce(local)
    return dict(zip(names, local.tolist(), strict=True))


def broadcast_state(state: dict, rank: int, world: int) -> dict:
    """Rank 0's bookkeeping (best loss, early stopping) on every rank."""
    if world == 1:
        return state
    box = [state if rank == 0 else None]
    tdist.broadcast_object_list(box, src=0)
    return box[0]
