"""Atoms and molecules for VMC: nuclear charges, positions (bohr), electron counts per spin.

A system is also what a wavefunction is built for, so the definitions live below both tasks and
models, in :mod:`equivar.models.systems`; they are re-exported here unchanged.
"""

from __future__ import annotations

from equivar.models.systems import (  # noqa: F401 (re-exported)
    GROUND_STATE_SPIN,
    NAMED_SYSTEMS,
    Molecule,
    atom,
    get_system,
)

__all__ = ["GROUND_STATE_SPIN", "NAMED_SYSTEMS", "Molecule", "atom", "get_system"]
