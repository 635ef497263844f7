"""Process groups for the tasks that run on several processes (training's DDP, VMC's walkers),
launched by ``torchrun``: set-up, the rank's device, and the two collectives they share.

One process (``WORLD_SIZE`` unset or 1) needs no process group: every function here is then
the identity, so single-process code paths run unchanged.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as tdist

__all__ = ["all_gather_cat", "all_reduce_sum", "device_for_rank", "is_distributed", "setup",
           "teardown"]  # fmt: skip


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


def is_distributed() -> bool:
    """Whether a process group with more than one process is running."""
    return tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1


def device_for_rank(device: torch.device) -> torch.device:
    """One GPU per local rank."""
    if device.type == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return device


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over all processes (a new tensor; ``t`` itself when not distributed)."""
    if not is_distributed():
        return t
    out = t.clone()
    tdist.all_reduce(out)
    return out


def all_gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Every process's ``t`` concatenated along dim 0 in rank order (``t`` when not
    distributed). The processes' first dimensions may differ; the others must agree.

    Shapes:
        t: [n_local, ...] -> [sum of n_local over ranks, ...]
    """
    if not is_distributed():
        return t
    world = tdist.get_world_size()
    size = torch.tensor([t.shape[0]], dtype=torch.long, device=t.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    tdist.all_gather(sizes, size)
    counts = [int(s.item()) for s in sizes]
    padded = torch.zeros((max(counts), *t.shape[1:]), dtype=t.dtype, device=t.device)
    padded[: t.shape[0]] = t
    parts = [torch.empty_like(padded) for _ in range(world)]
    tdist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:n] for p, n in zip(parts, counts, strict=True)])


def teardown(world: int) -> None:
    """Wait for every process, then close the group (no-op for one process)."""
    if world > 1 and tdist.is_initialized():
        tdist.barrier()
        tdist.destroy_process_group()
