"""A symmetry report: worst error of every output under every transformation, without raising."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from equivar.testing.conservative import assert_conservative
from equivar.testing.equivariance import assert_equivariant
from equivar.testing.measurement import SymmetryAssertionError


def symmetry_report(
    model,
    batch,
    *,
    equivariance: bool = True,
    conservative: bool = True,
    seed: int = 0,
    **tolerances: Any,
) -> dict[str, Any]:
    """Measure (not assert) the symmetry errors of ``model`` on ``batch``.

    Runs :func:`assert_equivariant` (when ``equivariance``) and :func:`assert_conservative`
    (when ``conservative``), and returns what they measured whether or not they pass.

    Args:
        model: ``model(batch) -> Mapping[str, Tensor]``.
        batch: a PyG batch (float64 gives the sharpest numbers).
        equivariance: check rotations, reflections, translations and permutations.
        conservative: also check forces/stress against the energy (needs energy and forces).
        seed: seed of the random transformations.
        **tolerances: ``rtol``/``atol`` passed on to both checks.

    Returns:
        ``{"equivariance": {output: {transform: error}}, "conservative": {check: error},
        "passed": bool, "failures": [str, ...]}``.
    """
    report: dict[str, Any] = {"passed": True, "failures": [], "equivariance": {}}
    if equivariance:
        try:
            report["equivariance"] = assert_equivariant(model, batch, seed=seed, **tolerances)
        except SymmetryAssertionError as err:
            report["equivariance"], report["passed"] = err.errors, False
            report["failures"] += [_describe(f) for f in err.failures]
    if conservative:
        try:
            report["conservative"] = assert_conservative(model, batch, seed=seed, **tolerances)
        except SymmetryAssertionError as err:
            report["conservative"], report["passed"] = err.errors, False
            report["failures"] += [_describe(f) for f in err.failures]
    return report


def worst_by_transform(errors: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Worst error over all outputs for each transformation."""
    out: dict[str, float] = {}
    for per_transform in errors.values():
        for transform, err in per_transform.items():
            out[transform] = max(out.get(transform, 0.0), float(err))
    return out


def _describe(failure: tuple) -> str:
    name, transform, err, tol = failure
    where = f"{name} under {transform}" if transform else name
    return f"{where}: {err:.2e} > {tol:.0e}"
