"""Where and in what precision a run computes: ``device: auto|cpu|cuda[:k]`` and
``precision: float32|float64|tf32|bf16``."""

from __future__ import annotations

from contextlib import nullcontext

import torch

__all__ = ["precision", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    """``"auto"``: CUDA when available, else the CPU; a CUDA device without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


def precision(precision: str, device: torch.device):
    """``(dtype, autocast context)`` of a run's ``precision`` (tf32 also switches TF32 on)."""
    if precision == "tf32":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    dtype = torch.float64 if precision == "float64" else torch.float32
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    )
    return dtype, autocast
