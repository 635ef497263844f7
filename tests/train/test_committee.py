"""Committees: `equivar train --committee N` trains N members with different seeds; the
calculator takes their folder and reports the member mean and spread."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import molecule

from equivar.cli import main
from equivar.simulate import EquivarCalculator
from equivar.train import load_config
from equivar.train.checkpoint import read_checkpoint
from equivar.train.committee import CommitteeModel, committee_checkpoints, member_configs

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "datasets" / "ethanol_xtb.extxyz"


@pytest.fixture(autouse=True)
def _single_threaded(one_thread):
    """Tiny tensors: see tests/conftest.py::one_thread."""


def _config_file(folder: Path) -> Path:
    cfg = {
        "data": {"train": str(DATA), "max_structures": 12, "cutoff": 3.5, "batch_size": 4,
                 "valid_batch_size": 12, "valid_fraction": 0.25, "test_fraction": 0.25},
        "model": {"name": "potential", "options": {
            "preset": "S", "num_channels": 8, "num_layers": 1, "sh_lmax": 1,
            "radial_hidden": [8]}},
        "optim": {"lr": 5e-3, "ema_decay": 0.0},
        "epochs": 1, "precision": "float64", "output": str(folder / "committee"),
        "progress": False,
    }  # fmt: skip
    path = folder / "config.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


@pytest.fixture(scope="module")
def committee(tmp_path_factory):
    """A committee of two, trained through the CLI (one epoch each)."""
    folder = tmp_path_factory.mktemp("committee")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", str(_config_file(folder)), "--committee", "2"]) == 0
    finally:
        torch.set_num_threads(previous)
    return folder / "committee"


def test_members_differ_only_in_seed(tmp_path):
    cfg = load_config(_config_file(tmp_path), ["committee=3", "seed=5"])
    members = member_configs(cfg)
    assert [m.seed for m in members] == [5, 6, 7]
    assert [Path(m.output).name for m in members] == ["member_0", "member_1", "member_2"]
    assert all(m.committee == 1 and m.data.seed == cfg.data.seed for m in members)


def test_committee_folder_holds_every_member(committee):
    paths = committee_checkpoints(committee)
    assert paths == [committee / "member_0" / "best.pt", committee / "member_1" / "best.pt"]
    record = json.loads((committee / "committee.json").read_text())
    assert record["seeds"] == [0, 1] and record["n_members"] == 2
    assert record["test"]["forces_mae"] > 0
    a, b = (read_checkpoint(p)["state_dict"] for p in paths)
    assert any(not torch.equal(a[k], b[k]) for k in a)  # different initial weights


def test_calculator_mean_and_spread(committee):
    atoms = molecule("CH3CH2OH")
    atoms.calc = EquivarCalculator(str(committee))
    assert len(atoms.calc.models) == 2
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    results = atoms.calc.results
    assert results["energy_std"] > 0 and results["forces_std"].max() > 0
    singles = [EquivarCalculator(str(p)) for p in committee_checkpoints(committee)]
    energies = [c.get_potential_energy(atoms.copy()) for c in singles]
    member_forces = np.stack([c.get_forces(atoms.copy()) for c in singles])
    assert energy == pytest.approx(np.mean(energies), abs=1e-10)
    assert results["energy_std"] == pytest.approx(np.std(energies), abs=1e-10)
    np.testing.assert_allclose(forces, member_forces.mean(0), atol=1e-10)
    np.testing.assert_allclose(results["forces_std"], member_forces.std(0), atol=1e-10)
    listed = EquivarCalculator([str(p) for p in committee_checkpoints(committee)])
    assert listed.get_potential_energy(atoms.copy()) == pytest.approx(energy, abs=1e-12)


def test_committee_model_averages_members(committee):
    from torch_geometric.data import Batch

    from equivar.data import from_ase
    from equivar.train import load_checkpoint

    members = [load_checkpoint(p) for p in committee_checkpoints(committee)]
    batch = Batch.from_data_list([from_ase(molecule("CH4"), 3.5, dtype=torch.float64)])
    out = CommitteeModel(members)(batch)
    each = torch.stack([m(batch)["energy"] for m in members])
    torch.testing.assert_close(out["energy"], each.mean(0))
    torch.testing.assert_close(out["energy_std"], each.std(0, unbiased=False))


def test_an_existing_committee_is_not_overwritten(committee, tmp_path):
    cfg = committee.parent / "config.yaml"
    assert main(["train", str(cfg), "--committee", "2"]) == 2  # error exit, nothing trained


def test_bad_committee_folders_are_named(tmp_path):
    with pytest.raises(ValueError, match="neither a committee"):
        committee_checkpoints(tmp_path)
    (tmp_path / "member_0").mkdir()
    with pytest.raises(ValueError, match="no best.pt"):
        committee_checkpoints(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        committee_checkpoints(tmp_path / "none")
    with pytest.raises(ValueError, match="neither a committee"):
        EquivarCalculator(str(tmp_path / "member_0"))
