"""``assert_group_equivariant``: check ``fn(g.x) == g.fn(x)`` for every element of a finite group.

Finite groups are small, so nothing is sampled: every element is checked, and the transformed
inputs go through ``fn`` in one batched call (the group axis folded into the batch axis).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from equivar.testing.measurement import (
    EQUIVARIANCE_TOLERANCES,
    SymmetryAssertionError,
    default_tolerances,
    relative_error,
)

__all__ = ["assert_group_equivariant"]


def assert_group_equivariant(
    fn: Callable[[Tensor], Tensor],
    group,
    x: Tensor,
    *,
    in_action: Any = None,
    out_action: Any = None,
    rtol: float | None = None,
    atol: float | None = None,
    batched: bool = True,
) -> dict[str, Any]:
    """Assert ``fn(g.x) == g.fn(x)`` for **every** element ``g`` of a finite group.

    How the group acts on inputs and outputs: ``in_action`` / ``out_action`` when given (an
    :class:`~equivar.symmetry.Action` or a name such as ``"points"``, ``"image"``,
    ``"regular"``, ``"trivial"``, ``"0e+1o"``), else ``fn.input_action`` / ``fn.output_action``
    when ``fn`` declares them (lifted modules do), else the group's natural action on point
    clouds for inputs and the input action for outputs. ``out_action="trivial"`` checks
    invariance.

    The error for one element is ``max|fn(g.x) - g.fn(x)| / max(max|g.fn(x)|, atol / rtol)``;
    the check passes when it is ``<= rtol`` for every element. Gradients stay enabled (``fn`` may
    differentiate inside); outputs are detached. Put modules in ``eval()`` mode first.

    Args:
        fn: ``[batch, ...] -> [batch, ...]``.
        group: a :class:`~equivar.symmetry.FiniteGroup`.
        x: a batched input ``[batch, ...]``.
        in_action: action on the input (see above).
        out_action: action on the output (see above).
        rtol: relative tolerance; default by the output's dtype: float64 ``1e-10``, float32
            ``1e-5``.
        atol: absolute floor for outputs that are ~0; default float64 ``1e-12``, float32
            ``1e-6``.
        batched: evaluate all ``n_group`` transformed inputs in one call (default); False calls
            ``fn`` once per element (for functions that cannot take a larger batch).

    Returns:
        ``{"max_error": float, "errors": [float per element], "worst_element": int,
        "n_group": int}``.

    Raises:
        SymmetryAssertionError: (an ``AssertionError``) naming every failing element (e.g.
            ``"7: rotation 90 deg about [1, 0, 0]"``), its error and the tolerance.
        TypeError, ValueError: the actions do not fit ``x`` or ``fn(x)`` (wrong shapes).

    Shapes:
        ``x``: ``[batch, ...]``; ``fn(x)``: ``[batch, ...]``.

    Example:
        >>> import torch
        >>> from equivar.symmetry import octahedral
        >>> from equivar.testing import assert_group_equivariant
        >>> norms = lambda pos: pos.norm(dim=-1)  # [batch, n] invariant of points [batch, n, 3]
        >>> x = torch.randn(2, 5, 3, dtype=torch.float64)
        >>> assert_group_equivariant(norms, octahedral(), x, out_action="trivial")["n_group"]
        24
    """
    from equivar.symmetry.actions import as_action
    from equivar.symmetry.groups import FiniteGroup

    if not isinstance(group, FiniteGroup):
        raise TypeError(f"assert_group_equivariant: group must be a FiniteGroup, got "
                        f"{type(group).__name__}")
    if not isinstance(x, Tensor) or x.dim() < 1:
        raise TypeError("assert_group_equivariant: x must be a batched tensor [batch, ...]")
    act_in = as_action(in_action if in_action is not None else getattr(fn, "input_action", None),
                       group)
    x = x.detach()
    with torch.enable_grad():
        reference = _as_tensor(fn(x), "fn(x)").detach()  # [batch, ...]
    if out_action is None:
        out_action = getattr(fn, "output_action", None) or act_in
    act_out = as_action(out_action, group)
    act_out.check(reference)

    n, batch = len(group), x.shape[0]
    moved = act_in.orbit(x)  # [batch, n_group, ...]: g.x
    with torch.enable_grad():
        if batched:
            actual = _as_tensor(fn(moved.reshape(batch * n, *x.shape[1:])), "fn(g.x)").detach()
            if actual.shape[0] != batch * n:
                raise ValueError(f"assert_group_equivariant: fn returned {actual.shape[0]} "
                                 f"samples for {batch * n} inputs; use batched=False")
            actual = actual.reshape(batch, n, *actual.shape[1:])
        else:
            actual = torch.stack([_as_tensor(fn(moved[:, g]), "fn(g.x)").detach()
                                  for g in range(n)], dim=1)
    expected = act_out.orbit(reference)  # [batch, n_group, ...]: g.fn(x)
    if actual.shape != expected.shape:
        raise ValueError(f"assert_group_equivariant: fn(g.x) has shape "
                         f"{list(actual.shape[2:])} per sample, fn(x) {list(reference.shape[1:])}")

    d_rtol, d_atol = default_tolerances(reference.dtype, EQUIVARIANCE_TOLERANCES,
                                         "assert_group_equivariant")
    rtol = d_rtol if rtol is None else float(rtol)
    atol = d_atol if atol is None else float(atol)
    errors, details = [], []
    for g in range(n):
        err, max_diff, scale = relative_error(actual[:, g], expected[:, g], atol / rtol)
        errors.append(err)
        details.append((max_diff, scale))
    failures = [(group.name, group.describe(g), errors[g], rtol) for g in range(n)
                if not errors[g] <= rtol]
    worst = max(range(n), key=lambda g: errors[g] if errors[g] == errors[g] else float("inf"))
    result = {"max_error": errors[worst], "errors": errors, "worst_element": worst, "n_group": n}
    if failures:
        lines = [f"assert_group_equivariant: {len(failures)} of {n} elements of {group.name} break "
                 f"equivariance (input {act_in!r}, output {act_out!r}, {reference.dtype}, "
                 f"rtol={rtol:g}, atol={atol:g}):"]
        for _, where, err, tol in failures[:20]:
            g = int(where.split(":")[0])
            lines.append(f"  element {where}: error {err:.3g} > rtol {tol:.3g} "
                         f"(max|diff| {details[g][0]:.3g}, max|reference| {details[g][1]:.3g})")
        if len(failures) > 20:
            lines.append(f"  ... and {len(failures) - 20} more")
        raise SymmetryAssertionError("\n".join(lines), result, failures)
    return result


def _as_tensor(y: Any, what: str) -> Tensor:
    if not isinstance(y, Tensor):
        raise TypeError(f"assert_group_equivariant: {what} must be a Tensor, got "
                        f"{type(y).__name__}")
    return y
