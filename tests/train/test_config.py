"""Typed configs: YAML + overrides, numbers coerced, unknown keys named with a suggestion."""

import pytest

from equivar.train import load_config


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
