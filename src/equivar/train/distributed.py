"""Data-parallel training with ``torch.distributed`` (DDP), launched by ``torchrun``.

Every rank draws the same global batch order and takes an interleaved shard of each global batch;
each loss term is a sum over the rank's items divided by the *global* count, times the world size,
so DDP's gradient average equals the gradient of the single-process mean over the global batch.
One process and N processes with the same global batch therefore take the same steps.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as tdist
from torch import nn


def setup() -> tuple[int, int]:
    """``(rank, world_size)``; initialises the process group under torchrun (gloo on CPU, NCCL on
    GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not tdist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        tdist.init_process_group(backend=backend)
    return tdist.get_rank(), tdist.get_world_size()


def device_for_rank(device: torch.device) -> torch.device:
    """One GPU per local rank."""
    if device.type == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return device


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


def teardown(world: int) -> None:
    if world > 1 and tdist.is_initialized():
        tdist.barrier()
        tdist.destroy_process_group()
