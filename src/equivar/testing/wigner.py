"""Wigner D matrices of any irreps, exact to float64 rounding (for tight equivariance tests).

The code lives in :mod:`equivar.symmetry.wigner` (the group actions use it); it is re-exported
here because tests of equivariant blocks reach for it next to the other testing helpers.
"""

from __future__ import annotations

from equivar.symmetry.wigner import wigner_D

__all__ = ["wigner_D"]
