"""Simulation with learned models: an ASE calculator, MD drivers, and N-body rollouts.

Names are resolved lazily, so ``import equivar.simulate`` does no work.
"""

from __future__ import annotations

from equivar._lazy import lazy_attributes

_WHERE = {
    "EquivarCalculator": "calculator",
    "MDBlowUpError": "md",
    "run_md": "md",
    "rollout": "rollouts",
}

__all__ = sorted(_WHERE)


__getattr__, __dir__ = lazy_attributes(__name__, _WHERE, __all__)
