"""Orbits folded into the batch axis: the shared mechanics of the global and layer-wise lifts.

A lift evaluates a module on every transformed input ``g^-1 x`` in one call, by folding the
group axis into the batch axis (``[batch, n_group, ...] -> [batch * n_group, ...]``, sample
major) and unfolding the result. :class:`~equivar.symmetry.Equivarify`,
:class:`~equivar.symmetry.LayerwiseEquivarify` and
:class:`~equivar.symmetry.FrameAveraging` all fold their inputs with these helpers, so they live
here, below all three.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from equivar.symmetry.base_action import Action

__all__ = ["POOLS", "check_folded", "fold_args", "orbit_folded", "reduce_group_axis"]

#: the reductions over a group axis (``pool=`` of the lifts)
POOLS = ("mean", "max", "sum")


def fold_args(args: tuple, kwargs: dict, batch: int, n_group: int) -> tuple[tuple, dict]:
    """Repeat every tensor argument with leading dimension ``batch`` ``n_group`` times along
    dim 0 (sample-major, matching a folded ``[batch * n_group, ...]`` input); other arguments
    pass through unchanged. These are the G-invariant inputs of a lifted module.

    Args:
        args: positional arguments.
        kwargs: keyword arguments.
        batch: the batch size of the acted input.
        n_group: the number of copies (group elements or frames).

    Returns:
        ``(args, kwargs)`` with every ``[batch, ...]`` tensor now ``[batch * n_group, ...]``.

    Example:
        >>> import torch
        >>> (z,), _ = fold_args((torch.tensor([1, 2]),), {}, batch=2, n_group=3)
        >>> z.tolist()
        [1, 1, 1, 2, 2, 2]
    """

    def fold(v: Any) -> Any:
        if isinstance(v, Tensor) and v.dim() >= 1 and v.shape[0] == batch:
            return v.repeat_interleave(n_group, dim=0)  # [batch * n_group, ...]
        return v

    return tuple(fold(a) for a in args), {k: fold(v) for k, v in kwargs.items()}


def orbit_folded(action: Action, x: Tensor) -> Tensor:
    """``g^-1 x`` for every element, folded: row ``b * n_group + g`` holds ``g^-1 x[b]`` (the
    inputs of the lift).

    Shapes:
        ``x``: ``[batch, ...]``; returns ``[batch * n_group, ...]``.
    """
    inputs = action.orbit(x, inverse=True)  # [batch, n_group, ...]
    return inputs.reshape(x.shape[0] * len(action.group), *x.shape[1:])


def check_folded(y: Any, batch: int, n_group: int, what: str) -> Tensor:
    """Check that a module called on ``[batch * n_group, ...]`` returned ``[batch * n_group, ...]``
    so that the group axis can be unfolded; raise naming the problem otherwise.

    Args:
        y: what the module returned.
        batch: the batch size of the acted input.
        n_group: the group order.
        what: the module, for the message (``"layer 2"``).

    Returns:
        ``y``, checked.

    Raises:
        TypeError: ``y`` is not a tensor.
        ValueError: its leading dimension is not ``batch * n_group``.
    """
    if not isinstance(y, Tensor):
        raise TypeError(f"{what} must return a Tensor to be lifted, got {type(y).__name__}")
    if y.dim() < 1 or y.shape[0] != batch * n_group:
        raise ValueError(
            f"{what} returned shape {list(y.shape)}, which cannot take a group axis: the lift "
            f"calls it on batch * n_group = {batch} * {n_group} = {batch * n_group} samples "
            f"(the group axis folded into the batch axis) and needs that many back, "
            f"[batch * n_group, ...]; make it map [batch, ...] to [batch, ...] (no reduction "
            f"over the batch axis)")
    return y


def reduce_group_axis(y: Tensor, pool: str) -> Tensor:
    """Pool over the group axis: ``"mean"``, ``"max"`` or ``"sum"`` (see :data:`POOLS`).

    Shapes:
        ``y``: ``[batch, n_group, ...]``; returns ``[batch, ...]``.
    """
    if pool == "mean":
        return y.mean(dim=1)
    if pool == "sum":
        return y.sum(dim=1)
    return y.amax(dim=1)
