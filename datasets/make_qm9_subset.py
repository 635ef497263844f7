"""Extract a small, fixed QM9 subset from the ``qm9pack`` PyPI package into extxyz.

Selection: the full QM9 table as ``qm9pack.get_data()`` builds it (its three CSV parts concatenated
in order, inner-joined with its polarizability CSV on ``XYZ_file``; 130831 rows sorted by QM9 index)
is sampled with ``numpy.random.default_rng(seed).choice(n_rows, size=n, replace=False)`` and the
chosen row positions are sorted, so frames appear in increasing QM9 index.

Units: qm9pack keeps QM9's raw units (energies in hartree, mu in debye, alpha in bohr^3, r2 in
bohr^2, Cv in cal/(mol K)). Energies (U0, U, H, G, zpve, homo, lumo, gap) are written in eV,
converted with ``ase.units.Hartree``; everything else keeps its QM9 unit. ``energy`` duplicates
U0 (eV) so a potential can train on it; ``ase.io.read`` turns it into a SinglePointCalculator
result.

qm9pack 1.0.3 imports ``pkg_resources`` at import time, which recent setuptools no longer ship, so
its CSV files are read directly (located without importing the package) by
``equivar.data.datasets.qm9.load_table``, which reproduces ``get_data()``'s concatenate-and-merge
with pandas (a qm9pack dependency); the column names, units and checks come from that module too.

Regenerate (from the repository root):  python3 datasets/make_qm9_subset.py
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read, write
from ase.units import Hartree

from equivar.data.datasets.qm9 import (
    ALLOWED_ELEMENTS,
    ENERGY_COLUMNS,
    PLAIN_COLUMNS,
    check_units,
    load_table,
)

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "qm9_100.extxyz"
DEFAULT_SEED = 0
DEFAULT_N = 100


def row_to_atoms(row, row_position: int) -> Atoms:
    symbols = list(ast.literal_eval(row["Elements"]))
    positions = np.array(ast.literal_eval(row["XYZ_Ang"]), dtype=float).reshape(-1, 3)
    charges = np.array(ast.literal_eval(row["Mulliken_pop"]), dtype=float)
    n = int(row["N_atoms"])
    if not (len(symbols) == n == len(positions) == len(charges)):
        raise RuntimeError(f"inconsistent atom count in {row['XYZ_file']}")
    if not set(symbols) <= set(ALLOWED_ELEMENTS):
        raise RuntimeError(f"unexpected element in {row['XYZ_file']}: {set(symbols)}")

    atoms = Atoms(symbols=symbols, positions=positions, pbc=False)
    atoms.new_array("charges", charges)  # Mulliken charges, e (B3LYP/6-31G(2df,p))
    info = {
        "qm9_index": int(row["Index"]),  # QM9 / GDB-9 molecule number, 1..133885
        "qm9_name": str(row["XYZ_file"]).removesuffix(".xyz"),
        "qm9pack_row": int(row_position),  # 0-based row in qm9pack.get_data()
        "smiles": str(row["SMILES"]),
        "inchi": str(row["InChi"]),
    }
    for column, key in ENERGY_COLUMNS.items():
        info[key] = float(row[column]) * Hartree
    for column, key in PLAIN_COLUMNS.items():
        info[key] = float(row[column])
    info["energy"] = info["U0"]
    atoms.info.update(info)
    return atoms


def verify_round_trip(path: Path, frames: list[Atoms]) -> None:
    """Read the written file back and compare every field."""
    back = read(path, ":", format="extxyz")
    if len(back) != len(frames):
        raise RuntimeError("frame count changed on read-back")
    for a, b in zip(frames, back, strict=True):
        assert a.get_chemical_symbols() == b.get_chemical_symbols()
        assert np.allclose(a.positions, b.positions, atol=1e-8, rtol=0)
        # ase.io.read moves `energy` and per-atom `charges` into a SinglePointCalculator.
        assert np.allclose(a.arrays["charges"], b.get_charges(), atol=1e-8, rtol=0)
        assert b.get_potential_energy() == a.info["energy"]
        for key, value in a.info.items():
            if key == "energy":
                continue
            assert b.info[key] == value, (key, b.info[key], value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=DEFAULT_N, help="number of molecules")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="selection seed")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output extxyz path")
    args = parser.parse_args(argv)

    table = load_table()
    check_units(table)
    rng = np.random.default_rng(args.seed)
    rows = np.sort(rng.choice(len(table), size=args.n, replace=False))
    frames = [row_to_atoms(table.iloc[int(r)], int(r)) for r in rows]

    args.out.parent.mkdir(parents=True, exist_ok=True)
    write(args.out, frames, format="extxyz")
    verify_round_trip(args.out, frames)
    version = importlib.metadata.version("qm9pack")
    print(
        f"qm9pack {version}: {len(table)} molecules; wrote {len(frames)} to {args.out} "
        f"({args.out.stat().st_size} bytes), seed {args.seed}"
    )
    print("QM9 indices:", " ".join(str(f.info["qm9_index"]) for f in frames))


if __name__ == "__main__":
    main()
