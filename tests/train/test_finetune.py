"""Fine-tuning: starts from the checkpoint's exact predictions, frozen parameters stay
bit-identical, heads can be re-initialised, new elements extend the embedding, and mismatched
options or patterns that match nothing are named."""

import logging
from pathlib import Path

import pytest
import torch
from ase.build import molecule
from torch_geometric.data import Batch

from equivar.data import compute_statistics, from_ase, read
from equivar.models import build
from equivar.train import fit, load_checkpoint, load_config, save_checkpoint
from equivar.train.checkpoint import read_checkpoint
from equivar.train.config import config_from_dict
from equivar.train.finetune import finetune_model

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "datasets" / "ethanol_xtb.extxyz"
TINY = dict(preset="S", num_channels=8, lmax=1, sh_lmax=1, num_layers=1, radial_hidden=[8],
            cutoff=3.5, dtype="float64")  # fmt: skip
OPTIONS = {k: v for k, v in TINY.items() if k not in ("cutoff", "dtype")}


@pytest.fixture(autouse=True)
def _single_threaded(one_thread):
    """Tiny tensors: see tests/conftest.py::one_thread."""


@pytest.fixture(scope="module")
def train_set():
    data = read(DATA, 3.5, index=":12", dtype=torch.float64)
    return data, compute_statistics(data)


def _pretrained(path, species=(1, 6, 8)):
    """A 'pretrained' checkpoint: random weights, made-up statistics unlike the new data's."""
    torch.manual_seed(7)
    model = build("potential", **TINY, species=list(species), avg_num_neighbors=5.0,
                  atomic_energies={z: -float(z) for z in species}, energy_scale=0.3)
    save_checkpoint(path, model)
    return path


def _config(tmp_path, **extra):
    values = {
        "data": {"train": str(DATA), "max_structures": 12, "cutoff": 3.5, "batch_size": 4,
                 "valid_batch_size": 12, "valid_fraction": 0.25, "test_fraction": 0.25},
        "model": {"name": "potential", "options": OPTIONS},
        "optim": {"lr": 5e-3, "ema_decay": 0.9},
        "epochs": 1, "precision": "float64", "output": str(tmp_path / "run"), "progress": False,
    }  # fmt: skip
    values.update(extra)
    return config_from_dict(values)


def _batch():
    structures = [molecule("CH3CH2OH"), molecule("CH4"), molecule("H2O")]
    return Batch.from_data_list([from_ase(a, 3.5, dtype=torch.float64) for a in structures])


def test_finetuning_starts_from_the_checkpoints_exact_predictions(tmp_path, train_set):
    ckpt = _pretrained(tmp_path / "pre.pt")
    cfg = _config(tmp_path, init_from=str(ckpt))
    model, summary = finetune_model(cfg, *train_set, torch.float64)
    batch = _batch()
    ref = load_checkpoint(ckpt)(batch)
    got = model.eval()(batch)
    for name in ("energy", "forces"):
        assert torch.equal(got[name], ref[name]), name
    assert model.config["avg_num_neighbors"] == 5.0  # the checkpoint's statistics are kept
    assert model.config["atomic_energies"] == {1: -1.0, 6: -6.0, 8: -8.0}
    assert "fine-tuning from" in summary


@pytest.mark.filterwarnings("ignore:Data has no positive values")  # lr = 0 on a log plot
def test_training_from_a_checkpoint_with_lr_0_keeps_its_predictions(tmp_path, caplog):
    """End to end through fit(): nothing moves when nothing may move."""
    caplog.set_level(logging.INFO, logger="equivar")
    ckpt = _pretrained(tmp_path / "pre.pt")
    cfg = _config(tmp_path, init_from=str(ckpt),
                  optim={"lr": 0.0, "min_lr": 0.0, "schedule": "constant", "ema_decay": 0.0})
    fit(cfg)
    batch = _batch()
    tuned = load_checkpoint(tmp_path / "run" / "best.pt")(batch)
    assert torch.equal(tuned["energy"], load_checkpoint(ckpt)(batch)["energy"])
    assert "fine-tuning from" in caplog.text  # logged by the library, printed by the CLI


def test_frozen_parameters_stay_bit_identical(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="equivar")
    ckpt = _pretrained(tmp_path / "pre.pt")
    cfg = _config(tmp_path, init_from=str(ckpt), freeze=["backbone.*"])
    fit(cfg)
    start = read_checkpoint(ckpt)["state_dict"]
    n_frozen = 0
    for name in ("best.pt", "checkpoint_last.pt"):  # EMA weights and raw weights
        state = read_checkpoint(tmp_path / "run" / name)["state_dict"]
        for key, value in state.items():
            if key.startswith("backbone."):
                assert torch.equal(value, start[key]), (name, key)
                n_frozen += 1
        assert not torch.equal(state["readout.mlp_out.weight"], start["readout.mlp_out.weight"])
    assert n_frozen > 0
    out = caplog.text
    n_all = sum(p.numel() for p in load_checkpoint(ckpt).parameters())
    assert f"of {n_all} parameters trainable" in out and "tensors frozen: backbone.*" in out


def test_reset_reinitialises_the_head_only(tmp_path, train_set):
    ckpt = _pretrained(tmp_path / "pre.pt")
    start = read_checkpoint(ckpt)["state_dict"]
    cfg = _config(tmp_path, init_from=str(ckpt), reset=["readout.*"])
    state = finetune_model(cfg, *train_set, torch.float64)[0].state_dict()
    for key, value in start.items():
        if not key.startswith("readout."):
            assert torch.equal(state[key], value), key
        elif key.endswith("weight"):  # (biases start at zero either way)
            assert not torch.equal(state[key], value), key
    cfg = _config(tmp_path, init_from=str(ckpt), reset=["scale_shift.*"])
    model = finetune_model(cfg, *train_set, torch.float64)[0]
    stats = train_set[1]
    assert model.config["atomic_energies"] == pytest.approx(stats.atomic_energies)


def test_new_elements_get_new_rows_and_old_ones_keep_theirs(tmp_path, train_set):
    ckpt = _pretrained(tmp_path / "pre.pt", species=(6, 8))  # ethanol data adds H (Z=1)
    cfg = _config(tmp_path, init_from=str(ckpt))
    model, summary = finetune_model(cfg, *train_set, torch.float64)
    assert model.species == [1, 6, 8] and "new elements [1]" in summary
    co2 = Batch.from_data_list([from_ase(molecule("CO2"), 3.5, dtype=torch.float64)])
    ref = load_checkpoint(ckpt)(co2)
    got = model.eval()(co2)
    assert torch.equal(got["energy"], ref["energy"]) and torch.equal(got["forces"], ref["forces"])
    # H's shift: least squares of the new energies minus the checkpoint's C and O shifts
    data, _ = train_set
    residual = torch.stack([d.energy.reshape(()) + 6.0 * (d.z == 6).sum() + 8.0 * (d.z == 8).sum()
                            for d in data])
    n_h = torch.stack([(d.z == 1).sum() for d in data]).double()
    expected = float((n_h * residual).sum() / (n_h * n_h).sum())
    assert model.config["atomic_energies"][1] == pytest.approx(expected, rel=1e-10)
    assert load_checkpoint(ckpt).species == [6, 8]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"model": {"name": "potential", "options": {"num_channels": 16}}},
         r"num_channels: config 16, checkpoint 8"),
        ({"model": {"name": "potential", "options": {"preset": "M"}}},
         r"num_channels: config 64 \(preset 'M'\), checkpoint 8"),
        ({"model": {"name": "potential", "options": {"radial_basis": "gaussian"}}},
         r"radial_basis: config 'gaussian', checkpoint 'bessel'"),
        ({"model": {"name": "property", "options": {"targets": {"energy": "sum"}}}},
         r"holds a 'potential' model but model.name is 'property'"),
        ({"freeze": ["backbone.nothing*"]}, r"freeze pattern\(s\) \['backbone.nothing\*'\]"),
        ({"reset": ["head.*"]}, r"reset pattern\(s\) \['head.\*'\] match no name"),
    ],
)
def test_mismatches_and_patterns_that_match_nothing_are_named(tmp_path, extra, message):
    ckpt = _pretrained(tmp_path / "pre.pt")
    cfg = _config(tmp_path, init_from=str(ckpt), **extra)
    with pytest.raises(ValueError, match=message):
        fit(cfg)
    assert not (tmp_path / "run" / "checkpoint_last.pt").exists()


def test_cutoff_and_missing_checkpoint_are_named(tmp_path):
    ckpt = _pretrained(tmp_path / "pre.pt")
    cfg = _config(tmp_path, init_from=str(ckpt))
    cfg.data.cutoff = 5.0
    with pytest.raises(ValueError, match="set data.cutoff: 3.5"):
        fit(cfg)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fit(_config(tmp_path, init_from=str(tmp_path / "none.pt")))


def test_config_keys(tmp_path):
    (tmp_path / "pre.pt").write_bytes(b"")
    (tmp_path / "c.yaml").write_text("data: {train: x.extxyz}\ninit_from: pre.pt\n"
                                     "freeze: backbone.*\nreset: [readout.*]\ncommittee: 3\n")
    cfg = load_config(tmp_path / "c.yaml")
    assert cfg.init_from == str(tmp_path / "pre.pt")  # relative to the config's folder
    assert cfg.freeze == ["backbone.*"] and cfg.reset == ["readout.*"] and cfg.committee == 3
    with pytest.raises(ValueError, match="'freeze' must be a list of strings"):
        load_config(None, ["data.train=x", "freeze=3"])
    with pytest.raises(ValueError, match="needs init_from"):
        load_config(None, ["data.train=x", "reset=[readout.*]"])
    with pytest.raises(ValueError, match="committee must be >= 1"):
        load_config(None, ["data.train=x", "committee=0"])
