"""Batched relaxation: ASE's FIRE algorithm on many structures at once, one batched model call
per step."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from equivar.simulate.calculator import as_calculator
from equivar.simulate.settings import check_positive

if TYPE_CHECKING:
    import ase

__all__ = ["relax_batch"]


def relax_batch(
    model_or_checkpoint: Any,
    structures: list[ase.Atoms],
    *,
    fmax: float = 0.05,
    steps: int = 500,
    maxstep: float = 0.2,
    dt: float = 0.1,
    **calculator_options: Any,
) -> tuple[list[ase.Atoms], list[int]]:
    """Relax the positions of many structures at once: ASE's FIRE algorithm per structure, the
    forces of all unconverged structures from one batched model call per step.

    Each structure follows exactly the steps ``ase.optimize.FIRE(atoms, dt=dt, maxstep=maxstep)``
    would take (same parameters: dtmax 1, Nmin 5, finc 1.1, fdec 0.5, astart 0.1, fa 0.99); the
    cell is kept fixed; ASE constraints are not applied.

    Args:
        model_or_checkpoint: a potential, checkpoint path, committee or :class:`EquivarCalculator`.
        structures: the structures (not modified).
        fmax: convergence threshold on the largest atomic force (eV/Angstrom).
        steps: the most FIRE steps per structure.
        maxstep, dt: FIRE's largest step (Angstrom) and initial time step (ASE units).
        **calculator_options: ``device``, ``dtype`` ... for a new calculator.

    Returns:
        ``(relaxed, n_steps)``: copies with their final energy and forces on a
        ``SinglePointCalculator``, and the FIRE steps each took (``steps`` if not converged).
    """
    from ase.calculators.singlepoint import SinglePointCalculator

    check_positive("fmax", fmax)
    check_positive("steps", steps, integer=True, allow_zero=True)
    calc = as_calculator(model_or_checkpoint, **calculator_options)
    work = [a.copy() for a in structures]
    state = [dict(v=None, dt=dt, a=0.1, n=0) for _ in work]
    n_steps = [steps] * len(work)
    results: list[dict | None] = [None] * len(work)
    active = list(range(len(work)))
    for step in range(steps + 1):
        for k, res in zip(active, calc.calculate_batch([work[k] for k in active]), strict=True):
            results[k] = res
        still = []
        for k in active:
            f = results[k]["forces"]
            if np.sqrt((f**2).sum(axis=1)).max() < fmax:
                n_steps[k] = step
                continue
            if step == steps:
                continue
            still.append(k)
            s = state[k]
            if s["v"] is None:
                s["v"] = np.zeros_like(f)
            else:  # ase.optimize.FIRE.step, without the optional downhill check
                vf = np.vdot(f, s["v"])
                if vf > 0.0:
                    s["v"] = (1.0 - s["a"]) * s["v"] + s["a"] * f / np.sqrt(
                        np.vdot(f, f)
                    ) * np.sqrt(np.vdot(s["v"], s["v"]))
                    if s["n"] > 5:
                        s["dt"] = min(s["dt"] * 1.1, 1.0)
                        s["a"] *= 0.99
                    s["n"] += 1
                else:
                    s["v"][:] = 0.0
                    s["a"], s["dt"], s["n"] = 0.1, s["dt"] * 0.5, 0
            s["v"] += s["dt"] * f
            dr = s["dt"] * s["v"]
            norm = np.sqrt(np.vdot(dr, dr))
            if norm > maxstep:
                dr = maxstep * dr / norm
            work[k].positions = work[k].positions + dr
        active = still
        if not active:
            break
    for atoms, res in zip(work, results, strict=True):
        keep = {k: v for k, v in res.items() if k in ("energy", "free_energy", "forces", "stress")}
        atoms.calc = SinglePointCalculator(atoms, **keep)
    return work, n_steps
