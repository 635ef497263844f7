"""Molecular dynamics and batched relaxation with an equivar potential, on ASE's integrators.

``run_md`` drives ASE's ``VelocityVerlet`` (NVE), ``Langevin`` (NVT) or ``IsotropicMTKNPT``
(NPT: Martyna-Tobias-Klein equations with Nose-Hoover chains, isotropic cell) with an
:class:`~equivar.simulate.EquivarCalculator`, writes an extxyz trajectory and returns the logged
observables. ``relax_batch`` relaxes many structures at once with ASE's FIRE algorithm, one
batched model call per step.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from equivar.simulate.calculator import EquivarCalculator

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


def _positive(name: str, value: Any, integer: bool = False, allow_zero: bool = False) -> None:
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    ok = isinstance(value, kinds) and not isinstance(value, bool) and np.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        want = "an integer" if integer else "a finite number"
        raise ValueError(f"{name} must be {want} {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def _calculator(model_or_checkpoint: Any, **options: Any) -> EquivarCalculator:
    if isinstance(model_or_checkpoint, EquivarCalculator):
        return model_or_checkpoint
    return EquivarCalculator(model_or_checkpoint, **options)


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
    import ase.io
    from ase import units
    from ase.md import MDLogger
    from tqdm.auto import tqdm

    if not isinstance(atoms, ase.Atoms):
        raise TypeError(f"atoms must be an ase.Atoms, got {type(atoms).__name__}")
    if ensemble not in ENSEMBLES:
        raise ValueError(f"ensemble must be one of {sorted(ENSEMBLES)}, got {ensemble!r}")
    _positive("steps", steps, integer=True, allow_zero=True)
    _positive("dt_fs", dt_fs)
    _positive("temperature_K", temperature_K, allow_zero=ensemble == "nve")
    if dt_fs > MAX_DT_FS:
        raise ValueError(f"dt_fs={dt_fs:g} fs is above {MAX_DT_FS:g} fs: atomistic MD needs a "
                         "time step well below the fastest vibration (~11 fs for C-H); use "
                         "0.5-2 fs")
    if temperature_K > MAX_TEMPERATURE_K:
        raise ValueError(f"temperature_K={temperature_K:g} K is above {MAX_TEMPERATURE_K:g} K, "
                         "where no molecule or solid holds together")
    limit = max(10.0 * temperature_K, 2000.0) if max_temperature_K is None else max_temperature_K
    _positive("max_temperature_K", limit)
    _positive("log_interval", log_interval, integer=True)
    if trajectory_interval is not None:
        _positive("trajectory_interval", trajectory_interval, integer=True)
    if trajectory is not None and Path(trajectory).is_dir():
        raise ValueError(f"trajectory {str(trajectory)!r} is a folder; name the file to write")
    if ensemble == "nvt":
        _positive("friction_per_fs", friction_per_fs)
    if ensemble == "npt":
        if not np.all(atoms.pbc):
            raise ValueError(f"ensemble 'npt' needs a fully periodic cell, got pbc={atoms.pbc}")
        if not np.isfinite(pressure_GPa):
            raise ValueError(f"pressure_GPa must be finite, got {pressure_GPa!r}")
        for name, value in (("tdamp_fs", tdamp_fs), ("pdamp_fs", pdamp_fs)):
            if value is not None:
                _positive(name, value)

    calc = _calculator(model_or_checkpoint, device=device, dtype=dtype, skin=skin)
    work = atoms.copy()
    work.calc = calc
    rng = np.random.default_rng(seed)
    _initial_velocities(work, temperature_K, rng)
    options = dict(friction_per_fs=friction_per_fs, pressure_GPa=pressure_GPa,
                   tdamp_fs=tdamp_fs, pdamp_fs=pdamp_fs)  # fmt: skip
    dyn = _integrator(work, ensemble, dt_fs, temperature_K, options, rng)

    log: dict[str, list[float]] = {k: [] for k in ("t", "epot", "ekin", "T", "V", "P")}
    bar = tqdm(total=steps, disable=not progress, unit="step", desc=f"MD {ensemble}")

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

    dyn.attach(guard, interval=1)
    dyn.attach(record, interval=log_interval)
    dyn.attach(lambda: bar.update(dyn.nsteps - bar.n), interval=1)
    handle = None
    if trajectory is not None:
        trajectory = Path(trajectory)
        trajectory.parent.mkdir(parents=True, exist_ok=True)
        handle = open(trajectory, "w", encoding="utf-8")  # noqa: SIM115 - closed below

        def write_frame() -> None:
            work.info["md_step"] = dyn.nsteps
            work.info["time_fs"] = dyn.nsteps * dt_fs
            frame = io.StringIO()
            ase.io.write(frame, work, format="extxyz")
            handle.write(frame.getvalue())  # one write: Ctrl-C leaves whole frames only
            handle.flush()

        dyn.attach(write_frame, interval=trajectory_interval or log_interval)
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

    _positive("fmax", fmax)
    _positive("steps", steps, integer=True, allow_zero=True)
    calc = _calculator(model_or_checkpoint, **calculator_options)
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
