"""Typed configs: YAML + overrides, numbers coerced, unknown keys named with a suggestion."""

import pytest

from equivar.data import LabelKeys
from equivar.train import config_from_dict, load_config


def test_yaml_and_overrides(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("data:\n  train: x.extxyz\n  cutoff: 4\noptim:\n  lr: 1e-3\n")
    cfg = load_config(cfg_file, ["epochs=7", "model.options={preset: S, num_channels: 8}"])
    assert cfg.optim.lr == 1e-3 and isinstance(cfg.optim.lr, float)  # YAML reads 1e-3 as text
    assert cfg.data.cutoff == 4.0 and cfg.epochs == 7
    assert cfg.model.options == {"preset": "S", "num_channels": 8}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1", "unknown config key 'optim.lrr'; did you mean 'lr'"),
        ("dat.train=x", "unknown config key 'dat'; did you mean 'data'"),
        ("epochs=many", "'epochs' must be a number"),
        ("precision=fp16", "precision must be one of"),
        ("optim.schedule=linear", "optim.schedule must be one of"),
        ("progress=3", "'progress' must be true or false"),
        ("epochs", "must look like key.sub=value"),
        ("data.energy_keys=E", "unknown config key 'data.energy_keys'; did you mean 'energy_key'"),
        ("data.forces_key=energy", "data: energy_key and forces_key both name 'energy'"),
        ('data.stress_key=" "', "data: stress_key must be a non-empty string"),
    ],
)
def test_bad_configs_are_named(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, ["data.train=x.extxyz", override])


def test_missing_file_and_missing_train():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config("no/such.yaml")
    with pytest.raises(ValueError, match="data.train must name a file"):
        load_config(None, [])


def test_label_keys(tmp_path):
    cfg = load_config(None, ["data.train=x.extxyz", "data.energy_key=REF_energy",
                             "data.forces_key=REF_forces"])
    assert cfg.data.label_keys() == LabelKeys(energy_key="REF_energy", forces_key="REF_forces")
    assert cfg.to_dict()["data"]["energy_key"] == "REF_energy"  # recorded with the run
    # a config recorded before the keys existed (an old run's config.yaml) reads with defaults
    old = {"data": {"train": "x.extxyz", "cutoff": 4.0}, "epochs": 3}
    assert config_from_dict(old).data.label_keys() == LabelKeys()


@pytest.mark.parametrize(("override", "match"), [
    ("epochs=.inf", "'epochs' must be a (finite whole )?number"),
    ("epochs=1e400", "'epochs' must be a finite whole number"),
    ("optim.lr=.nan", "'optim.lr' must be a finite number"),
    ("optim.lr=-0.01", r"optim.lr must be >= 0"),
    ("loss.forces=-10", r"loss.forces must be >= 0 \(a loss weight"),
    ("loss.targets.gap=-1", r"loss.targets.gap must be >= 0"),
    ("optim.ema_decay=1", r"optim.ema_decay must be in \[0, 1\)"),
    ("data.cutoff=0", r"data.cutoff must be > 0 Angstrom"),
    ("optim.grad_clip=-1", r"optim.grad_clip must be >= 0"),
])  # fmt: skip
def test_numbers_outside_their_range_are_named(tmp_path, override, match):
    """Careless numbers never train silently: negative weights would maximise the error,
    non-finite ones poison every step (issue 21)."""
    from equivar.train import load_config

    path = tmp_path / "c.yaml"
    path.write_text("data: {train: x.extxyz}\n")
    with pytest.raises(ValueError, match=match):
        load_config(path, [override])


def test_all_zero_loss_weights_are_refused():
    from equivar.train.config import config_from_dict

    with pytest.raises(ValueError, match="every loss weight is 0"):
        config_from_dict({"data": {"train": "x"}, "loss": {"energy": 0, "forces": 0}})
