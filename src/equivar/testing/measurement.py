"""How the symmetry checks measure: relative errors, default tolerances, calling a model on a
private copy of a batch, and the error the assertions raise.

Every check of :mod:`equivar.testing` (equivariance of graph models and of functions of a finite
group, conservative forces, antisymmetric wavefunctions) compares two tensors the same way, with
:func:`relative_error`; the measurements return those numbers and the assertions compare them
with a tolerance from :func:`default_tolerances`, raising :class:`SymmetryAssertionError`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

__all__ = [
    "EQUIVARIANCE_TOLERANCES",
    "SymmetryAssertionError",
    "default_tolerances",
    "detached",
    "evaluate_outputs",
    "relative_error",
]

#: Default (rtol, atol) by dtype. ``atol`` is in the output's own units and only matters for
#: outputs that are ~0 (forces at equilibrium, the dipole of a symmetric molecule).
EQUIVARIANCE_TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-10, 1e-12),
    torch.float32: (1e-5, 1e-6),
    torch.float16: (1e-2, 1e-3),
    torch.bfloat16: (5e-2, 1e-2),
}


class SymmetryAssertionError(AssertionError):
    """An ``AssertionError`` that also carries the measured errors.

    Attributes:
        errors: every measured error, as returned on success.
        failures: ``(output_or_check, transform_or_None, error, tolerance)`` for each failure.
    """

    def __init__(self, message: str, errors: dict, failures: list[tuple]) -> None:
        super().__init__(message)
        self.errors = errors
        self.failures = failures


def default_tolerances(
    dtype: torch.dtype, table: Mapping[torch.dtype, tuple[float, float]], what: str
) -> tuple[float, float]:
    """``(rtol, atol)`` for ``dtype`` from ``table``.

    Args:
        dtype: the dtype of the compared values (positions, outputs).
        table: ``{dtype: (rtol, atol)}``, e.g. :data:`EQUIVARIANCE_TOLERANCES`.
        what: the calling check, for the message.

    Raises:
        TypeError: ``table`` has no entry for ``dtype``.
    """
    if dtype not in table:
        raise TypeError(f"{what}: positions of dtype {dtype} are not supported here "
                        f"(defaults exist for {', '.join(sorted(map(str, table)))})")
    return table[dtype]


def relative_error(actual: Tensor, expected: Tensor, floor: float = 0.0) -> tuple:
    """``max|actual - expected| / max(max|expected|, floor)``, in float64.

    A check with tolerances ``(rtol, atol)`` uses ``floor = atol / rtol`` and passes iff the
    error is ``<= rtol``, i.e. iff ``max|diff| <= max(rtol * max|expected|, atol)``. Entries
    that are equal (including matching infinities) or both NaN count as equal; the scale is
    taken over the finite entries of ``expected``.

    Args:
        actual: any shape.
        expected: the shape of ``actual``.
        floor: lower bound on the scale, in the values' units (default 0: purely relative).

    Returns:
        ``(error, max_diff, scale)`` as Python floats.

    Example:
        >>> import torch
        >>> relative_error(torch.tensor([1.0, 2.1]), torch.tensor([1.0, 2.0]))[0] < 0.06
        True
    """
    a = actual.detach().to(torch.float64)
    e = expected.detach().to(torch.float64)
    same = (a == e) | (torch.isnan(a) & torch.isnan(e))
    diff = torch.where(same, torch.zeros_like(a), a - e).abs()
    max_diff = diff.max().item() if diff.numel() else 0.0
    finite = e[torch.isfinite(e)]
    scale = finite.abs().max().item() if finite.numel() else 0.0
    err = max_diff / max(scale, floor, torch.finfo(torch.float64).tiny)
    return err, max_diff, scale


def detached(batch):
    """A clone of a ``Data``/``Batch`` whose tensors are fresh leaves (no autograd history,
    ``requires_grad=False``), so a check never touches the caller's batch."""
    return batch.clone().apply(lambda t: t.detach())


def evaluate_outputs(model, batch) -> dict[str, Tensor]:
    """Call the model on a private copy of ``batch`` and return its detached tensor outputs.

    Gradients stay enabled: models compute forces with ``torch.autograd.grad`` inside ``forward``.

    Raises:
        TypeError: the model returned something other than a mapping.
    """
    with torch.enable_grad():
        out = model(detached(batch))
    if not isinstance(out, Mapping):
        raise TypeError(f"model(batch) must return a Mapping[str, Tensor], got {type(out)}")
    return {k: v.detach() for k, v in out.items() if isinstance(v, Tensor)}
