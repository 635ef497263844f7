"""Build a potential and a property model, rotate/reflect/translate/permute a molecule, and watch
the energy stay, the forces and the dipole rotate, and the polarizability turn as R A R^T.

    python examples/symmetry_check.py            # a few seconds on a CPU
"""

from __future__ import annotations

import torch
from ase.io import read
from torch_geometric.data import Batch

from equivar.data import from_ase
from equivar.models import build
from equivar.testing import assert_conservative, assert_equivariant

DATA = "datasets/qm9_100.extxyz"
CUTOFF = 5.0


def graph(atoms):
    return Batch.from_data_list([from_ase(atoms, CUTOFF, dtype=torch.float64)])


def main() -> None:
    torch.manual_seed(0)
    atoms = read(DATA, index=0)
    print(f"molecule: {atoms.get_chemical_formula()} ({len(atoms)} atoms) from {DATA}")

    potential = build("potential", preset="S", species=["H", "C", "N", "O", "F"], cutoff=CUTOFF,
                      dtype="float64").eval()
    props = build("property", preset="S", species=["H", "C", "N", "O", "F"], cutoff=CUTOFF,
                  lmax=2, targets={"mu": "dipole", "alpha": "tensor"}, dtype="float64").eval()

    R = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64)).Q
    R = R * torch.sign(torch.linalg.det(R))  # a proper rotation ...
    R = -R  # ... times inversion: an improper one (a reflection composed with a rotation)
    moved = atoms.copy()
    moved.positions = atoms.positions @ R.numpy().T + [1.0, -2.0, 0.5]
    order = torch.randperm(len(atoms))
    moved = moved[order.numpy()]  # relabel the atoms as well

    a, b = potential(graph(atoms)), potential(graph(moved))
    pa, pb = props(graph(atoms)), props(graph(moved))
    print(f"energy:         {a['energy'].item():+.12f} eV -> {b['energy'].item():+.12f} eV")
    force_err = (b["forces"] - (a["forces"] @ R.T)[order]).abs().max().item()
    print(f"forces rotate and follow the atoms:   max error {force_err:.1e} eV/A")
    mu_err = (pb["mu"] - pa["mu"] @ R.T).abs().max().item()
    print(f"dipole rotates (translation-free):    max error {mu_err:.1e} e*A")
    alpha_err = (pb["alpha"] - R @ pa["alpha"] @ R.T).abs().max().item()
    print(f"polarizability turns as R A R^T:      max error {alpha_err:.1e} A^3")

    errors = assert_equivariant(potential, graph(atoms))
    print("assert_equivariant (worst relative error per output and transformation):")
    for name, per in errors.items():
        print(f"  {name:<12} " + "  ".join(f"{t}={e:.1e}" for t, e in per.items()))
    checks = assert_conservative(potential, graph(atoms))
    print("assert_conservative: " + "  ".join(f"{k}={v:.1e}" for k, v in checks.items()))


if __name__ == "__main__":
    main()
