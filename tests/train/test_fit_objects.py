"""fit(config, train=..., valid=..., test=...) takes data objects beside the config's files, and
time_budget stops a run cleanly, against the same budget after --resume."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from equivar.cli import main
from equivar.data import AtomsDataset, ShardedDataset, iread, write_shards
from equivar.train import fit, load_checkpoint, load_config
from equivar.train.checkpoint import atomic_save, read_checkpoint

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "datasets" / "ethanol_xtb.extxyz"
CUTOFF = 3.5


@pytest.fixture(autouse=True)
def _single_threaded(one_thread):
    """Tiny tensors: see tests/conftest.py::one_thread."""


@pytest.fixture(scope="module")
def atoms():
    """The first 12 ethanol frames (with xTB energies and forces) as ase.Atoms."""
    return list(iread(DATA, ":12"))


def config(output, **extra):
    """A tiny float64 run without data.train; ``section__key=value`` sets nested keys."""
    cfg = {
        "data": {"cutoff": CUTOFF, "batch_size": 4, "valid_batch_size": 12,
                 "valid_fraction": 0.25, "test_fraction": 0.25},
        "model": {"name": "potential", "options": {
            "preset": "S", "num_channels": 8, "num_layers": 1, "sh_lmax": 1,
            "radial_hidden": [8]}},
        "optim": {"lr": 5e-3, "schedule": "cosine", "warmup_steps": 2, "ema_decay": 0.9},
        "epochs": 2, "precision": "float64", "output": str(output), "progress": False,
    }  # fmt: skip
    for key, value in extra.items():
        section, _, name = key.rpartition("__")
        (cfg[section] if section else cfg)[name] = value
    return cfg


def _state(run: Path):
    """Weights, EMA weights and progress of a run's checkpoint_last.pt."""
    data = read_checkpoint(run / "checkpoint_last.pt")
    t = data["train_state"]
    return data["state_dict"], t["ema"]["shadow"], t["progress"], t


def _assert_same_weights(a: Path, b: Path, rtol: float) -> None:
    wa, ea, _, _ = _state(a)
    wb, eb, _, _ = _state(b)
    for key in wa:
        assert torch.allclose(wa[key], wb[key], rtol=rtol, atol=rtol * 1e-2), key
        assert torch.allclose(ea[key], eb[key], rtol=rtol, atol=rtol * 1e-2), key


def _log_rows(run: Path) -> int:
    return len((run / "log.csv").read_text().splitlines()) - 1


def test_datasets_train_like_their_file(tmp_path, atoms):
    """The same 12 frames from the file, an AtomsDataset and (float32) HDF5 shards: the same
    split, steps and metrics; the recorded config names the object and the run evaluates."""
    by_file = fit(config(tmp_path / "file", data__train=str(DATA), data__max_structures=12))
    dataset = AtomsDataset(atoms, CUTOFF, dtype=torch.float64)
    by_dataset = fit(config(tmp_path / "dataset"), train=dataset)
    shards = ShardedDataset(write_shards(atoms, tmp_path / "shards"), CUTOFF)  # float32 graphs
    by_shards = fit(config(tmp_path / "shards_run"), train=shards)
    for result in (by_dataset, by_shards):
        assert result["test"].keys() == by_file["test"].keys()
        for key, value in by_file["test"].items():
            assert abs(result["test"][key] - value) <= 1e-10 * max(1.0, abs(value)), key
        assert result["stopped"] == "epochs" and result["steps"] == by_file["steps"] == 4
    _assert_same_weights(tmp_path / "file", tmp_path / "dataset", rtol=1e-10)
    _assert_same_weights(tmp_path / "file", tmp_path / "shards_run", rtol=1e-10)

    recorded = json.loads((tmp_path / "dataset" / "config.yaml").read_text())["data"]
    assert recorded["train"] == "<in-memory AtomsDataset, 12 structures>"
    assert recorded["valid"] == recorded["test"] == ""
    saved = read_checkpoint(tmp_path / "shards_run" / "checkpoint_last.pt")
    assert saved["train_state"]["train_config"]["data"]["train"].startswith("<ShardedDataset, 12")
    best = tmp_path / "dataset" / "best.pt"
    assert load_checkpoint(best).cutoff == CUTOFF
    assert main(["evaluate", str(best), str(DATA)]) == 0
    # the recorded config cannot be run without the object, and says so
    with pytest.raises(ValueError, match=r"passed to fit\(\) as an object"):
        fit(tmp_path / "dataset" / "config.yaml", resume=True)


def test_lists_of_atoms_for_each_part(tmp_path, atoms):
    """train, valid and test as objects (a list, a float32 dataset, a list): no file, no
    held-out split; data.max_structures still cuts the training list."""
    run = tmp_path / "run"
    valid = AtomsDataset(atoms[8:10], CUTOFF)  # float32: rebuilt in float64
    result = fit(config(run, epochs=1, data__max_structures=6), train=atoms[:8], valid=valid,
                 test=atoms[10:12])
    assert result["stopped"] == "epochs" and result["steps"] == 2  # 6 structures, batches of 4
    _, _, _, t = _state(run)
    assert t["data_sizes"] == {"train": 6, "valid": 2, "test": 2}
    assert t["train_config"]["data"]["train"] == "<in-memory list of 8 Atoms>"
    preds = np.load(run / "test_predictions.npz")
    expected = [a.get_potential_energy() for a in atoms[10:12]]
    np.testing.assert_allclose(preds["energy_true"].reshape(-1), expected, rtol=1e-12)


def test_bad_objects_are_refused_before_any_work(tmp_path, atoms):
    out = tmp_path / "run"
    with pytest.raises(TypeError, match=r"fit\(train=\.\.\.\) must be .*got str; file paths"):
        fit(config(out), train=str(DATA))
    with pytest.raises(TypeError, match=r"fit\(valid=\.\.\.\) must be .*got int"):
        fit(config(out, data__train=str(DATA)), valid=3)
    with pytest.raises(TypeError, match=r"fit\(test=\.\.\.\) must hold ase.Atoms.*\['int'\]"):
        fit(config(out), train=atoms, test=[1, 2])
    with pytest.raises(ValueError, match=r"fit\(train=\.\.\.\): .* cutoff 3 .* is 3.5"):
        fit(config(out), train=AtomsDataset(atoms, 3.0))
    with pytest.raises(ValueError, match=r"fit\(train=\.\.\.\) is an empty list"):
        fit(config(out), train=[])
    with pytest.raises(ValueError, match="data.train must name a file"):
        fit(config(out))
    assert not out.exists()


def test_time_budget_stops_and_resume_spends_no_more(tmp_path, atoms):
    """A budget spent by the first step: training stops after it, ends as usual (validation,
    best.pt, test metrics), and --resume with the same budget takes no further step."""
    run, dataset = tmp_path / "run", AtomsDataset(atoms, CUTOFF, dtype=torch.float64)
    cfg = config(run, epochs=50, time_budget=1e-9)
    first = fit(cfg, train=dataset)
    assert first["stopped"] == "time_budget" and first["steps"] == 1
    assert 0 < first["elapsed_s"] < 60
    assert load_checkpoint(first["checkpoint"]).cutoff == CUTOFF
    assert (run / "parity.png").is_file() and first["test"]["forces_mae"] > 0
    _, _, progress, _ = _state(run)
    assert progress["step"] == 1 and progress["elapsed_s"] == first["elapsed_s"]
    assert _log_rows(run) == 1

    again = fit(cfg, train=dataset, resume=True)
    assert again["stopped"] == "time_budget" and again["steps"] == 1
    assert again["elapsed_s"] == first["elapsed_s"] and again["test"] == first["test"]
    assert _state(run)[2] == progress and _log_rows(run) == 1
    with pytest.raises(ValueError, match="cannot resume .* with other data"):
        fit(cfg, train=dataset.subset(range(10)), resume=True)

    # killed after a mid-epoch checkpoint, before validating it: the resume validates, no step;
    # the row the killed run may have written for that step is replaced, not repeated (issue 21:
    # the log equals an uninterrupted run's)
    saved = read_checkpoint(run / "checkpoint_last.pt")
    saved["train_state"]["progress"]["validated_step"] = 0
    atomic_save(saved, run / "checkpoint_last.pt")
    assert fit(cfg, train=dataset, resume=True)["steps"] == 1 and _log_rows(run) == 1


def test_resume_goes_on_from_the_saved_time_and_reaches_the_same_state(tmp_path, atoms):
    """A raised budget counts the time already spent (here, a first segment marked as ten
    minutes), and a budget-stopped run resumed to the end equals the uninterrupted run."""
    dataset = AtomsDataset(atoms, CUTOFF, dtype=torch.float64)  # 6 train, 3 valid, 3 test
    reference = fit(config(tmp_path / "reference"), train=dataset)
    run = tmp_path / "run"
    assert fit(config(run, time_budget=1e-9), train=dataset)["steps"] == 1  # mid-epoch
    saved = read_checkpoint(run / "checkpoint_last.pt")
    saved["train_state"]["progress"]["elapsed_s"] = 600.0
    atomic_save(saved, run / "checkpoint_last.pt")

    # 10 minutes of budget and 1 ms more (a step takes longer): spent by the next step
    more = fit(config(run, time_budget=10 + 1e-3 / 60), train=dataset, resume=True)
    assert more["stopped"] == "time_budget" and more["steps"] == 2 and more["elapsed_s"] > 600
    done = fit(config(run, time_budget=0), train=dataset, resume=True)
    assert done["stopped"] == "epochs" and done["steps"] == reference["steps"] == 4
    # the extra validations at the stops change neither the cosine schedule nor the weights
    _assert_same_weights(tmp_path / "reference", run, rtol=1e-12)


def test_committee_members_get_the_objects(tmp_path, atoms):
    out = tmp_path / "committee"
    result = fit(config(out, epochs=1, committee=2), train=atoms)
    assert len(result["members"]) == 2 and result["test"]["forces_mae"] > 0
    for k in range(2):
        member = json.loads((out / f"member_{k}" / "config.yaml").read_text())
        assert member["data"]["train"] == "<in-memory list of 12 Atoms>"
        assert member["seed"] == k
    assert json.loads((out / "committee.json").read_text())["n_members"] == 2


def test_config_keys():
    assert load_config(None, ["time_budget=1.5"], require_train=False).time_budget == 1.5
    with pytest.raises(ValueError, match="time_budget must be >= 0"):
        load_config(None, ["data.train=x", "time_budget=-1"])
    with pytest.raises(ValueError, match="data.train must name a file"):
        load_config(None, [])
