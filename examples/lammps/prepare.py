"""Inputs of the LAMMPS examples (see README.md): LAMMPS data files, and for copper a small
potential trained on EMT and exported for pair_style equivar.

    python prepare.py ethanol        # ethanol.data: the first frame of datasets/ethanol_xtb.extxyz
    python prepare.py cu             # cu_emt run, cu.pt2 (LAMMPS package), cu.data (256 atoms)
    python prepare.py cu --epochs 5  # faster, rougher

EMT (ase.calculators.emt) labels the copper frames, so nothing is downloaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATASETS = HERE.parents[1] / "datasets"


def write_data(atoms, path: Path, elements: list[str]) -> None:
    """A LAMMPS data file (atom_style atomic); the cell is turned into LAMMPS's orientation
    (a along x, b in the xy plane) with the atoms' fractional coordinates kept."""
    from ase.data import atomic_masses, atomic_numbers
    from ase.geometry import cellpar_to_cell

    atoms = atoms.copy()
    atoms.set_cell(cellpar_to_cell(atoms.cell.cellpar()), scale_atoms=True)
    atoms.wrap()
    c = np.asarray(atoms.cell).tolist()
    lines = ["written by examples/lammps/prepare.py", "", f"{len(atoms)} atoms",
             f"{len(elements)} atom types", f"0 {c[0][0]!r} xlo xhi", f"0 {c[1][1]!r} ylo yhi",
             f"0 {c[2][2]!r} zlo zhi", f"{c[1][0]!r} {c[2][0]!r} {c[2][1]!r} xy xz yz", "",
             "Masses", ""]
    lines += [f"{t + 1} {float(atomic_masses[atomic_numbers[e]])!r}"
              for t, e in enumerate(elements)]
    lines += ["", "Atoms # atomic", ""]
    for i, (s, p) in enumerate(zip(atoms.get_chemical_symbols(), atoms.positions.tolist(),
                                   strict=True)):
        lines.append(f"{i + 1} {elements.index(s) + 1} {p[0]!r} {p[1]!r} {p[2]!r}")
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path} ({len(atoms)} atoms)")


def ethanol(out: Path) -> None:
    import ase.io

    atoms = ase.io.read(DATASETS / "ethanol_xtb.extxyz", index=0)
    atoms.positions += 10.0 - atoms.positions.mean(axis=0)
    atoms.cell, atoms.pbc = np.eye(3) * 20.0, True  # images 20 A apart: beyond any cutoff
    write_data(atoms, out / "ethanol.data", ["H", "C", "O"])


def emt_frames(n_frames: int, seed: int = 0) -> list:
    """Strained, rattled 32-atom fcc copper boxes with EMT energies, forces and stresses."""
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n_frames):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
        strain = np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3))
        atoms.set_cell(atoms.cell @ strain, scale_atoms=True)
        atoms.positions += rng.normal(scale=rng.uniform(0.03, 0.15), size=atoms.positions.shape)
        atoms.calc = EMT()
        labels = dict(energy=atoms.get_potential_energy(), forces=atoms.get_forces(),
                      stress=atoms.get_stress())
        atoms.calc = SinglePointCalculator(atoms, **labels)
        frames.append(atoms)
    return frames


def copper(out: Path, epochs: int) -> None:
    from ase.build import bulk

    from equivar.train import fit, load_config
    from equivar.train.lammps_export import export_lammps

    frames = emt_frames(80)
    config = load_config(None, [
        "data.cutoff=4.5", "data.batch_size=8", "model.name=potential",
        "model.options={preset: S, num_channels: 16}", "loss.stress=1.0", "optim.lr=0.02",
        "optim.schedule=cosine", f"epochs={epochs}", "precision=float64",
        f"output={out / 'runs' / 'cu_emt'}", "device=cpu"], require_train=False)
    result = fit(config, train=frames)
    path = export_lammps(result["checkpoint"], out / "cu.pt2", dtype="float64")
    print(f"exported {path}")
    write_data(bulk("Cu", "fcc", a=3.61, cubic=True).repeat((4, 4, 4)), out / "cu.data", ["Cu"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("system", choices=["ethanol", "cu"])
    parser.add_argument("--out", default=str(HERE), help="folder to write to (default: here)")
    parser.add_argument("--epochs", type=int, default=40, help="copper training epochs")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.system == "ethanol":
        ethanol(out)
    else:
        copper(out, args.epochs)


if __name__ == "__main__":
    main()
