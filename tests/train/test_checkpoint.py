"""Checkpoints are data, written atomically, loaded safely, and rebuild the same model."""

import os

import pytest
import torch

from equivar.models import build
from equivar.testing import random_molecule_batch
from equivar.train import load_checkpoint, save_checkpoint
from equivar.train.checkpoint import read_checkpoint


def _model():
    return build("potential", preset="S", species=[1, 6, 7, 8], num_channels=8, cutoff=3.5,
                 dtype="float64", atomic_energies={1: -13.6})


def test_round_trip_gives_the_same_predictions(tmp_path):
    model = _model()
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, note="hello")
    assert sorted(os.listdir(tmp_path)) == ["m.pt"]  # no temporary file left behind
    loaded = load_checkpoint(path)
    batch = random_molecule_batch(n_graphs=2, cutoff=3.5, dtype=torch.float64, seed=0)
    assert torch.equal(loaded(batch)["energy"], model.eval()(batch)["energy"])
    data = torch.load(path, weights_only=True)  # plain data, no pickled module
    assert data["note"] == "hello" and data["config"]["name"] == "potential"
    assert set(data["versions"]) >= {"equivar", "torch", "e3nn"}


def test_checkpoints_from_before_the_product_basis_still_load(tmp_path):
    """A config saved before ``correlation`` existed lacks the key; it rebuilds the pairwise
    model it was, not the presets' newer default (3)."""
    old = build("potential", preset="S", species=[1, 6], num_channels=4, cutoff=3.5,
                correlation=1, dtype="float64")
    path = tmp_path / "old.pt"
    save_checkpoint(path, old)
    data = torch.load(path, weights_only=True)
    del data["config"]["correlation"]
    torch.save(data, path)
    loaded = load_checkpoint(path)
    assert all(block.product is None for block in loaded.backbone.blocks)
    batch = random_molecule_batch(n_graphs=1, species=(1, 6), cutoff=3.5, seed=0)
    assert torch.equal(loaded(batch)["energy"], old.eval()(batch)["energy"])


def test_missing_truncated_and_unsafe_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    path = tmp_path / "m.pt"
    save_checkpoint(path, _model())
    raw = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "cut.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint\n")  # no zip, no pickle
    with pytest.raises(ValueError, match="truncated or corrupt, or not a PyTorch file"):
        load_checkpoint(tmp_path / "text.pt")
    torch.save({"state_dict": {}, "config": {"name": "potential"}, "evil": _model()},
               tmp_path / "pickled.pt")
    with pytest.raises(ValueError, match="unsafe to unpickle"):
        read_checkpoint(tmp_path / "pickled.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an equivar checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    save_checkpoint(path, _model())
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, _model())
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["m.pt"]


def test_a_checkpoint_with_nan_weights_is_refused_not_evaluated(tmp_path):
    """A diverged run's weights would give all-NaN metrics with exit 0 (issue 21)."""
    from pathlib import Path

    from equivar.cli import main

    qm9 = Path(__file__).resolve().parents[2] / "datasets" / "qm9_100.extxyz"
    model = build("potential", preset="S", species=["H", "O"], num_channels=4, dtype="float64")
    save_checkpoint(tmp_path / "ok.pt", model)
    data = read_checkpoint(tmp_path / "ok.pt")
    name = next(k for k, v in data["state_dict"].items() if v.is_floating_point())
    data["state_dict"][name][...] = float("nan")
    torch.save(data, tmp_path / "nan.pt")
    with pytest.raises(ValueError, match=rf"hold NaN or inf \(first: '{name}'\).*diverged"):
        load_checkpoint(tmp_path / "nan.pt")
    assert main(["evaluate", str(tmp_path / "nan.pt"), str(qm9)]) == 2
