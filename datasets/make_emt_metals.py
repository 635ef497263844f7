"""Periodic Cu, Pt and CuAu boxes from Langevin MD with ASE's EMT: energy, forces and stress.

Protocol. For each system and each run of :data:`RUNS` (a temperature and a cell strain):

1. the box: a ``repeat`` (default 2 x 2 x 2) multiple of the cubic fcc cell, 32 atoms, with
   ASE's lattice constants (``ase.build.bulk``: Cu 3.61, Pt 3.92 Angstrom; the CuAu alloy at
   Vegard's 3.845 Angstrom, Cu and Au placed at random, 50/50). A strained run deforms the cell
   and the positions by ``(1 + eps)`` with a symmetric strain ``eps`` (entries drawn from
   N(0, 0.02^2) with its own generator, so volume and shape both change and the stress has
   off-diagonal parts);
2. Maxwell-Boltzmann momenta at the run's temperature and ASE ``Langevin`` dynamics at that
   temperature (time step 2 fs, friction 0.02 / fs, ``fixcm=False``), all random numbers from
   ``numpy.random.default_rng([seed, system, run])`` (the strain and alloy draw from
   ``default_rng([seed, system, run, 1])``), fixed cell;
3. ``equil`` steps discarded, then one frame every ``interval`` steps;
4. each frame's positions are wrapped into the cell and rounded to a grid of 2^-12 Angstrom
   (exact in float32), and labelled by a fresh EMT single point at exactly those positions:
   energy (eV, float64), forces (eV/Angstrom, rounded to 2^-14, float32), stress (eV/Angstrom^3,
   ASE sign and 3x3 form: ``stress = dE/d(strain) / volume``, no kinetic part; float64).

Temperatures 300, 700 and 1100 K (below EMT's melting points); runs 0-2 have the unstrained
cell, runs 3-8 the same temperatures in two strained cells each. 3 systems x 9 runs x ``frames``
(default 12) frames = 324 frames of 32 atoms.

Output: ``datasets/emt_metals.npz`` in equivar's npz layout (read by ``equivar.data.read`` and
``equivar.data.datasets.emt.load_emt_metals``): ``z, pos (float32), n_atoms, cell, pbc,
per_atom_keys=["forces"], energy, forces (float32), stress [F, 3, 3]``, plus ``system [F]``
(str), ``run [F]`` and ``md_step [F]`` (int64). The run table (temperature, strain) and the
versions are JSON in the zip comment. Deterministic: the same arguments give the same bytes.

Regenerate (from the repository root):  python3 datasets/make_emt_metals.py
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "emt_metals.npz"
sys.path.insert(0, str(HERE))
from make_md17_xtb import write_npz  # noqa: E402  (compressed npz, JSON metadata comment)

#: name -> (elements, fractions, cubic lattice constant in Angstrom)
SYSTEMS = {
    "Cu": (("Cu",), (1.0,), 3.61),
    "Pt": (("Pt",), (1.0,), 3.92),
    "CuAu": (("Cu", "Au"), (0.5, 0.5), 0.5 * (3.61 + 4.08)),
}
TEMPERATURES = (300.0, 700.0, 1100.0)
#: (temperature K, strained?) for each run, in order
RUNS = tuple((t, False) for t in TEMPERATURES) + tuple(
    (t, True) for _ in range(2) for t in TEMPERATURES
)
STRAIN_SD = 0.02
TIMESTEP_FS = 2.0
FRICTION_PER_FS = 0.02
POSITION_QUANTUM = 2.0**-12
FORCE_QUANTUM = 2.0**-14


def quantise(x: np.ndarray, quantum: float) -> np.ndarray:
    return np.round(np.asarray(x, dtype=np.float64) / quantum) * quantum


def build_box(system: str, strained: bool, repeat: tuple[int, int, int], rng):
    """The starting (perfect lattice) box of one run and its strain tensor."""
    from ase.build import bulk

    elements, fractions, a = SYSTEMS[system]
    atoms = bulk(elements[0], "fcc", a=a, cubic=True).repeat(repeat)
    n = len(atoms)
    if len(elements) > 1:
        counts = np.round(np.array(fractions) * n).astype(int)
        counts[-1] = n - counts[:-1].sum()
        symbols = np.repeat(elements, counts)
        atoms.set_chemical_symbols(list(rng.permutation(symbols)))
    eps = np.zeros((3, 3))
    if strained:
        upper = rng.normal(0.0, STRAIN_SD, size=(3, 3))
        eps = np.triu(upper) + np.triu(upper, 1).T  # symmetric
    atoms.set_cell(atoms.cell[:] @ (np.eye(3) + eps), scale_atoms=True)
    atoms.pbc = True
    return atoms, eps


def label(atoms):
    """Fresh EMT single point at ``atoms``' positions: (energy, forces, stress 3x3)."""
    from ase.calculators.emt import EMT

    work = atoms.copy()
    work.calc = EMT()
    return (
        float(work.get_potential_energy()),
        np.array(work.get_forces()),
        np.array(work.get_stress(voigt=False)),
    )


def run_frames(system: str, k: int, *, seed: int, frames: int, interval: int, equil: int,
               repeat: tuple[int, int, int]) -> tuple[list, dict]:  # fmt: skip
    """Frames (stored positions and labels) of run ``k`` of ``system``."""
    from ase import units
    from ase.calculators.emt import EMT
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import Stationary, thermalize_momenta

    s = list(SYSTEMS).index(system)
    temperature, strained = RUNS[k]
    atoms, eps = build_box(system, strained, repeat, np.random.default_rng([seed, s, k, 1]))
    rng = np.random.default_rng([seed, s, k])
    atoms.calc = EMT()
    thermalize_momenta(atoms, temperature, rng=rng)
    Stationary(atoms)
    dyn = Langevin(atoms, TIMESTEP_FS * units.fs, temperature_K=temperature,
                   friction=FRICTION_PER_FS / units.fs, fixcm=False, rng=rng)  # fmt: skip
    dyn.run(equil)
    out = []
    for i in range(frames):
        dyn.run(interval)
        frame = atoms.copy()
        frame.calc = None
        frame.wrap()
        frame.positions = quantise(frame.positions, POSITION_QUANTUM)
        energy, forces, stress = label(frame)
        out.append(
            {
                "atoms": frame,
                "energy": energy,
                "forces": quantise(forces, FORCE_QUANTUM),
                "stress": stress,
                "md_step": equil + (i + 1) * interval,
                "temperature": float(atoms.get_temperature()),
            }
        )
    run_info = {"system": system, "run": k, "temperature_K": temperature,
                "strain": eps.round(12).tolist(), "n_atoms": len(atoms)}  # fmt: skip
    return out, run_info


def generate(*, seed: int = 0, frames: int = 12, interval: int = 25, equil: int = 200,
             repeat: tuple[int, int, int] = (2, 2, 2), systems: tuple[str, ...] = tuple(SYSTEMS),
             ) -> tuple[dict, dict]:  # fmt: skip
    """All runs of all ``systems``; returns (arrays of the npz, metadata). Deterministic."""
    import importlib.metadata

    records, runs, kinetic_t = [], [], []
    for system in systems:
        if system not in SYSTEMS:
            raise ValueError(f"unknown system {system!r}; choose from {list(SYSTEMS)}")
        for k in range(len(RUNS)):
            out, info = run_frames(system, k, seed=seed, frames=frames, interval=interval,
                                   equil=equil, repeat=repeat)  # fmt: skip
            for rec in out:
                rec["system"], rec["run"] = system, k
            records += out
            kinetic_t.append(float(np.mean([r["temperature"] for r in out])))
            info["mean_kinetic_temperature_K"] = round(kinetic_t[-1], 1)
            runs.append(info)
    n_atoms = np.array([len(r["atoms"]) for r in records], dtype=np.int64)
    arrays = {
        "z": np.concatenate([r["atoms"].numbers for r in records]).astype(np.int64),
        "pos": np.concatenate([r["atoms"].positions for r in records]).astype(np.float32),
        "n_atoms": n_atoms,
        "cell": np.stack([r["atoms"].cell[:] for r in records]),  # [F, 3, 3]
        "pbc": np.ones((len(records), 3), dtype=bool),
        "per_atom_keys": np.array(["forces"], dtype=np.str_),
        "energy": np.array([r["energy"] for r in records], dtype=np.float64),
        "forces": np.concatenate([r["forces"] for r in records]).astype(np.float32),
        "stress": np.stack([r["stress"] for r in records]),  # [F, 3, 3] eV/A^3
        "system": np.array([r["system"] for r in records], dtype=np.str_),
        "run": np.array([r["run"] for r in records], dtype=np.int64),
        "md_step": np.array([r["md_step"] for r in records], dtype=np.int64),
    }
    assert np.array_equal(arrays["pos"].astype(np.float64),
                          np.concatenate([r["atoms"].positions for r in records]))  # fmt: skip
    metadata = {
        "dataset": "emt_metals",
        "calculator": "ase.calculators.emt.EMT (effective medium theory, ASE's parameters)",
        "units": {
            "pos": "Angstrom",
            "energy": "eV",
            "forces": "eV/Angstrom",
            "stress": "eV/Angstrom^3 (ASE sign: dE/d(strain)/volume, no kinetic part)",
        },
        "protocol": {
            "box": f"cubic fcc x {list(repeat)}",
            "lattice_constants": {k: v[2] for k, v in SYSTEMS.items()},
            "alloy": "CuAu: Cu and Au at random, 50/50",
            "strain": f"symmetric, entries N(0, {STRAIN_SD}^2); cell and positions scaled",
            "md": f"Langevin, dt {TIMESTEP_FS} fs, friction {FRICTION_PER_FS}/fs, fixcm=False, "
            "fixed cell, Maxwell-Boltzmann start + Stationary",
            "seed": seed,
            "equil_steps": equil,
            "interval_steps": interval,
            "frames_per_run": frames,
            "labels": "fresh EMT single point at the stored positions (wrapped, multiples of "
            "2^-12 A); forces rounded to 2^-14 eV/A",
        },  # fmt: skip
        "runs": runs,
        "versions": {
            "ase": importlib.metadata.version("ase"),
            "numpy": np.__version__,
            "python": platform.python_version(),
        },  # fmt: skip
        "script": "datasets/make_emt_metals.py",
    }
    return arrays, metadata


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=12, help="frames per run")
    parser.add_argument("--interval", type=int, default=25, help="MD steps between frames")
    parser.add_argument("--equil", type=int, default=200, help="equilibration steps")
    parser.add_argument("--repeat", type=int, nargs=3, default=(2, 2, 2), help="cubic cells")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    arrays, meta = generate(seed=args.seed, frames=args.frames, interval=args.interval,
                            equil=args.equil, repeat=tuple(args.repeat))  # fmt: skip
    write_npz(args.out, arrays, meta)
    for r in meta["runs"]:
        print(f"{r['system']:5s} run {r['run']}  T {r['temperature_K']:6.0f} K (kinetic "
              f"{r['mean_kinetic_temperature_K']:6.0f} K)  strain diag "
              f"{np.round(np.diag(r['strain']), 3).tolist()}")  # fmt: skip
    e = arrays["energy"] / arrays["n_atoms"]
    print(
        f"wrote {args.out} ({args.out.stat().st_size:,d} bytes): {len(e)} frames, energy "
        f"{e.min():.3f} .. {e.max():.3f} eV/atom, force RMS "
        f"{np.sqrt(np.mean(arrays['forces'].astype(float) ** 2)):.3f} eV/A, stress "
        f"{arrays['stress'].min():.4f} .. {arrays['stress'].max():.4f} eV/A^3, "
        f"{time.perf_counter() - t0:.0f} s"
    )


if __name__ == "__main__":
    main()
