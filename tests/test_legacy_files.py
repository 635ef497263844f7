"""Files written by equivar 0.1.0 before the layers refactor (``tests/legacy/``, made once by
``tests/legacy/make_fixtures.py``) still load and predict what they predicted then."""

import json
from pathlib import Path

import torch
from torch_geometric.data import Batch

from equivar.data import read
from equivar.qmc.checkpoint import load_wavefunction
from equivar.train import load_checkpoint
from equivar.train.checkpoint import read_checkpoint
from equivar.train.export import load_exported

HERE = Path(__file__).resolve().parent / "legacy"
DATA = HERE.parents[1] / "datasets" / "ethanol_xtb.extxyz"
EXPECTED = json.loads((HERE / "expected.json").read_text())


def _frames():
    dataset = read(DATA, cutoff=3.5)
    return [dataset[0], dataset[1]]


def test_an_old_best_checkpoint_predicts_as_it_did():
    model = load_checkpoint(HERE / "best.pt")
    out = model(Batch.from_data_list(_frames()))
    want = EXPECTED["best.pt"]
    torch.testing.assert_close(out["energy"], torch.tensor(want["energy"], dtype=torch.float64),
                               rtol=1e-10, atol=1e-8)  # fmt: skip
    torch.testing.assert_close(out["forces"][0], torch.tensor(want["forces_0"],
                                                              dtype=torch.float64),
                               rtol=1e-8, atol=1e-10)  # fmt: skip


def test_an_old_resumable_checkpoint_reads_with_its_run_state():
    data = read_checkpoint(HERE / "checkpoint_last.pt")
    assert data["config"]["name"] == "potential"
    assert {"optimizer", "ema", "progress", "train_config"} <= set(data["train_state"])
    assert load_checkpoint(HERE / "checkpoint_last.pt") is not None


def test_an_old_export_runs_as_it_did():
    exported = load_exported(HERE / "potential.pt2")
    got = exported(_frames()[0])["energy"].reshape(-1)
    want = torch.tensor(EXPECTED["potential.pt2"]["energy"], dtype=got.dtype)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-8)


def test_an_old_vmc_checkpoint_gives_the_same_wavefunction():
    psi = load_wavefunction(HERE / "vmc_he.pt")
    want = EXPECTED["vmc_he.pt"]
    sign, logabs = psi(torch.tensor(want["x"], dtype=torch.float64))
    torch.testing.assert_close(sign, torch.tensor(want["sign"], dtype=sign.dtype))
    torch.testing.assert_close(logabs, torch.tensor(want["logabs"], dtype=torch.float64),
                               rtol=1e-10, atol=1e-10)  # fmt: skip
