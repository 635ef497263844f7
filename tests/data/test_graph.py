"""from_ase / to_ase, validation errors, AtomsDataset and the loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.emt import EMT

from equivar import keys as K
from equivar.data import (
    AtomsDataset,
    check_species,
    from_ase,
    loader,
    to_ase,
    validate_structure,
)


@pytest.fixture
def cu_emt() -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.05, seed=1)
    atoms.calc = EMT()
    atoms.get_forces()
    atoms.get_stress()
    return atoms


def test_from_ase_targets_from_calculator(cu_emt):
    data = from_ase(cu_emt, 4.0, dtype=torch.float64)
    n = len(cu_emt)
    assert data[K.POSITIONS].shape == (n, 3) and data[K.POSITIONS].dtype == torch.float64
    assert data[K.ATOMIC_NUMBERS].dtype == torch.int64
    assert data[K.CELL].shape == (1, 3, 3) and data[K.PBC].shape == (1, 3)
    assert data[K.ENERGY].shape == (1,)
    assert data[K.ENERGY].item() == pytest.approx(cu_emt.get_potential_energy(), abs=1e-12)
    np.testing.assert_allclose(data[K.FORCES].numpy(), cu_emt.get_forces(), atol=1e-12)
    stress = data[K.STRESS]
    assert stress.shape == (1, 3, 3) and torch.equal(stress, stress.transpose(1, 2))
    np.testing.assert_allclose(stress[0].numpy(), cu_emt.get_stress(voigt=False), atol=1e-12)
    assert data[K.TOTAL_CHARGE].tolist() == [0.0] and data[K.SPIN].tolist() == [1.0]
    # edges obey the convention and the cutoff, cell smaller than twice the cutoff
    j, i = data[K.EDGE_INDEX]
    vec = data.pos[j] - data.pos[i] + data.shifts @ data.cell[0]
    assert vec.norm(dim=1).max() < 4.0 and data.shifts.abs().max() >= 1


def test_from_ase_info_arrays_and_dtype():
    atoms = molecule("H2O")
    atoms.info.update(
        charge=-1,
        spin=2,
        gap=1.5,
        dipole=[0.1, 0.2, 0.3],
        polarizability=np.eye(3),
        tag="x",
        converged=True,
    )
    atoms.arrays["hirshfeld"] = np.array([0.1, -0.2, 0.1])
    atoms.arrays["frame_index"] = np.arange(3)  # PyG would offset it when batching: skipped
    data = from_ase(atoms, 2.0)
    assert data[K.POSITIONS].dtype == torch.get_default_dtype()
    assert data[K.CELL].abs().sum() == 0 and not data[K.PBC].any()
    assert data[K.TOTAL_CHARGE].tolist() == [-1.0] and data[K.SPIN].tolist() == [2.0]
    assert data["gap"].shape == (1,) and data[K.DIPOLE].shape == (1, 3)
    assert data[K.POLARIZABILITY].shape == (1, 3, 3)
    assert data["hirshfeld"].shape == (3,)
    assert "tag" not in data and "charge" not in data and "frame_index" not in data
    assert "converged" not in data  # flags are not targets


def test_total_charge_from_initial_charges():
    atoms = molecule("H2O")
    atoms.set_initial_charges([-0.8, 0.4, 0.4])
    assert from_ase(atoms, 2.0)[K.TOTAL_CHARGE].item() == pytest.approx(0.0)
    atoms.set_initial_charges([-1.0, 0.0, 0.0])
    assert from_ase(atoms, 2.0)[K.TOTAL_CHARGE].item() == pytest.approx(-1.0)


def test_to_ase_round_trip(cu_emt):
    cu_emt.info["gap"] = 0.5
    cu_emt.arrays["q"] = np.linspace(0, 1, len(cu_emt))
    data = from_ase(cu_emt, 3.0, dtype=torch.float64)
    atoms = to_ase(data)
    assert atoms.get_potential_energy() == pytest.approx(cu_emt.get_potential_energy())
    np.testing.assert_allclose(atoms.get_stress(), cu_emt.get_stress(), atol=1e-12)
    again = from_ase(atoms, 3.0, dtype=torch.float64)
    assert set(again.keys()) == set(data.keys())
    for key in data.keys():
        assert torch.equal(again[key], data[key]), key


def test_mixed_pbc_keeps_cell():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.pbc = [True, True, False]
    data = from_ase(atoms, 3.0)
    assert data[K.PBC].tolist() == [[True, True, False]]
    assert data.shifts[:, 2].abs().sum() == 0 and data.shifts[:, :2].abs().sum() > 0


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda a: a.positions.__setitem__((1, 0), np.nan), "pos has non-finite"),
        (lambda a: a.numbers.__setitem__(0, 0), "z must be in 1..118"),
        (lambda a: a.numbers.__setitem__(0, 119), "atomic number 119"),
        (lambda a: a.positions.__setitem__(1, a.positions[0] + 1e-3), "atoms 0 and 1"),
        (lambda a: a.info.__setitem__("spin", 0), "spin"),
        (lambda a: a.info.__setitem__("charge", "minus"), "charge"),
    ],
)
def test_from_ase_errors(change, match):
    atoms = molecule("H2O")
    change(atoms)
    with pytest.raises(ValueError, match=match):
        from_ase(atoms, 2.0)


def test_from_ase_error_empty_and_cutoff():
    with pytest.raises(ValueError, match="pos is empty"):
        from_ase(Atoms(), 2.0)
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="cutoff"):
            from_ase(molecule("H2O"), bad)
    with pytest.raises(TypeError, match="atoms must be an ase.Atoms"):
        from_ase("H2O", 2.0)


def test_periodic_image_too_close():
    atoms = Atoms("Cu", positions=[[0, 0, 0]], cell=[0.005, 3.0, 3.0], pbc=True)
    with pytest.raises(ValueError, match=r"coincident atoms: atoms 0 and 0 \(periodic image"):
        from_ase(atoms, 2.0)
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [2.995, 0, 0]], cell=[3.0, 3.0, 3.0], pbc=True)
    with pytest.raises(ValueError, match="atoms 0 and 1 .* 0.005 Angstrom"):
        from_ase(atoms, 2.0)


@pytest.mark.parametrize(
    ("cell", "pbc", "match"),
    [
        ([[2.0, 0, 0], [0, 0, 0], [0, 0, 2.0]], [True, True, True], "cell vector 1 is zero"),
        ([[2.0, 0, 0], [0, 2.0, 0], [2.0, 2.0, 0]], [True, True, True], "singular"),
        ([[2.0, 0, 0], [4.0, 0, 0], [0, 0, 1]], [True, True, False], "singular"),
        ([[2.0, 0, 0], [0, np.inf, 0], [0, 0, 2.0]], [True, True, True], "cell has non-finite"),
        (np.eye(2), [True, True, True], "cell must have shape"),
    ],
)
def test_cell_errors(cell, pbc, match):
    with pytest.raises(ValueError, match=match):
        validate_structure([[0.0, 0.0, 0.0]], [29], np.asarray(cell), pbc)


def test_degenerate_non_periodic_vector_is_fine():
    cell = np.array([[3.0, 0, 0], [0, 3.0, 0], [0, 0, 0]])
    validate_structure([[0.0, 0.0, 0.0]], [29], cell, [True, True, False])


@pytest.mark.parametrize(
    ("pos", "z", "match"),
    [
        ([[0.0, 0.0]], [1], r"pos must have shape \[n_nodes, 3\]"),
        ([[0.0, 0.0, 0.0]], [1, 1], "z has 2 entries but pos has 1"),
        ([[0.0, 0.0, 0.0]], [[1]], r"z must have shape \[n_nodes\]"),
        ([[0.0, 0.0, 0.0]], [1.5], "integer"),
        (np.zeros((0, 3)), [], "pos is empty"),
    ],
)
def test_shape_errors(pos, z, match):
    with pytest.raises(ValueError, match=match):
        validate_structure(np.asarray(pos), np.asarray(z))


def test_check_species():
    check_species(torch.tensor([1, 8, 1]), allowed=[1, 6, 8])
    with pytest.raises(ValueError, match=r"17 \(Cl\), 26 \(Fe\); known: 1 \(H\), 6 \(C\)"):
        check_species([1, 26, 17], allowed=[1, 6])


def test_dataset_and_loader(cu_emt):
    frames = [molecule("H2O"), molecule("CH4"), cu_emt, molecule("NH3"), molecule("C2H6")]
    ds = AtomsDataset(frames, cutoff=3.0)
    assert len(ds) == 5 and ds.cutoff == 3.0 and ds.atoms[2] is cu_emt
    assert ds[-1][K.ATOMIC_NUMBERS].tolist() == frames[-1].numbers.tolist()
    with pytest.raises(ValueError, match=r"structure 2 has fields .*differing: \['energy'"):
        loader(ds, batch_size=2)
    cu_emt.calc = None
    ds = AtomsDataset(frames, cutoff=3.0)
    batches = list(loader(ds, batch_size=2))
    assert [b.num_graphs for b in batches] == [2, 2, 1]
    b = batches[0]
    assert b[K.CELL].shape == (2, 3, 3) and b[K.PBC].shape == (2, 3)
    assert b[K.EDGE_INDEX].max() < b.num_nodes
    assert (b[K.BATCH][b.edge_index[0]] == b[K.BATCH][b.edge_index[1]]).all()
    # from Data: edges are rebuilt at the dataset's cutoff
    rebuilt = AtomsDataset([ds[0], ds[1]], cutoff=1.2)
    assert rebuilt.atoms is None
    assert rebuilt[0].edge_index.shape[1] < ds[0].edge_index.shape[1]
    with pytest.raises(TypeError, match="all ase.Atoms or all Data"):
        AtomsDataset([frames[0], ds[0]], cutoff=3.0)
    bad = molecule("H2O")
    bad.positions[0, 0] = np.nan
    with pytest.raises(ValueError, match="structure 1: pos has non-finite"):
        AtomsDataset([frames[0], bad], cutoff=3.0)


def test_split_is_deterministic():
    ds = AtomsDataset([molecule(name) for name in ["H2O", "CH4", "NH3", "CO2", "C2H6"] * 2], 2.5)
    a, b = ds.split([0.6, 0.4], seed=7)
    assert (len(a), len(b)) == (6, 4)
    ids = [id(g) for g in (*a, *b)]
    assert sorted(ids) == sorted(id(g) for g in ds)
    a2, b2 = ds.split([0.6, 0.4], seed=7)
    assert [id(g) for g in a2] == [id(g) for g in a] and a2.cutoff == ds.cutoff
    parts = ds.split([3, 2], seed=1)
    assert [len(p) for p in parts] == [3, 2]
    with pytest.raises(ValueError, match="sum to at most"):
        ds.split([8, 5])
