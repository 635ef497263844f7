"""The learning-rate schedule and the order of the batches, both functions of saved state only,
so that a resumed run takes exactly the steps of an uninterrupted one."""

from __future__ import annotations

import math

import torch

__all__ = ["LearningRate", "epoch_order"]


class LearningRate:
    """Linear warm-up, then constant, cosine decay, or halving on a validation plateau."""

    def __init__(self, config, total_steps: int) -> None:
        self.c, self.total = config, max(1, total_steps)
        self.plateau_scale, self.best, self.bad = 1.0, math.inf, 0

    def at(self, step: int) -> float:
        c = self.c
        warm = min(1.0, (step + 1) / c.warmup_steps) if c.warmup_steps else 1.0
        if c.schedule == "cosine":
            frac = min(1.0, step / self.total)
            lr = c.min_lr + 0.5 * (c.lr - c.min_lr) * (1 + math.cos(math.pi * frac))
        else:
            lr = max(c.min_lr, c.lr * self.plateau_scale)
        return lr * warm

    def validation(self, loss: float) -> None:
        if self.c.schedule != "plateau":
            return
        if loss < self.best * (1 - 1e-4):
            self.best, self.bad = loss, 0
        else:
            self.bad += 1
            if self.bad > self.c.plateau_patience:
                self.plateau_scale *= self.c.plateau_factor
                self.bad = 0

    def state_dict(self) -> dict:
        return {"plateau_scale": self.plateau_scale, "best": self.best, "bad": self.bad}

    def load_state_dict(self, s: dict) -> None:
        self.plateau_scale, self.best, self.bad = s["plateau_scale"], s["best"], s["bad"]


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The shuffled order of one epoch, a function of (seed, epoch) only: a resumed run sees
    exactly the batches the uninterrupted one would have."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()
