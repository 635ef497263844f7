"""Variational Monte Carlo with neural wavefunctions, in atomic units (bohr, hartree).

* systems: :func:`atom` (``atom("Li")``: Z and the Hund's-rule spin), :class:`Molecule`
  (charges, positions in bohr, spin), :func:`get_system` (``"He"``, ``"H2"``, ``"LiH"``).
* Hamiltonian: :func:`local_energy` (exact Laplacian of ``log|psi|``),
  :func:`potential_energy`, :func:`laplacian_logabs`.
* sampling: :class:`MetropolisSampler` (batched, adaptive step, any device).
* optimisation: :class:`StochasticReconfiguration` (minSR + SPRING), :class:`KFAC`,
  :class:`AdamVMC`,
  :func:`pretrain_orbitals` to Hartree-Fock (:class:`HartreeFock`, pyscf).
* statistics: :func:`blocking`, :func:`autocorrelation_time`, :func:`estimate`.
* the driver :func:`vmc` (:class:`VMCConfig` -> :class:`VMCResult`) and checkpoints
  (:func:`save_checkpoint`, :func:`load_checkpoint`, :func:`load_wavefunction`).

The wavefunctions themselves are models: ``equivar.models.build("wavefunction", system=...)``.
Names are resolved lazily, so ``import equivar.qmc`` does no work.

Example:
    >>> from equivar.qmc import atom, vmc  # doctest: +SKIP
    >>> result = vmc(atom("He"), model={"preset": "S"},
    ...              iterations=200, walkers=256)  # doctest: +SKIP
    >>> print(result.energy, result.error)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from equivar._lazy import lazy_attributes

__all__ = [
    "AdamVMC",
    "EnergyEstimate",
    "GROUND_STATE_SPIN",
    "HartreeFock",
    "MetropolisSampler",
    "Molecule",
    "NAMED_SYSTEMS",
    "StochasticReconfiguration",
    "KFAC",
    "VMCConfig",
    "VMCResult",
    "atom",
    "autocorrelation_time",
    "blocking",
    "check_walkers",
    "estimate",
    "get_system",
    "kinetic_energy",
    "laplacian_logabs",
    "load_checkpoint",
    "load_wavefunction",
    "local_energy",
    "plot_energy",
    "potential_energy",
    "pretrain_orbitals",
    "save_checkpoint",
    "vmc",
]

_WHERE = {
    "GROUND_STATE_SPIN": "systems",
    "Molecule": "systems",
    "NAMED_SYSTEMS": "systems",
    "atom": "systems",
    "get_system": "systems",
    "check_walkers": "hamiltonian",
    "kinetic_energy": "hamiltonian",
    "laplacian_logabs": "hamiltonian",
    "local_energy": "hamiltonian",
    "potential_energy": "hamiltonian",
    "MetropolisSampler": "sampler",
    "AdamVMC": "optim",
    "StochasticReconfiguration": "optim",
    "KFAC": "kfac",
    "EnergyEstimate": "statistics",
    "autocorrelation_time": "statistics",
    "blocking": "statistics",
    "estimate": "statistics",
    "HartreeFock": "pretrain",
    "pretrain_orbitals": "pretrain",
    "load_checkpoint": "checkpoint",
    "load_wavefunction": "checkpoint",
    "save_checkpoint": "checkpoint",
    "plot_energy": "plot",
    "VMCConfig": "driver",
    "VMCResult": "driver",
    "vmc": "driver",
}

if TYPE_CHECKING:  # pragma: no cover
    from equivar.qmc.checkpoint import load_checkpoint, load_wavefunction, save_checkpoint
    from equivar.qmc.driver import VMCConfig, VMCResult, vmc
    from equivar.qmc.hamiltonian import (
        check_walkers,
        kinetic_energy,
        laplacian_logabs,
        local_energy,
        potential_energy,
    )
    from equivar.qmc.kfac import KFAC
    from equivar.qmc.optim import AdamVMC, StochasticReconfiguration
    from equivar.qmc.plot import plot_energy
    from equivar.qmc.pretrain import HartreeFock, pretrain_orbitals
    from equivar.qmc.sampler import MetropolisSampler
    from equivar.qmc.statistics import EnergyEstimate, autocorrelation_time, blocking, estimate
    from equivar.qmc.systems import GROUND_STATE_SPIN, NAMED_SYSTEMS, Molecule, atom, get_system


__getattr__, __dir__ = lazy_attributes(__name__, _WHERE, __all__)
