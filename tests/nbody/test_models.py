"""build("nbody", ...) models are E(3)- and permutation-equivariant for every layer type, in
float64 and float32, and their options are checked."""

import pytest
import torch

from equivar.data.datasets.nbody import VELOCITIES, nbody_batch
from equivar.models import BUILDERS, build
from equivar.models.nbody import LAYERS, NBodyModel
from equivar.testing import assert_equivariant

TINY = dict(preset="S", num_channels=8, num_layers=2, radial_hidden=(8,), num_heads=2)


def _batch(dtype, n_graphs=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(n_graphs, 5, 3, generator=g, dtype=torch.float64)
    vel = 0.5 * torch.randn(n_graphs, 5, 3, generator=g, dtype=torch.float64)
    charges = torch.randint(0, 2, (n_graphs, 5), generator=g).double() * 2 - 1
    return nbody_batch(pos.to(dtype), vel.to(dtype), charges.to(dtype))


@pytest.mark.parametrize("layer", LAYERS)
def test_model_is_equivariant(layer, dtype):
    model = build("nbody", layer=layer, predict_velocity=True, dtype=dtype, **TINY).eval()
    errors = assert_equivariant(model, _batch(dtype), n_rotations=2)
    assert set(errors) == {"pos", VELOCITIES}
    assert set(errors["pos"]) == {"rotation", "improper_rotation", "translation", "permutation",
                                  "edge_shuffle"}


@pytest.mark.parametrize("layer", ["egnn", "tfn", "se3_transformer"])
def test_only_charge_products_matter(layer):
    model = build("nbody", layer=layer, dtype="float64", **TINY).eval()
    batch = _batch(torch.float64)
    flipped = batch.clone()
    flipped.charges = -batch.charges
    torch.testing.assert_close(model(flipped)["pos"], model(batch)["pos"], rtol=1e-12, atol=0)
    other = batch.clone()
    other.charges = torch.ones_like(batch.charges)
    assert (model(other)["pos"] - model(batch)["pos"]).abs().max() > 0


def test_registered_and_configured():
    assert "nbody" in BUILDERS
    model = build("nbody", layer="tfn", preset="S", dtype="float64")
    assert isinstance(model, NBodyModel)
    assert model.config["name"] == "nbody" and model.config["layer"] == "tfn"
    assert model.config["num_channels"] == 32 and model.config["dtype"] == "float64"
    assert next(model.parameters()).dtype == torch.float64
    assert build("nbody").config["layer"] == "egnn"  # default: EGNN, preset M
    assert "NBodyModel(layer='tfn'" in repr(model) and "InteractionBlock" in repr(model)


def test_rebuilt_from_config_gives_the_same_predictions():
    model = build("nbody", layer="se3_transformer", predict_velocity=True, dtype="float64", **TINY)
    config = {k: v for k, v in model.config.items() if k != "name"}
    clone = build("nbody", **config)
    clone.load_state_dict(model.state_dict())
    batch = _batch(torch.float64)
    for key, value in model.eval()(batch).items():
        torch.testing.assert_close(clone.eval()(batch)[key], value, rtol=0, atol=0)


def test_bad_options_are_named_with_suggestions():
    with pytest.raises(ValueError, match="did you mean 'num_channels'"):
        build("nbody", num_chanels=8)
    with pytest.raises(ValueError, match="did you mean 'egnn'"):
        build("nbody", layer="egn")
    with pytest.raises(ValueError, match="preset"):
        build("nbody", preset="XL")
    with pytest.raises(ValueError, match="lmax must be >= 1"):
        build("nbody", layer="tfn", lmax=0, **{k: v for k, v in TINY.items()})
    model = build("nbody", layer="linear")
    batch = _batch(torch.float32)
    del batch.vel
    with pytest.raises(ValueError, match="no field 'vel'"):
        model(batch)
