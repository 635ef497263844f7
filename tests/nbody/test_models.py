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


DYNAMICS = dict(edge_features="coulomb", softening=0.05, carry_velocity=True)


def test_coulomb_carry_model_is_equivariant(dtype):
    model = build("nbody", layer="egnn", predict_velocity=True, dtype=dtype, **TINY,
                  **DYNAMICS).eval()
    errors = assert_equivariant(model, _batch(dtype), n_rotations=2)
    assert set(errors) == {"pos", VELOCITIES}
    flipped = _batch(dtype)
    flipped.charges = -flipped.charges
    torch.testing.assert_close(model(flipped)["pos"], model(_batch(dtype))["pos"])


def test_coulomb_features_and_carried_velocity_by_hand():
    """The trunk equals the recurrence written out: features at each layer's positions,
    v_{l+1} = x_{l+1} - x_l fed to the next layer."""
    model = build("nbody", layer="egnn", dtype="float64", **TINY, **DYNAMICS).eval()
    trunk = model.trunk
    batch = _batch(torch.float64)
    src, dst = batch.edge_index
    qq = (batch.charges[src] * batch.charges[dst]).unsqueeze(-1)

    def features(x):
        r2 = (x[dst] - x[src]).pow(2).sum(-1, keepdim=True)
        return torch.cat([qq, qq / (r2 + 0.05), 1 / (r2 + 0.05), qq / (r2 + 0.05) ** 1.5], -1)

    h = trunk.embed(batch.vel.norm(dim=-1, keepdim=True))
    x, v = batch.pos, batch.vel / len(trunk.layers)
    assert trunk.steps == list(trunk.layers)
    for layer in trunk.layers:
        h, x_new = layer(h, x, batch.edge_index, v, features(x))
        x, v = x_new, x_new - x
    torch.testing.assert_close(model(batch)["pos"], x, rtol=1e-13, atol=1e-13)
    # the paper's form differs: every layer sees the input velocity
    paper = build("nbody", layer="egnn", dtype="float64", **TINY, edge_features="coulomb",
                  softening=0.05)
    paper.load_state_dict(model.state_dict())
    assert (paper.eval()(batch)["pos"] - x).abs().max() > 1e-8
    assert "edge_features='coulomb', softening=0.05, carry_velocity=True" in repr(model)


def test_dynamics_options_are_checked():
    with pytest.raises(ValueError, match="did you mean 'coulomb'"):
        build("nbody", edge_features="colomb")
    with pytest.raises(ValueError, match="softening must be > 0"):
        build("nbody", edge_features="coulomb", softening=0.0)
    with pytest.raises(ValueError, match="options of layer='egnn'"):
        build("nbody", layer="tfn", carry_velocity=True, **TINY)


def test_untrained_integrator_starts_at_constant_velocity():
    """carry_velocity starts near x + v (phi_v = 1, tiny coordinate updates), at any depth."""
    batch = _batch(torch.float64)
    for num_layers in (2, 8):
        options = {**TINY, **DYNAMICS, "num_layers": num_layers}
        model = build("nbody", layer="egnn", dtype="float64", **options).eval()
        pos = model(batch)["pos"]
        error = (pos - (batch.pos + batch.vel)).abs().max()
        assert error < 0.05 * batch.vel.abs().max(), (num_layers, error)


def test_shared_weights_apply_one_layer_at_every_step(dtype):
    options = {**TINY, **DYNAMICS, "num_layers": 3, "share_weights": True}
    model = build("nbody", layer="egnn", dtype=dtype, predict_velocity=True, **options).eval()
    trunk = model.trunk
    assert len(trunk.layers) == 1 and len(trunk.steps) == 3
    assert all(step is trunk.layers[0] for step in trunk.steps)
    separate = build("nbody", layer="egnn", dtype=dtype, predict_velocity=True,
                     **{**options, "share_weights": False})
    n_layer = sum(p.numel() for p in trunk.layers[0].parameters())
    count = sum(p.numel() for p in separate.parameters()) - sum(p.numel() for p in
                                                               model.parameters())
    assert count == 2 * n_layer
    assert_equivariant(model, _batch(dtype), n_rotations=1)
    assert "one layer shared by 3 steps" in repr(model)
