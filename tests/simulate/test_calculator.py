"""EquivarCalculator: the model's numbers in ASE's conventions, derivatives, symmetry, batches,
committees, neighbour-list reuse and input errors."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from torch_geometric.data import Batch

from equivar.data import from_ase
from equivar.simulate import EquivarCalculator
from equivar.testing import random_rotation

from .conftest import tiny_potential


def _direct(model, atoms):
    out = model(Batch.from_data_list([from_ase(atoms, model.cutoff, dtype=torch.float64)]))
    return {k: v.detach().numpy() for k, v in out.items()}


def test_results_are_the_models_outputs(potential, ethanol, copper):
    for atoms in (ethanol, copper):
        atoms.calc = EquivarCalculator(potential)
        ref = _direct(potential, atoms)
        assert atoms.get_potential_energy() == pytest.approx(ref["energy"][0], abs=1e-12)
        assert atoms.get_potential_energy(force_consistent=True) == atoms.get_potential_energy()
        np.testing.assert_allclose(atoms.get_forces(), ref["forces"], atol=1e-12, rtol=0)
        energies = atoms.calc.get_property("energies")
        assert energies.sum() == pytest.approx(atoms.get_potential_energy(), abs=1e-10)
    s = ref["stress"][0]  # copper: ASE Voigt order xx, yy, zz, yz, xz, xy
    voigt = [s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]]
    np.testing.assert_allclose(copper.get_stress(), voigt, atol=1e-12, rtol=0)
    np.testing.assert_allclose(copper.get_stress(voigt=False), s, atol=1e-12, rtol=0)


def test_forces_and_stress_match_finite_differences(potential, ethanol, copper):
    ethanol.calc = EquivarCalculator(potential)
    numeric = calculate_numerical_forces(ethanol, eps=1e-5)
    np.testing.assert_allclose(ethanol.get_forces(), numeric, atol=1e-6, rtol=0)
    copper.calc = EquivarCalculator(potential)
    numeric = calculate_numerical_stress(copper, eps=1e-5)
    assert np.abs(copper.get_stress()).max() > 1e-3  # a real test, not zeros against zeros
    np.testing.assert_allclose(copper.get_stress(), numeric, atol=1e-8, rtol=0)


def test_stress_is_not_reported_for_molecules(potential, ethanol):
    ethanol.calc = EquivarCalculator(potential)
    with pytest.raises(PropertyNotImplementedError):
        ethanol.get_stress()
    assert "stress" not in ethanol.calc.results


def test_rotating_the_atoms_rotates_forces_and_stress(potential, ethanol, copper):
    R = random_rotation(torch.float64, generator=torch.Generator().manual_seed(3)).numpy()
    for atoms in (ethanol, copper):
        atoms.calc = EquivarCalculator(potential)
        rotated = atoms.copy()
        rotated.positions = atoms.positions @ R.T
        if atoms.pbc.any():
            rotated.set_cell(atoms.cell.array @ R.T, scale_atoms=False)
        rotated.calc = EquivarCalculator(potential)
        assert rotated.get_potential_energy() == pytest.approx(atoms.get_potential_energy(),
                                                               abs=1e-10)  # fmt: skip
        np.testing.assert_allclose(rotated.get_forces(), atoms.get_forces() @ R.T, atol=1e-10)
    np.testing.assert_allclose(
        rotated.get_stress(voigt=False), R @ copper.get_stress(voigt=False) @ R.T, atol=1e-10
    )


def test_unknown_species_are_named(potential):
    atoms = molecule("CH3Cl")
    atoms.calc = EquivarCalculator(potential)
    with pytest.raises(ValueError, match=r"17 \(Cl\)"):
        atoms.get_potential_energy()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"skin": -1.0}, ValueError, "skin"),
        ({"device": "gpu7"}, ValueError, "device"),
        ({"dtype": "float16"}, ValueError, "dtype"),
    ],
)
def test_bad_options_are_named(potential, kwargs, error, match):
    with pytest.raises(error, match=match):
        EquivarCalculator(potential, **kwargs)


def test_bad_models_are_named():
    with pytest.raises(TypeError, match="model_or_checkpoint"):
        EquivarCalculator(3)
    with pytest.raises(ValueError, match="empty"):
        EquivarCalculator([])
    with pytest.raises(TypeError, match="not an equivar potential"):
        EquivarCalculator(torch.nn.Linear(2, 2))


def test_coincident_atoms_are_an_error(potential):
    atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, 1e-3]])
    atoms.calc = EquivarCalculator(potential)
    with pytest.raises(ValueError, match="coincident"):
        atoms.get_forces()


def test_casting_copies_the_model(potential, ethanol):
    calc = EquivarCalculator(potential, dtype="float32")
    assert calc.dtype == torch.float32 and next(potential.parameters()).dtype == torch.float64
    ethanol.calc = calc
    reference = EquivarCalculator(potential).get_potential_energy(ethanol.copy())
    assert ethanol.get_potential_energy() == pytest.approx(reference, abs=1e-4)
    assert EquivarCalculator(potential).model is potential  # nothing to convert: no copy


def test_batch_equals_one_by_one(potential, ethanol, copper):
    structures = [ethanol, copper, molecule("H2O"), molecule("C6H6"), molecule("CH3CONH2")]
    calc = EquivarCalculator(potential)
    for batch_size in (None, 2):
        batched = calc.calculate_batch(structures, batch_size=batch_size)
        for atoms, res in zip(structures, batched, strict=True):
            single = EquivarCalculator(potential)
            atoms = atoms.copy()
            atoms.calc = single
            assert res["energy"] == pytest.approx(atoms.get_potential_energy(), abs=1e-10)
            np.testing.assert_allclose(res["forces"], atoms.get_forces(), atol=1e-10)
            assert ("stress" in res) == bool(atoms.pbc.any())
            if "stress" in res:
                np.testing.assert_allclose(res["stress"], atoms.get_stress(), atol=1e-10)
    bad = [*structures[:3], molecule("CH3Cl")]
    with pytest.raises(ValueError, match=r"structures\[3\].*17 \(Cl\)"):
        calc.calculate_batch(bad, batch_size=2)


def test_committee_mean_and_spread(ethanol, copper):
    a, b = tiny_potential(0), tiny_potential(1)
    same = EquivarCalculator([a, a])
    res = same.calculate_batch([ethanol, copper])
    for r in res:
        assert abs(r["energy_std"]) < 1e-12  # identical members: no spread
        assert np.abs(r["forces_std"]).max() < 1e-12
    assert np.abs(res[1]["stress_std"]).max() < 1e-12
    ethanol.calc = EquivarCalculator([a, b])
    energy = ethanol.get_potential_energy()
    e_a = EquivarCalculator(a).get_potential_energy(ethanol.copy())
    e_b = EquivarCalculator(b).get_potential_energy(ethanol.copy())
    assert energy == pytest.approx(0.5 * (e_a + e_b), abs=1e-10)
    assert ethanol.calc.results["energy_std"] == pytest.approx(0.5 * abs(e_a - e_b), abs=1e-10)
    assert ethanol.calc.results["forces_std"].shape == (9, 3)
    assert ethanol.calc.results["forces_std"].max() > 0


def test_committee_members_may_differ_in_cutoff(ethanol):
    calc = EquivarCalculator([tiny_potential(0), tiny_potential(1, cutoff=3.0)])
    ethanol.calc = calc
    assert np.isfinite(ethanol.get_potential_energy())
    assert calc.neighbor_list_builds == 2  # one graph per cutoff


def test_skin_reuses_the_graph_and_changes_nothing(potential, copper):
    fresh, reuse = EquivarCalculator(potential), EquivarCalculator(potential, skin=1.0)
    rng = np.random.default_rng(0)
    atoms = copper.copy()
    for _ in range(4):  # each step < skin/2 in total: one build
        atoms.positions += rng.uniform(-0.04, 0.04, atoms.positions.shape)
        a, b = atoms.copy(), atoms.copy()
        a.calc, b.calc = fresh, reuse
        assert b.get_potential_energy() == pytest.approx(a.get_potential_energy(), abs=1e-10)
        np.testing.assert_allclose(b.get_forces(), a.get_forces(), atol=1e-10)
        np.testing.assert_allclose(b.get_stress(), a.get_stress(), atol=1e-10)
    assert reuse.neighbor_list_builds == 1 and fresh.neighbor_list_builds == 4
    atoms.positions[0] += 0.6  # beyond skin / 2: rebuilt
    atoms.calc = reuse
    atoms.get_potential_energy()
    assert reuse.neighbor_list_builds == 2


def test_committee_and_run_folders(tmp_path, ethanol):
    from equivar.train import save_checkpoint

    members = [tiny_potential(0), tiny_potential(1)]
    for k, model in enumerate(members):
        save_checkpoint(tmp_path / "committee" / f"member_{k}" / "best.pt", model)
    save_checkpoint(tmp_path / "run" / "best.pt", members[0])
    folder = EquivarCalculator(str(tmp_path / "committee"))
    listed = EquivarCalculator(members)
    assert len(folder.models) == 2
    res, ref = folder.calculate_batch([ethanol])[0], listed.calculate_batch([ethanol])[0]
    for name in ("energy", "energy_std", "forces", "forces_std"):
        np.testing.assert_allclose(res[name], ref[name], atol=1e-12, rtol=0)
    assert res["energy_std"] > 0
    run = EquivarCalculator(tmp_path / "run")
    assert len(run.models) == 1
    assert run.get_potential_energy(ethanol.copy()) == pytest.approx(
        EquivarCalculator(members[0]).get_potential_energy(ethanol.copy()), abs=1e-12)
    mixed = EquivarCalculator([members[1], tmp_path / "run"])  # a list may mix both
    assert len(mixed.models) == 2
    with pytest.raises(ValueError, match="neither a committee"):
        EquivarCalculator(tmp_path)
