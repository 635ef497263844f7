"""Training a property model from a config: the outputs start on the training targets (shifts
and scales fitted like a potential's energy shifts), and the shipped start-here config runs."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch_geometric.data import Batch

from equivar.data import read
from equivar.data.statistics import target_statistics
from equivar.train import fit, load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
QM9 = ROOT / "datasets" / "qm9_100.extxyz"


def test_target_statistics_fit_sums_per_element_and_means_overall():
    data = read(QM9, cutoff=3.0, dtype=torch.float64)
    shifts, scales = target_statistics(data, {"gap": "mean", "U0": "sum", "dip": "vector"})
    gaps = np.array([float(g.gap) for g in data])
    assert shifts["gap"] == pytest.approx(gaps.mean())
    assert scales["gap"] == pytest.approx(gaps.std())
    # the U0 shifts reproduce the totals to the residual: much better than the mean per atom
    u0 = np.array([float(g.U0) for g in data])
    fitted = np.array([sum(shifts["U0"][int(z)] for z in g.z) for g in data])
    naive = np.array([len(g.z) for g in data]) * (u0.sum() / sum(len(g.z) for g in data))
    assert np.abs(u0 - fitted).mean() < 0.1 * np.abs(u0 - naive).mean()
    assert 0 < scales["U0"] < np.abs(u0 - fitted).max()
    assert "dip" not in shifts and "dip" not in scales  # equivariant kinds take none
    with pytest.raises(ValueError, match="no target 'homo2'"):
        target_statistics(data, {"homo2": "mean"})


def test_start_here_property_config_trains_from_normalised_outputs(tmp_path):
    cfg = yaml.safe_load((ROOT / "examples" / "configs" / "qm9_gap.yaml").read_text())
    cfg["data"]["train"] = str(QM9)
    cfg.update(epochs=1, output=str(tmp_path / "run"), progress=False, precision="float64")
    cfg["model"]["options"]["num_channels"] = 8
    result = fit(cfg)
    model = load_checkpoint(tmp_path / "run" / "best.pt")
    data = read(QM9, cutoff=cfg["data"]["cutoff"], dtype=torch.float64)
    gaps = torch.tensor([float(g.gap) for g in data], dtype=torch.float64)
    with torch.no_grad():
        pred = model(Batch.from_data_list(list(data)))["gap"]
    # one epoch from outputs started on the targets' mean and spread: errors of the spread's
    # size, not of the gap itself (~7 eV)
    assert (pred - gaps).abs().mean() < 2 * gaps.std()
    assert result["test"]["gap_mae"] < 2 * float(gaps.std())
