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
