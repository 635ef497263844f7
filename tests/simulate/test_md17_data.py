"""The MD17-style GFN2-xTB data in datasets/md17_xtb/ and its loader, load_md17.

(Kept here with the simulation tests that made it; it reads the files with numpy, ase and
equivar.data only.)
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms

from equivar.data.datasets.md17 import MOLECULES, N_TEST, N_VALID, load_md17, md17_splits

ROOT = Path(__file__).resolve().parents[2] / "datasets" / "md17_xtb"
FORMULAS = {
    "aspirin": "C9H8O4", "azobenzene": "C12H10N2", "benzene": "C6H6", "ethanol": "C2H6O",
    "malonaldehyde": "C3H4O2", "naphthalene": "C10H8", "paracetamol": "C8H9NO2",
    "salicylic_acid": "C7H6O3", "toluene": "C7H8", "uracil": "C4H4N2O2",
}  # fmt: skip
FRAMES = 1500
POSITION_QUANTUM, FORCE_QUANTUM = 2.0**-12, 2.0**-14


def _arrays(name):
    with np.load(ROOT / f"{name}.npz", allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def test_files_fit_the_size_budget():
    sizes = [(ROOT / f"{m}.npz").stat().st_size for m in MOLECULES]
    assert sum(sizes) < 4_500_000


@pytest.mark.parametrize("name", MOLECULES)
def test_each_file_holds_what_the_readme_promises(name):
    a = _arrays(name)
    n = len(a["z"])
    assert Atoms(numbers=a["z"]).get_chemical_formula("hill") == FORMULAS[name]
    assert a["R"].shape == a["F"].shape == (FRAMES, n, 3)
    assert a["R"].dtype == a["F"].dtype == np.float32 and a["E"].dtype == np.float64
    assert str(a["name"]) == name and str(a["formula"]) == FORMULAS[name]
    assert "GFN2-xTB" in str(a["method"]) and "500 K" in str(a["protocol"])
    np.testing.assert_array_equal(a["md_step"], 10 * np.arange(1, FRAMES + 1))
    np.testing.assert_allclose(a["time_fs"], 0.5 * a["md_step"])
    r, f = a["R"].astype(np.float64), a["F"].astype(np.float64)
    assert np.array_equal(r / POSITION_QUANTUM, np.round(r / POSITION_QUANTUM))
    assert np.array_equal(f / FORCE_QUANTUM, np.round(f / FORCE_QUANTUM))
    assert np.all(np.isfinite(a["E"])) and np.ptp(a["E"]) > 0.1  # eV, a 500 K trajectory
    assert 0.7 < np.sqrt(np.mean(f**2)) < 1.6  # eV/Angstrom
    assert np.abs(f.sum(axis=1)).max() < 1e-3  # no net force on a free molecule
    d = np.linalg.norm(r[:, :, None] - r[:, None, :], axis=-1) + 10 * np.eye(n)
    assert d.min() > 0.8  # nothing collapsed or broke through


def _check_labels(name, frames):
    pytest.importorskip("tblite")
    from tblite.ase import TBLite

    a = _arrays(name)
    for k in frames:
        atoms = Atoms(numbers=a["z"], positions=a["R"][k].astype(np.float64))
        atoms.calc = TBLite(method="GFN2-xTB", verbosity=0)
        assert atoms.get_potential_energy() == pytest.approx(a["E"][k], abs=1e-5)
        err = np.abs(atoms.get_forces() - a["F"][k]).max()
        assert err < 0.5 * FORCE_QUANTUM + 1e-5


def test_labels_are_gfn2_xtb_at_the_stored_positions():
    _check_labels("ethanol", [0])
    _check_labels("malonaldehyde", [FRAMES - 1])


@pytest.mark.slow
@pytest.mark.parametrize("name", MOLECULES)
def test_labels_of_every_molecule(name):
    _check_labels(name, [0, FRAMES // 2, FRAMES - 1])


def test_load_md17_reads_one_molecule_with_its_splits():
    a = _arrays("malonaldehyde")
    small = load_md17("malonaldehyde", cutoff=4.0, split="train", train_size=50,
                      dtype=torch.float64)  # fmt: skip
    idx = md17_splits(FRAMES, 50)["train"]
    assert len(small) == 50 and small.cutoff == 4.0
    assert [g.energy.item() for g in small] == pytest.approx(a["E"][idx].tolist(), abs=1e-9)
    np.testing.assert_allclose(small[3].forces.numpy(), a["F"][idx[3]], atol=1e-7)
    np.testing.assert_allclose(small[3].pos.numpy(), a["R"][idx[3]], atol=1e-7)
    assert len(load_md17("malonaldehyde", cutoff=4.0, split="test")) == N_TEST


def test_splits_are_disjoint_nested_and_documented():
    big, small = md17_splits(FRAMES, 1000), md17_splits(FRAMES, 50)
    for s in (big, small):
        parts = [set(s[k].tolist()) for k in ("train", "valid", "test")]
        assert sum(map(len, parts)) == len(set().union(*parts))
    assert len(big["valid"]) == N_VALID and len(big["test"]) == N_TEST
    np.testing.assert_array_equal(big["test"], small["test"])
    np.testing.assert_array_equal(big["train"][:50], small["train"])
    t = md17_splits(FRAMES, 50, mode="time")
    assert t["test"].min() == FRAMES - N_TEST and t["train"].max() < t["valid"].min()
    assert len(t["train"]) == 50
    with pytest.raises(ValueError, match="exceeds"):
        md17_splits(FRAMES, 1001)
    with pytest.raises(ValueError, match="mode"):
        md17_splits(FRAMES, 50, mode="blocks")


def test_names_and_missing_files(tmp_path):
    assert len(load_md17("Salicylic acid", cutoff=3.0, split="valid")) == N_VALID
    with pytest.raises(ValueError, match="unknown MD17 molecule 'caffeine'"):
        load_md17("caffeine")
    with pytest.raises(ValueError, match="split"):
        load_md17("ethanol", split="training")
    with pytest.raises(FileNotFoundError, match="make_md17_xtb.py ethanol"):
        load_md17("ethanol", root=tmp_path)
