"""fit() with data.energy_key/forces_key: every file (train, valid, test) and every list of
Atoms is read with the keys, best.pt records them for evaluation, and old checkpoints without
them give the defaults."""

from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch

from equivar.data import AtomsDataset, LabelKeys, iread, read
from equivar.models import build
from equivar.train import checkpoint_label_keys, evaluate, fit, load_checkpoint
from equivar.train.checkpoint import read_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "datasets" / "ethanol_xtb.extxyz"
CUTOFF = 3.5
REF = {"energy_key": "REF_energy", "forces_key": "REF_forces"}


@pytest.fixture(autouse=True)
def _single_threaded(one_thread):
    """Tiny tensors: see tests/conftest.py::one_thread."""


def as_mace(frames: list) -> list:
    """The frames with energy and forces under REF_energy (info) and REF_forces (arrays)."""
    out = []
    for atoms in frames:
        new = atoms.copy()  # without the calculator that holds energy, forces and dipole
        new.info["REF_energy"] = atoms.get_potential_energy()
        new.arrays["REF_forces"] = atoms.get_forces().copy()
        out.append(new)
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """12 ethanol frames as train/valid/test files (8/2/2), with default and with REF_* keys."""
    folder = tmp_path_factory.mktemp("ethanol")
    frames = list(iread(DATA, ":12"))
    for atoms in frames:  # the REF files carry energy and forces only: so must the plain ones
        atoms.calc.results.pop("dipole", None)
    paths = {}
    for kind, convert in (("plain", list), ("mace", as_mace)):
        for part, chosen in (("train", frames[:8]), ("valid", frames[8:10]),
                             ("test", frames[10:])):
            paths[kind, part] = folder / f"{kind}_{part}.extxyz"
            ase.io.write(paths[kind, part], convert(chosen), format="extxyz")
    return frames, paths


def config(output, paths=None, kind="plain", epochs=2, **data):
    """A tiny float64 run (one layer, 8 channels); ``data`` sets data.* keys."""
    files = {} if paths is None else {p: str(paths[kind, p]) for p in ("train", "valid", "test")}
    return {
        "data": {"cutoff": CUTOFF, "batch_size": 4, "valid_batch_size": 4, **files, **data},
        "model": {"name": "potential", "options": {
            "preset": "S", "num_channels": 8, "num_layers": 1, "sh_lmax": 1,
            "radial_hidden": [8]}},
        "optim": {"lr": 5e-3, "schedule": "cosine", "warmup_steps": 2, "ema_decay": 0.9},
        "epochs": epochs, "precision": "float64", "output": str(output), "progress": False,
    }  # fmt: skip


def test_a_run_with_ref_keys_trains_like_one_with_default_keys(tmp_path, files):
    frames, paths = files
    plain = fit(config(tmp_path / "plain", paths))
    mace = fit(config(tmp_path / "mace", paths, "mace", **REF))
    assert mace["steps"] == plain["steps"] == 4 and mace["test"].keys() == plain["test"].keys()
    for key, value in plain["test"].items():
        assert abs(mace["test"][key] - value) <= 1e-10 * max(1.0, abs(value)), key
    preds = np.load(tmp_path / "mace" / "test_predictions.npz")
    # labels are copied from the file, not computed: exact
    assert preds["energy_true"].reshape(-1).tolist() == [
        a.get_potential_energy() for a in frames[10:]]
    # best.pt records the keys; evaluation reads a new file with them
    best = tmp_path / "mace" / "best.pt"
    keys = checkpoint_label_keys(best)
    assert keys == {**REF, "stress_key": "stress", "virial_key": "virial"}
    model = load_checkpoint(best)
    data = read(paths["mace", "test"], model.cutoff, dtype=torch.float64, **keys)
    metrics, _ = evaluate(model, data, batch_size=4)
    assert abs(metrics["forces_mae"] - mace["test"]["forces_mae"]) <= 1e-10
    assert checkpoint_label_keys(tmp_path / "mace" / "checkpoint_last.pt") == keys
    assert checkpoint_label_keys(tmp_path / "plain" / "best.pt") == LabelKeys().as_dict()


def test_objects_and_missing_keys(tmp_path, files):
    frames, paths = files
    mace = as_mace(frames)
    run = tmp_path / "atoms"
    result = fit(config(run, epochs=1, **REF), train=mace[:8], valid=mace[8:10],
                 test=mace[10:])  # lists of Atoms are read with the config's keys
    assert result["steps"] == 2 and result["test"]["energy_mae"] > 0
    out = tmp_path / "refused"
    other = AtomsDataset(mace[:8], CUTOFF, labels=LabelKeys(energy_key="REF_energy"))
    with pytest.raises(ValueError, match=r"fit\(train=\.\.\.\): the AtomsDataset was built with "
                       r"energy_key='REF_energy' but the config has energy_key='REF_energy', "
                       r"forces_key='REF_forces'"):
        fit(config(out, **REF), train=other)
    with pytest.raises(ValueError, match=r"plain_train.extxyz', frame 0: no energy label "
                       r"'REF_energy'.*did you mean 'energy'\?"):
        fit(config(out, paths, **REF))  # default-key files with the REF keys
    with pytest.raises(ValueError, match=r"fit\(train=\.\.\.\): structure 0: no forces label "
                       r"'REF_force' \(forces_key\).*did you mean 'REF_forces'\?"):
        fit(config(out, energy_key="REF_energy", forces_key="REF_force"), train=mace[:8])
    assert not out.exists()


def test_old_checkpoints_give_the_default_keys(tmp_path):
    model = build("potential", preset="S", num_channels=8, num_layers=1, species=[1, 6, 8],
                  cutoff=CUTOFF, dtype=torch.float64)
    bare = tmp_path / "bare.pt"  # written without a training config (e.g. by a script)
    save_checkpoint(bare, model)
    old = tmp_path / "old.pt"  # a run's best.pt from before the keys existed
    save_checkpoint(old, model, epoch=1, train_config={"data": {"train": "x.extxyz"}})
    for path in (bare, old):
        assert checkpoint_label_keys(path) == LabelKeys().as_dict()
        assert load_checkpoint(path).cutoff == CUTOFF
    assert checkpoint_label_keys(read_checkpoint(old)) == LabelKeys().as_dict()
