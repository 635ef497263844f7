"""Ethanol GFN2-xTB molecular dynamics at 500 K, labelled by fresh GFN2-xTB single points.

Protocol: ``ase.build.molecule('CH3CH2OH')`` (no cell, no pbc); tblite's ASE calculator
(GFN2-xTB, tblite defaults: accuracy 1, electronic temperature 300 K); Maxwell-Boltzmann momenta at
the target temperature from ``numpy.random.default_rng(seed)``; Langevin dynamics (ASE), 0.5 fs
step, friction 0.01 / fs, centre of mass fixed with ``FixCom``, the same generator driving the
thermostat noise; ``--equil`` steps discarded, then one frame every ``--interval`` steps.

Each recorded geometry is rounded to the 8 decimals extxyz stores, then labelled by a new
calculator (SAD guess, nothing reused from the MD): energy (eV), forces (eV/Angstrom), dipole
(e*Angstrom). ``ase.io.read`` returns them through a SinglePointCalculator; ``md_step`` and
``time_fs`` (time since the end of equilibration) are in ``atoms.info``.

OpenMP threads default to 1 (set OMP_NUM_THREADS to override): for ethanol it is as fast as 2, and
a fixed thread count keeps the chaotic trajectory reproducible on one machine.

The GFN2-xTB calculator, the labelling, the Langevin set-up and the sampling loop are shared with
``make_md17_xtb.py`` (imported from it); only the start geometry (unrelaxed G2 ethanol), the
frame spacing and the extxyz storage are this script's own.

Regenerate (from the repository root):  python3 datasets/make_ethanol_xtb.py
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before tblite loads its OpenMP runtime

import argparse  # noqa: E402
import importlib.metadata  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from ase import Atoms  # noqa: E402
from ase.build import molecule  # noqa: E402
from ase.io import read, write  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the shared GFN2-xTB and Langevin pieces live next to this file
from make_md17_xtb import langevin, sample, xtb_calculator  # noqa: E402

DEFAULT_OUT = HERE / "ethanol_xtb.extxyz"


def as_stored(positions: np.ndarray) -> np.ndarray:
    """Positions exactly as they read back from extxyz (written with '%16.8f')."""
    return np.array([[float(f"{x:.8f}") for x in row] for row in positions])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200, help="frames to record")
    parser.add_argument("--seed", type=int, default=0, help="seed of velocities and thermostat")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output extxyz path")
    parser.add_argument("--temperature", type=float, default=500.0, help="thermostat, K")
    parser.add_argument("--timestep", type=float, default=0.5, help="fs")
    parser.add_argument("--friction", type=float, default=0.01, help="Langevin friction, 1/fs")
    parser.add_argument("--equil", type=int, default=2000, help="equilibration steps (discarded)")
    parser.add_argument("--interval", type=int, default=200, help="MD steps between frames")
    args = parser.parse_args(argv)

    atoms = molecule("CH3CH2OH")
    atoms.pbc = False
    atoms.calc = xtb_calculator()
    rng = np.random.default_rng(args.seed)
    # Maxwell-Boltzmann momenta, Langevin with fixcm=False + FixCom (see make_md17_xtb.langevin)
    dyn = langevin(atoms, args.temperature, args.timestep, args.friction, rng)

    t0 = time.perf_counter()
    dyn.run(args.equil)
    t_equil = time.perf_counter() - t0

    frames: list[Atoms] = []
    temperatures: list[float] = []
    t_label = 0.0
    for frame, temperature, seconds in sample(dyn, atoms, args.frames, args.interval, as_stored):
        temperatures.append(temperature)
        t_label += seconds
        # md_step (steps after equilibration) is set by sample()
        frame.info["time_fs"] = round(frame.info["md_step"] * args.timestep, 6)
        frames.append(frame)
    t_total = time.perf_counter() - t0

    args.out.parent.mkdir(parents=True, exist_ok=True)
    write(args.out, frames, format="extxyz")

    back = read(args.out, ":", format="extxyz")
    for a, b in zip(frames, back, strict=True):
        assert np.array_equal(a.positions, b.positions)
        assert abs(a.get_potential_energy() - b.get_potential_energy()) < 1e-9
        assert np.allclose(a.get_forces(), b.get_forces(), atol=1e-8, rtol=0)

    energies = np.array([f.get_potential_energy() for f in frames])
    forces = np.array([f.get_forces() for f in frames])
    n_steps = args.equil + args.frames * args.interval
    print(
        f"tblite {importlib.metadata.version('tblite')}, ase {importlib.metadata.version('ase')},"
        f" OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}"
    )
    print(f"wrote {len(frames)} frames to {args.out} ({args.out.stat().st_size} bytes)")
    t_md = t_total - t_label
    print(
        f"MD {n_steps} steps ({n_steps * args.timestep / 1000:.2f} ps) in {t_md:.1f} s "
        f"({n_steps / t_md:.0f} steps/s; equilibration {t_equil:.1f} s); "
        f"labels {t_label:.2f} s ({1e3 * t_label / len(frames):.2f} ms/frame)"
    )
    print(
        f"kinetic T at recorded frames: mean {np.mean(temperatures):.0f} K "
        f"(sd {np.std(temperatures):.0f} K)"
    )
    print(
        f"energy: mean {energies.mean():.4f} eV, sd {energies.std():.4f} eV; "
        f"force RMS {np.sqrt(np.mean(forces**2)):.3f} eV/A"
    )


if __name__ == "__main__":
    main()
