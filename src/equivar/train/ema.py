"""Exponential moving average of model weights."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class ExponentialMovingAverage:
    r"""Shadow copy :math:`\bar\theta \leftarrow d\,\bar\theta + (1 - d)\,\theta` after each step.

    The decay warms up as :math:`\min(d, (1 + n) / (10 + n))` so early averages are not dominated
    by the random initialisation. Floating-point buffers are copied, not averaged.

    Args:
        model: the trained model.
        decay: long-run decay ``d`` (e.g. 0.99).

    Example:
        >>> ema = ExponentialMovingAverage(model, 0.99)  # doctest: +SKIP
        >>> ema.update(model)  # after optimizer.step()
        >>> with ema.swapped(model):  # evaluate with the averaged weights
        ...     metrics = evaluate(model, data)
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.num_updates = 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                self.shadow[key].mul_(d).add_(value.detach(), alpha=1 - d)
            else:
                self.shadow[key].copy_(value)

    @contextlib.contextmanager
    def swapped(self, model: nn.Module) -> Iterator[nn.Module]:
        """Temporarily load the averaged weights into ``model``."""
        backup = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.shadow)
        try:
            yield model
        finally:
            model.load_state_dict(backup)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
        self.shadow = {k: v.clone() for k, v in state["shadow"].items()}
