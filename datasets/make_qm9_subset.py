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
this script reads qm9pack's CSV files directly (located without importing the package) and
reproduces ``get_data()``'s concatenate-and-merge with pandas, which qm9pack itself depends on.

Regenerate (from the repository root):  python3 datasets/make_qm9_subset.py
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import importlib.util
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read, write
from ase.units import Hartree

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "qm9_100.extxyz"
DEFAULT_SEED = 0
DEFAULT_N = 100

# QM9 raw-unit columns of qm9pack -> (info key, factor to the unit we store).
ENERGY_COLUMNS = {  # hartree -> eV
    "InternalEnergy_0K_au": "U0",
    "InternalEnergy_298K_au": "U",
    "Enthalphy_298K_au": "H",  # (sic: qm9pack's spelling)
    "GibbsFreeEnergy_298K_au": "G",
    "HOMO_au": "homo",
    "LUMO_au": "lumo",
    "HOMO_LUMO_gap_au": "gap",
    "ZPVE_au": "zpve",
}
PLAIN_COLUMNS = {  # kept in QM9's own unit
    "Dipole_debye": "mu",  # debye, magnitude |mu| only
    "Polarizability_bohr3": "alpha",  # bohr^3, isotropic (trace / 3)
    "R2_bohr2": "r2",  # bohr^2, electronic spatial extent <R^2>
    "Heatcapacity_Cv_cal_mol_K": "cv",  # cal/(mol K) at 298.15 K
    "RotA_GHz": "rot_A",  # GHz
    "RotB_GHz": "rot_B",
    "RotC_GHz": "rot_C",
}
ALLOWED_ELEMENTS = {"H", "C", "N", "O", "F"}
# Known value used to check the unit assumption: QM9 molecule 1 (methane), U0 in hartree.
METHANE_U0_HARTREE = -40.478930


def qm9pack_data_dir() -> Path:
    """Folder holding qm9pack's CSV files, found without importing qm9pack."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("qm9pack is not installed: pip install qm9pack")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def load_qm9_table():
    """The table ``qm9pack.get_data()`` returns, built the same way from the same files."""
    import pandas as pd

    folder = qm9pack_data_dir()
    parts = [pd.read_csv(folder / f"qm9_part{i}.csv") for i in (1, 2, 3)]
    table = pd.concat(parts, ignore_index=True)
    polar = pd.read_csv(folder / "qm9_polarizability.csv")
    table = pd.merge(table, polar, on="XYZ_file", how="inner")
    if not table["Index"].is_monotonic_increasing:
        raise RuntimeError("qm9pack rows are not sorted by QM9 index; selection would change")
    return table


def check_units(table) -> None:
    """Fail loudly if qm9pack's energies are not in hartree (QM9's raw unit)."""
    first = table.iloc[0]
    if int(first["Index"]) != 1 or first["SMILES"] != "C":
        raise RuntimeError("first qm9pack row is not QM9 molecule 1 (methane)")
    if abs(float(first["InternalEnergy_0K_au"]) - METHANE_U0_HARTREE) > 1e-6:
        raise RuntimeError("methane U0 does not match -40.478930 Ha: units changed?")
    if (table["Dipole_debye"] < 0).any():
        raise RuntimeError("negative dipole: qm9pack mu is expected to be a magnitude")


def row_to_atoms(row, row_position: int) -> Atoms:
    symbols = list(ast.literal_eval(row["Elements"]))
    positions = np.array(ast.literal_eval(row["XYZ_Ang"]), dtype=float).reshape(-1, 3)
    charges = np.array(ast.literal_eval(row["Mulliken_pop"]), dtype=float)
    n = int(row["N_atoms"])
    if not (len(symbols) == n == len(positions) == len(charges)):
        raise RuntimeError(f"inconsistent atom count in {row['XYZ_file']}")
    if not set(symbols) <= ALLOWED_ELEMENTS:
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

    table = load_qm9_table()
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
