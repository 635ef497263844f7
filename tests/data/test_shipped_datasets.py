"""The small datasets shipped in datasets/: they read, hold what the README promises, in its units.

Pure ase/numpy (equivar is not imported). The last tests recompute ethanol labels with tblite and
are skipped when it is not installed.
"""

from pathlib import Path

import numpy as np
import pytest
from ase.io import read
from ase.units import Hartree, kB

DATASETS = Path(__file__).resolve().parents[2] / "datasets"
QM9 = DATASETS / "qm9_100.extxyz"
ETHANOL = DATASETS / "ethanol_xtb.extxyz"
ALLOWED = {"H", "C", "N", "O", "F"}

QM9_INFO_KEYS = {
    "qm9_index",
    "qm9_name",
    "qm9pack_row",
    "smiles",
    "inchi",
    "U0",
    "U",
    "H",
    "G",
    "homo",
    "lumo",
    "gap",
    "zpve",
    "mu",
    "alpha",
    "r2",
    "cv",
    "rot_A",
    "rot_B",
    "rot_C",
}
QM9_FLOAT_KEYS = sorted(QM9_INFO_KEYS - {"qm9_index", "qm9_name", "qm9pack_row", "smiles", "inchi"})
# QM9's isolated-atom U0 (B3LYP/6-31G(2df,p)), hartree: for an atomization-energy unit check.
QM9_ATOM_U0_HARTREE = {
    "H": -0.500273,
    "C": -37.846772,
    "N": -54.583861,
    "O": -75.064579,
    "F": -99.718730,
}


@pytest.fixture(scope="module")
def qm9():
    return read(QM9, ":", format="extxyz")


@pytest.fixture(scope="module")
def ethanol():
    return read(ETHANOL, ":", format="extxyz")


def test_files_exist_and_fit_the_size_budget():
    assert QM9.is_file() and ETHANOL.is_file()
    assert QM9.stat().st_size + ETHANOL.stat().st_size < 1_000_000


# ---------------------------------------------------------------- QM9 subset


def test_qm9_frames_and_fields(qm9):
    assert len(qm9) == 100
    indices = [a.info["qm9_index"] for a in qm9]
    assert indices == sorted(set(indices)), "frames are unique and sorted by QM9 index"
    for atoms in qm9:
        assert QM9_INFO_KEYS <= set(atoms.info), QM9_INFO_KEYS - set(atoms.info)
        assert atoms.info["qm9_name"] == f"dsgdb9nsd_{atoms.info['qm9_index']:06d}"
        assert atoms.info["inchi"].startswith("InChI=1S/")
        assert isinstance(atoms.info["smiles"], str) and atoms.info["smiles"]
        for key in QM9_FLOAT_KEYS:
            assert np.isfinite(atoms.info[key]), key
        assert set(atoms.get_chemical_symbols()) <= ALLOWED
        assert sum(s != "H" for s in atoms.get_chemical_symbols()) <= 9
        assert not atoms.pbc.any()
        assert np.isfinite(atoms.positions).all()
        # ase.io.read moves `energy` and the per-atom `charges` onto a SinglePointCalculator
        assert atoms.get_potential_energy() == atoms.info["U0"]
        charges = atoms.get_charges()
        assert charges.shape == (len(atoms),) and np.isfinite(charges).all()
        assert abs(charges.sum()) < 1e-3  # neutral molecules, Mulliken charges in e


def test_qm9_energies_are_in_ev(qm9):
    for atoms in qm9:
        info = atoms.info
        n = len(atoms)
        atoms_ref = sum(QM9_ATOM_U0_HARTREE[s] for s in atoms.get_chemical_symbols()) * Hartree
        assert -6.0 < (info["U0"] - atoms_ref) / n < -2.0  # atomization energy per atom, eV
        assert -3000.0 < info["U0"] / n < -100.0
        # H - U = kB T at 298.15 K (ideal gas), a unit check independent of QM9's numbers
        assert abs(info["H"] - info["U"] - kB * 298.15) < 1e-4
        assert info["U0"] < info["U"] and info["G"] < info["H"]
        assert abs(info["gap"] - (info["lumo"] - info["homo"])) < 5e-3  # 4-decimal hartree input
        assert -12.0 < info["homo"] < -3.0 and -5.0 < info["lumo"] < 5.0
        assert 0.5 < info["gap"] < 17.0
        assert 0.3 < info["zpve"] < 8.0


def test_qm9_other_targets_in_qm9_units(qm9):
    for atoms in qm9:
        info = atoms.info
        assert 0.0 <= info["mu"] < 30.0  # debye, magnitude
        assert 5.0 < info["alpha"] < 200.0  # bohr^3, isotropic
        assert 10.0 < info["r2"] < 4000.0  # bohr^2
        assert 5.0 < info["cv"] < 50.0  # cal/(mol K)
        assert info["rot_A"] >= info["rot_B"] >= info["rot_C"] >= 0.0  # GHz


# ---------------------------------------------------------------- ethanol GFN2-xTB MD


def test_ethanol_frames_and_fields(ethanol):
    assert len(ethanol) == 200
    steps = np.array([a.info["md_step"] for a in ethanol])
    times = np.array([a.info["time_fs"] for a in ethanol])
    assert (np.diff(steps) > 0).all()
    np.testing.assert_allclose(times, 0.5 * steps)  # 0.5 fs time step
    for atoms in ethanol:
        assert atoms.get_chemical_formula() == "C2H6O"
        assert set(atoms.get_chemical_symbols()) <= ALLOWED
        assert not atoms.pbc.any()
        assert np.isfinite(atoms.positions).all()
        assert np.isfinite(atoms.get_potential_energy())
        forces = atoms.get_forces()
        assert forces.shape == (9, 3) and np.isfinite(forces).all()
        dipole = atoms.get_dipole_moment()
        assert dipole.shape == (3,) and np.isfinite(dipole).all()


def test_ethanol_units_are_plausible(ethanol):
    energies = np.array([a.get_potential_energy() for a in ethanol])
    forces = np.array([a.get_forces() for a in ethanol])
    dipoles = np.array([a.get_dipole_moment() for a in ethanol])
    # GFN2-xTB total energy of ethanol is about -11.38 hartree = -309.7 eV
    assert np.all(np.abs(energies + 309.6) < 1.5)
    # thermal spread at 500 K: about sqrt(dof / 2) kB T = 0.14 eV
    assert 0.05 < energies.std() < 0.5
    assert 0.3 < np.sqrt(np.mean(forces**2)) < 3.0  # eV / Angstrom
    # ethanol's dipole is ~1.7 D = 0.35 e*Angstrom: stored in e*Angstrom, not debye
    norms = np.linalg.norm(dipoles, axis=1)
    assert np.all((norms > 0.05) & (norms < 1.0))


def test_ethanol_forces_have_no_net_force_or_torque(ethanol):
    # an isolated molecule: translation and rotation invariance of the energy. The net force
    # vanishes to the 1e-8 print precision; the net torque only to the SCF convergence of the
    # xTB forces (measured <= 4.5e-5 eV on this file), so it gets a looser bound.
    for atoms in ethanol:
        forces = atoms.get_forces()
        centred = atoms.positions - atoms.positions.mean(axis=0)
        assert np.abs(forces.sum(axis=0)).max() < 1e-6
        assert np.abs(np.cross(centred, forces).sum(axis=0)).max() < 2e-4


def _fresh_xtb(atoms):
    from tblite.ase import TBLite

    atoms = atoms.copy()
    atoms.calc = TBLite(method="GFN2-xTB", verbosity=0)
    return atoms.get_potential_energy(), atoms.get_forces()


def test_ethanol_labels_recompute_with_tblite(ethanol):
    pytest.importorskip("tblite")
    for stored in ethanol[:3]:
        energy, forces = _fresh_xtb(stored)
        ref_forces = stored.get_forces()
        assert abs(energy - stored.get_potential_energy()) <= 1e-6 * abs(energy)
        np.testing.assert_allclose(
            forces, ref_forces, rtol=1e-6, atol=1e-6 * np.abs(ref_forces).max()
        )


def test_ethanol_xtb_forces_rotate_exactly(ethanol):
    pytest.importorskip("tblite")
    from scipy.spatial.transform import Rotation

    atoms = ethanol[0].copy()
    energy, forces = _fresh_xtb(atoms)
    rot = Rotation.random(random_state=0).as_matrix()
    atoms.positions = atoms.positions @ rot.T + np.array([0.3, -1.2, 2.0])
    energy_rot, forces_rot = _fresh_xtb(atoms)
    assert abs(energy_rot - energy) < 1e-7
    np.testing.assert_allclose(forces_rot, forces @ rot.T, atol=1e-6)
