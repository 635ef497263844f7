"""read() round trips for extxyz and both .npz layouts, and its error messages."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from equivar import keys as K
from equivar.data import AtomsDataset, read, write_npz


def emt_frames(n: int = 3) -> list:
    frames = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((1, 1, 1 + k % 2))
        atoms.rattle(0.05, seed=k)
        atoms.calc = EMT()
        atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, **atoms.calc.results)
        atoms.info["gap"] = 0.1 * k
        atoms.arrays["q"] = np.full(len(atoms), 0.5 * k)
        frames.append(atoms)
    return frames


def assert_same_graphs(got, expected, atol=0.0):
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert set(g.keys()) == set(e.keys())
        for key in e.keys():
            if g[key].is_floating_point():
                torch.testing.assert_close(g[key], e[key], atol=atol, rtol=0, msg=key)
            else:
                assert torch.equal(g[key], e[key]), key


def test_extxyz_round_trip(tmp_path):
    import ase.io

    frames = emt_frames()
    path = tmp_path / "frames.extxyz"
    ase.io.write(path, frames, format="extxyz")
    ds = read(path, 3.0, dtype=torch.float64)
    expected = AtomsDataset(frames, 3.0, dtype=torch.float64)
    assert isinstance(ds, AtomsDataset) and len(ds.atoms) == 3
    assert_same_graphs(ds, expected, atol=1e-6)  # extxyz stores text
    assert ds[0][K.STRESS].shape == (1, 3, 3) and ds[0][K.FORCES].shape == (4, 3)
    assert len(read(path, 3.0, index="1:")) == 2 and len(read(path, 3.0, index=-1)) == 1


def test_npz_round_trip_atoms_and_graphs(tmp_path):
    water = molecule("H2O")
    water.info.update(charge=1, spin=2, **{K.DIPOLE: [0.0, 0.1, 0.2]})
    water.calc = SinglePointCalculator(water, energy=-1.0, forces=np.ones((3, 3)))
    frames = emt_frames(2)
    for atoms in frames:
        atoms.info[K.DIPOLE] = [1.0, 2.0, 3.0]
    frames = [frames[0], water, frames[1]]
    for f in frames:
        f.calc.results.pop("free_energy", None)
        f.calc.results.pop("energies", None)
        f.calc.results.pop("stress", None)
        f.info.pop("gap", None)
        f.arrays.pop("q", None)
    expected = AtomsDataset(frames, 2.5, dtype=torch.float64)
    path = tmp_path / "frames.npz"
    write_npz(path, frames)
    with np.load(path) as f:
        assert f["n_atoms"].tolist() == [4, 3, 8] and f["pos"].shape == (15, 3)
        assert f["per_atom_keys"].tolist() == [K.FORCES]
    assert_same_graphs(read(path, 2.5, dtype=torch.float64), expected)
    # from graphs (an AtomsDataset) gives the same file contents
    path2 = tmp_path / "graphs.npz"
    write_npz(path2, expected)
    assert_same_graphs(read(path2, 2.5, dtype=torch.float64), expected)
    assert len(read(path2, 2.5, index="::2")) == 2


def test_npz_round_trip_with_stress_and_per_atom_extras(tmp_path):
    frames = emt_frames()
    expected = AtomsDataset(frames, 3.0, dtype=torch.float64)
    path = tmp_path / "emt.npz"
    write_npz(path, frames)
    with np.load(path) as f:
        assert sorted(f["per_atom_keys"].tolist()) == [K.FORCES, K.NODE_ENERGY, "q"]
    assert_same_graphs(read(path, 3.0, dtype=torch.float64), expected)


def test_md17_layout(tmp_path):
    rng = np.random.default_rng(0)
    base = molecule("CH4").positions
    positions = base + 0.05 * rng.normal(size=(4, 5, 3))
    energy, forces = rng.normal(size=(4, 1)), rng.normal(size=(4, 5, 3))
    path = tmp_path / "md17_methane.npz"
    np.savez(path, R=positions, z=np.array([6, 1, 1, 1, 1]), E=energy, F=forces)
    ds = read(path, 2.0, dtype=torch.float64)
    assert len(ds) == 4 and not ds[0][K.PBC].any()
    for f, data in enumerate(ds):
        assert data[K.ENERGY].tolist() == [energy[f, 0]]  # units are the file's: no conversion
        assert torch.equal(data[K.FORCES], torch.tensor(forces[f]))
        assert torch.equal(data[K.POSITIONS], torch.tensor(positions[f]))
    assert [d[K.ENERGY].item() for d in read(path, 2.0, index="1:3", dtype=torch.float64)] == [
        energy[1, 0],
        energy[2, 0],
    ]


def test_read_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read(tmp_path / "missing.extxyz", 3.0)
    unknown = tmp_path / "frames.qqq"
    unknown.write_text("hello\n")
    with pytest.raises(ValueError, match="unknown file format"):
        read(unknown, 3.0)
    bad = tmp_path / "bad.npz"
    np.savez(bad, coords=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="unrecognised .npz layout"):
        read(bad, 3.0)
    np.savez(bad, n_atoms=np.array([2]), z=np.array([1, 1]))
    with pytest.raises(ValueError, match=r"missing required key\(s\) \['pos'\]"):
        read(bad, 3.0)
    np.savez(bad, n_atoms=np.array([2, 1]), z=np.array([1, 1]), pos=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="n_atoms sums to 3"):
        read(bad, 3.0)
    np.savez(bad, n_atoms=np.array([2]), z=np.array([1, 1]), pos=np.eye(3)[:2], energy=[1.0, 2.0])
    with pytest.raises(ValueError, match="energy has shape"):
        read(bad, 3.0)
    np.savez(bad, R=np.zeros((2, 3, 3)), z=np.array([1, 1, 1]), E=np.zeros(3))
    with pytest.raises(ValueError, match="E has shape"):
        read(bad, 3.0)
    np.savez(bad, R=np.zeros((2, 3, 3)), E=np.zeros(2))
    with pytest.raises(ValueError, match=r"missing required key\(s\) \['z'\]"):
        read(bad, 3.0)
    np.savez(bad, R=np.zeros((2, 3, 3)), z=np.array([1, 1]))
    with pytest.raises(ValueError, match="R has shape"):
        read(bad, 3.0)


def test_write_npz_requires_same_targets(tmp_path):
    water = molecule("H2O")
    water.calc = SinglePointCalculator(water, energy=-1.0)
    with pytest.raises(ValueError, match="every frame must carry the same targets"):
        write_npz(tmp_path / "x.npz", [water, molecule("CH4")])
    with pytest.raises(TypeError, match="ase.Atoms or Data"):
        write_npz(tmp_path / "x.npz", ["H2O"])
