"""Molecular dynamics and batched relaxation with an equivar potential, on ASE's integrators.

``run_md`` drives ASE's ``VelocityVerlet`` (NVE), ``Langevin`` (NVT) or ``IsotropicMTKNPT``
(NPT: Martyna-Tobias-Klein equations with Nose-Hoover chains, isotropic cell) with an
:class:`~equivar.simulate.EquivarCalculator`, writes an extxyz trajectory and returns the logged
observables. (``relax_batch``, batched FIRE relaxation, lives in :mod:`equivar.simulate.relax`.)
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from equivar.simulate.calculator import as_calculator
from equivar.simulate.relax import relax_batch  # noqa: F401 (re-exported: its old home)
from equivar.simulate.settings import check_positive

if TYPE_CHECKING:
    import ase

__all__ = ["ENSEMBLES", "MDBlowUpError", "MDResult", "relax_batch", "run_md"]

#: ensemble -> the ASE integrator that runs it
ENSEMBLES = {
    "nve": "ase.md.verlet.VelocityVerlet",
    "nvt": "ase.md.langevin.Langevin",
    "npt": "ase.md.nose_hoover_chain.IsotropicMTKNPT",
}


@dataclass
class MDResult:
    """What :func:`run_md` returns: the final state and the observables logged along the way.

    Attributes:
        atoms: the final structure (positions, momenta, cell) with the calculator attached.
        time_fs, potential_energy, kinetic_energy, temperature_K, volume: one entry per logged
            step (step 0 included); energies in eV, volume in Angstrom^3 (0 for molecules).
        steps: MD steps run; seconds: wall time of the run.
        trajectory: the extxyz file written, or None.
        ensemble: ``"nve"``, ``"nvt"`` or ``"npt"``; target_temperature_K: the thermostat's
            (and the initial velocities') temperature.
        pressure_GPa: NPT only (else None): the instantaneous pressure at each logged step,
            ``-trace(stress) / 3`` with the ideal-gas (kinetic) term, in GPa.
    """

    atoms: ase.Atoms
    time_fs: np.ndarray
    potential_energy: np.ndarray
    kinetic_energy: np.ndarray
    temperature_K: np.ndarray
    volume: np.ndarray
    steps: int
    seconds: float
    trajectory: Path | None = None
    ensemble: str = "nve"
    extra: dict[str, Any] = field(default_factory=dict)
    target_temperature_K: float | None = None
    pressure_GPa: np.ndarray | None = None

    @property
    def total_energy(self) -> np.ndarray:
        """Potential + kinetic energy (eV) at each logged step."""
        return self.potential_energy + self.kinetic_energy

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else float("nan")

    def energy_drift(self) -> float:
        """Slope of a straight-line fit to the total energy, in eV per atom per ps (meaningful
        for NVE only: a thermostat or barostat exchanges energy on purpose; NaN with fewer than
        two logged steps)."""
        if len(self.time_fs) < 2:
            return float("nan")
        slope = np.polyfit(self.time_fs * 1e-3, self.total_energy, 1)[0]  # eV / ps
        return float(slope / len(self.atoms))


#: the largest time step and temperature accepted: beyond them an atomistic run is nonsense
#: (C-H bonds vibrate with a 11 fs period; every molecule dissociates long before 1e5 K)
MAX_DT_FS, MAX_TEMPERATURE_K = 20.0, 1e5


class MDBlowUpError(ValueError):
    """MD stopped because the system blew up: non-finite energies or positions, or a
    temperature far above any the run asked for (too large a time step, atoms too close, a
    model outside its training data). A ``ValueError``: the cause is the run's input."""


def _integrator(atoms, ensemble, dt_fs, temperature_K, options, rng):
    """The ASE dynamics object for ``ensemble`` (see :data:`ENSEMBLES`)."""
    from ase import units

    dt = dt_fs * units.fs
    if ensemble == "nve":
        from ase.md.verlet import VelocityVerlet

        return VelocityVerlet(atoms, dt)
    if ensemble == "nvt":
        from ase.constraints import FixCom
        from ase.md.langevin import Langevin

        # fixcm=False + FixCom: the thermostat's noise cannot drag the centre of mass
        atoms.set_constraint([*atoms.constraints, FixCom()])
        friction = options["friction_per_fs"] / units.fs
        return Langevin(atoms, dt, temperature_K=temperature_K, friction=friction, fixcm=False,
                        rng=rng)  # fmt: skip
    from ase.md.nose_hoover_chain import IsotropicMTKNPT

    return IsotropicMTKNPT(
        atoms,
        dt,
        temperature_K=temperature_K,
        pressure_au=options["pressure_GPa"] * units.GPa,
        tdamp=(options["tdamp_fs"] or 100 * dt_fs) * units.fs,
        pdamp=(options["pdamp_fs"] or 1000 * dt_fs) * units.fs,
    )


def _initial_velocities(atoms, temperature_K: float, rng) -> None:
    """Maxwell-Boltzmann momenta without net momentum (and, for a molecule, without net
    rotation), scaled to a kinetic temperature of exactly ``temperature_K``; nothing is done if
    ``atoms`` already moves."""
    from ase.md.velocitydistribution import (
        Stationary,
        ZeroRotation,
        force_temperature,
        thermalize_momenta,
    )

    if np.any(atoms.get_momenta()) or temperature_K <= 0 or len(atoms) < 2:
        return
    thermalize_momenta(atoms, temperature_K, rng=rng)
    Stationary(atoms)
    if not atoms.pbc.any() and len(atoms) > 2:
        ZeroRotation(atoms)
    force_temperature(atoms, temperature_K, unit="K")


def run_md(
    model_or_checkpoint: Any,
    atoms: ase.Atoms,
    *,
    ensemble: str = "nve",
    steps: int = 1000,
    dt_fs: float = 0.5,
    temperature_K: float = 300.0,
    pressure_GPa: float = 0.0,
    friction_per_fs: float = 0.01,
    tdamp_fs: float | None = None,
    pdamp_fs: float | None = None,
    trajectory: str | Path | None = None,
    trajectory_interval: int | None = None,
    log_interval: int = 10,
    logfile: str | Path | None = None,
    progress: bool = True,
    seed: int = 0,
    device: str = "auto",
    dtype: str | None = None,
    skin: float = 0.0,
    max_temperature_K: float | None = None,
) -> MDResult:
    """Run molecular dynamics of ``atoms`` with an equivar potential.

    The input ``atoms`` is not modified: a copy is simulated and returned in the result. Atoms at
    rest get Maxwell-Boltzmann momenta (seeded; no net momentum, and no net rotation for a
    molecule) scaled to a kinetic temperature of exactly ``temperature_K``; atoms that already
    move (e.g. the last frame of a trajectory, whose momenta extxyz stores) keep their momenta.

    Args:
        model_or_checkpoint: a potential, a checkpoint path, a committee list, or an
            :class:`EquivarCalculator` (then ``device``, ``dtype`` and ``skin`` are ignored).
        atoms: the starting structure.
        ensemble: ``"nve"`` (velocity Verlet), ``"nvt"`` (Langevin, centre of mass held fixed)
            or ``"npt"`` (isotropic MTK barostat with Nose-Hoover chains; fully periodic only).
        steps: MD steps (default 1000).
        dt_fs: time step in fs (default 0.5).
        temperature_K: initial temperature, and the target of NVT/NPT (default 300).
        pressure_GPa: NPT target pressure (default 0).
        friction_per_fs: Langevin friction in 1/fs (default 0.01).
        tdamp_fs, pdamp_fs: NPT thermostat and barostat time constants (default 100 and 1000
            time steps).
        trajectory: extxyz file written as the run goes (overwritten), or None.
        trajectory_interval: steps between trajectory frames (default ``log_interval``).
        log_interval: steps between logged observables (default 10; step 0 is always logged).
        logfile: an ASE ``MDLogger`` text log ("-" for stdout), or None.
        progress: show a tqdm progress bar with the temperature and total energy.
        seed: seeds the initial momenta and the Langevin noise.
        device, dtype, skin: passed to :class:`EquivarCalculator`.
        max_temperature_K: the run stops with :class:`MDBlowUpError` (naming the step, the
            temperature and the likely cause; the trajectory so far is kept) when the kinetic
            temperature exceeds it, or as soon as an energy or position is not finite
            (default: ``max(10 * temperature_K, 2000)``).

    Returns:
        An :class:`MDResult`.

    Raises:
        ValueError: invalid settings, e.g. ``dt_fs`` above 20 fs or ``temperature_K`` above
            1e5 K. MDBlowUpError: the system blew up (see ``max_temperature_K``).

    Example:
        >>> from ase.build import molecule
        >>> from equivar.models import build
        >>> model = build("potential", preset="S", species=["H", "C", "O"], zbl=True)
        >>> result = run_md(model, molecule("CH3CH2OH"), steps=20, progress=False)
        >>> result.time_fs.tolist()  # step 0 and every log_interval = 10 steps of 0.5 fs
        [0.0, 5.0, 10.0]
    """
    import ase
    from ase.md import MDLogger
    from tqdm.auto import tqdm

    if not isinstance(atoms, ase.Atoms):
        raise TypeError(f"atoms must be an ase.Atoms, got {type(atoms).__name__}")
    options = dict(friction_per_fs=friction_per_fs, pressure_GPa=pressure_GPa,
                   tdamp_fs=tdamp_fs, pdamp_fs=pdamp_fs)  # fmt: skip
    limit = _check_settings(atoms, ensemble, steps, dt_fs, temperature_K, options,
                            max_temperature_K, log_interval, trajectory, trajectory_interval)
    work = atoms.copy()
    work.calc = as_calculator(model_or_checkpoint, device=device, dtype=dtype, skin=skin)
    rng = np.random.default_rng(seed)
    _initial_velocities(work, temperature_K, rng)
    dyn = _integrator(work, ensemble, dt_fs, temperature_K, options, rng)

    bar = tqdm(total=steps, disable=not progress, unit="step", desc=f"MD {ensemble}")
    log, record = _recorder(dyn, work, ensemble, dt_fs, bar)
    dyn.attach(_guard(dyn, work, dt_fs, limit, trajectory), interval=1)
    dyn.attach(record, interval=log_interval)
    dyn.attach(lambda: bar.update(dyn.nsteps - bar.n), interval=1)
    trajectory = None if trajectory is None else Path(trajectory)
    handle = None if trajectory is None else _attach_trajectory(
        dyn, work, trajectory, dt_fs, trajectory_interval or log_interval)
    if logfile is not None:
        logger = MDLogger(dyn, work, str(logfile), header=True, stress=False, peratom=False)
        dyn.attach(logger, interval=log_interval)
    t0 = time.perf_counter()
    try:
        dyn.run(steps)
    finally:
        seconds = time.perf_counter() - t0
        bar.close()
        if handle is not None:
            handle.close()
    return MDResult(
        atoms=work,
        time_fs=np.array(log["t"]),
        potential_energy=np.array(log["epot"]),
        kinetic_energy=np.array(log["ekin"]),
        temperature_K=np.array(log["T"]),
        volume=np.array(log["V"]),
        steps=steps,
        seconds=seconds,
        trajectory=trajectory,
        ensemble=ensemble,
        target_temperature_K=float(temperature_K),
        pressure_GPa=np.array(log["P"]) if ensemble == "npt" else None,
    )


def _check_settings(atoms, ensemble: str, steps: int, dt_fs: float, temperature_K: float,
                    options: dict[str, Any], max_temperature_K: float | None, log_interval: int,
                    trajectory, trajectory_interval: int | None) -> float:
    """Refuse invalid :func:`run_md` settings (``options``: friction, pressure and damping);
    returns the blow-up temperature limit."""
    if ensemble not in ENSEMBLES:
        raise ValueError(f"ensemble must be one of {sorted(ENSEMBLES)}, got {ensemble!r}")
    check_positive("steps", steps, integer=True, allow_zero=True)
    check_positive("dt_fs", dt_fs)
    check_positive("temperature_K", temperature_K, allow_zero=ensemble == "nve")
    if dt_fs > MAX_DT_FS:
        raise ValueError(f"dt_fs={dt_fs:g} fs is above {MAX_DT_FS:g} fs: atomistic MD needs a "
                         "time step well below the fastest vibration (~11 fs for C-H); use "
                         "0.5-2 fs")
    if temperature_K > MAX_TEMPERATURE_K:
        raise ValueError(f"temperature_K={temperature_K:g} K is above {MAX_TEMPERATURE_K:g} K, "
                         "where no molecule or solid holds together")
    limit = max(10.0 * temperature_K, 2000.0) if max_temperature_K is None else max_temperature_K
    check_positive("max_temperature_K", limit)
    check_positive("log_interval", log_interval, integer=True)
    if trajectory_interval is not None:
        check_positive("trajectory_interval", trajectory_interval, integer=True)
    if trajectory is not None and Path(trajectory).is_dir():
        raise ValueError(f"trajectory {str(trajectory)!r} is a folder; name the file to write")
    if ensemble == "nvt":
        check_positive("friction_per_fs", options["friction_per_fs"])
    if ensemble == "npt":
        if not np.all(atoms.pbc):
            raise ValueError(f"ensemble 'npt' needs a fully periodic cell, got pbc={atoms.pbc}")
        if not np.isfinite(options["pressure_GPa"]):
            raise ValueError(f"pressure_GPa must be finite, got {options['pressure_GPa']!r}")
        for name in ("tdamp_fs", "pdamp_fs"):
            if options[name] is not None:
                check_positive(name, options[name])
    return limit


def _recorder(dyn, work, ensemble: str, dt_fs: float, bar):
    """``(log, record)``: ``record()`` appends the observables of the current step to ``log``
    (time, potential and kinetic energy, temperature, volume; pressure for NPT) and shows the
    temperature and total energy on the progress ``bar``."""
    from ase import units

    log: dict[str, list[float]] = {k: [] for k in ("t", "epot", "ekin", "T", "V", "P")}

    def record() -> None:
        log["t"].append(dyn.nsteps * dt_fs)
        log["epot"].append(work.get_potential_energy())
        log["ekin"].append(work.get_kinetic_energy())
        log["T"].append(work.get_temperature())
        log["V"].append(work.get_volume() if work.pbc.all() else 0.0)
        if ensemble == "npt":  # the barostat's stress is computed anyway (cached)
            stress = work.get_stress(include_ideal_gas=True)  # Voigt, eV/Angstrom^3
            log["P"].append(-float(np.mean(stress[:3])) / units.GPa)
        etot = log["epot"][-1] + log["ekin"][-1]
        # refresh=False: the bar redraws at tqdm's own pace, not at every log
        bar.set_postfix(T=f"{log['T'][-1]:.0f} K", E=f"{etot:.4f}", refresh=False)

    return log, record


def _guard(dyn, work, dt_fs: float, limit: float, trajectory):
    """A step observer that raises :class:`MDBlowUpError` where a blow-up starts (non-finite
    energy or positions, or a temperature above ``limit``)."""

    def guard() -> None:  # every step: a blow-up stops the run where it starts
        temperature = work.get_temperature()
        energy = work.get_potential_energy()
        if np.isfinite(temperature) and np.isfinite(energy) and temperature <= limit \
                and np.isfinite(work.positions).all():
            return
        kept = f"; the trajectory up to there is in {trajectory}" if trajectory else ""
        raise MDBlowUpError(
            f"MD stopped at step {dyn.nsteps} ({dyn.nsteps * dt_fs:g} fs): the system blew up "
            f"(temperature {temperature:.3g} K, limit {limit:.3g} K; potential energy "
            f"{energy:.6g} eV){kept}. Likely causes: the time step ({dt_fs:g} fs) is too "
            "large, atoms start too close, or the model is outside its training data; "
            "max_temperature_K raises the limit if the heat is intended")

    return guard


def _attach_trajectory(dyn, work, trajectory: Path, dt_fs: float, interval: int):
    """Open ``trajectory`` (overwritten) and write an extxyz frame every ``interval`` steps;
    returns the open file, which the caller closes."""
    import ase.io

    trajectory.parent.mkdir(parents=True, exist_ok=True)
    handle = open(trajectory, "w", encoding="utf-8")  # noqa: SIM115 - the caller closes it

    def write_frame() -> None:
        work.info["md_step"] = dyn.nsteps
        work.info["time_fs"] = dyn.nsteps * dt_fs
        frame = io.StringIO()
        ase.io.write(frame, work, format="extxyz")
        handle.write(frame.getvalue())  # one write: Ctrl-C leaves whole frames only
        handle.flush()

    dyn.attach(write_frame, interval=interval)
    return handle
