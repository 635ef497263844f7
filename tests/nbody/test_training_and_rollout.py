"""A tiny training run lowers the loss; rollouts iterate a one-step model and are compared with
the simulator's conserved quantities."""

import numpy as np
import pytest
import torch

from equivar.data.datasets import nbody as nb
from equivar.models import build
from equivar.simulate import rollout
from equivar.simulate.rollouts import compare_with_simulator, conserved_quantities


@pytest.fixture(scope="module")
def trajectories():
    return nb.generate_trajectories("val", 4)


def _mse(model, ds):
    with torch.no_grad():
        return ((model(ds.batch(slice(None)))["pos"] - ds.target_pos.reshape(-1, 3)) ** 2).mean()


SIZES = {
    "egnn": dict(layer="egnn", preset="S", num_layers=2, num_channels=16),
    "tfn": dict(layer="tfn", preset="S", num_layers=1, num_channels=8, sh_lmax=1,
                radial_hidden=(8,)),
    "integrator": dict(layer="egnn", preset="integrator", num_layers=3, num_channels=16),
}


@pytest.mark.parametrize("name", list(SIZES))
def test_tiny_training_lowers_the_loss(name, trajectories):
    torch.manual_seed(0)
    ds = nb.NBodyDataset("val", trajectories=trajectories, input_frames=range(0, 38))
    model = build("nbody", **SIZES[name])
    before = _mse(model.eval(), ds).item()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    g = torch.Generator().manual_seed(0)
    for _ in range(4):
        for batch in ds.batches(38, shuffle=True, generator=g):
            opt.zero_grad()
            loss = ((model(batch)["pos"] - batch.target_pos) ** 2).mean()
            loss.backward()
            opt.step()
    after = _mse(model.eval(), ds).item()
    assert after < 0.7 * before, (before, after)


def test_rollout_iterates_the_model():
    model = build("nbody", layer="linear", predict_velocity=True, dtype="float64")
    with torch.no_grad():
        model.trunk.time.fill_(0.5)
    x = torch.randn(3, 5, 3, dtype=torch.float64)
    v = torch.randn(3, 5, 3, dtype=torch.float64)
    q = torch.ones(3, 5, dtype=torch.float64)
    traj = rollout(model, x, v, q, num_steps=4, batch_size=2)
    assert traj["pos"].shape == traj["vel"].shape == (3, 5, 5, 3)
    torch.testing.assert_close(traj["pos"][:, 4], x + 2.0 * v)
    torch.testing.assert_close(traj["pos"][:, 0], x)
    with pytest.raises(ValueError, match="predict_velocity=True"):
        rollout(build("nbody", layer="linear"), x, v, q, num_steps=1)


def test_compare_with_simulator(trajectories):
    model = build("nbody", layer="linear", predict_velocity=True, dtype="float64")
    with torch.no_grad():
        model.trunk.time.fill_(0.1)  # one saved frame = 100 steps of 0.001
    x, v, q = trajectories["pos"][:, 0], trajectories["vel"][:, 0], trajectories["charges"]
    report = compare_with_simulator(model, x, v, q, num_steps=6)
    for key in ("time", "mse", "energy_drift_model", "energy_drift_true", "momentum_drift_model",
                "momentum_drift_true"):
        assert report[key].shape == (7,) and report[key][0] == 0.0
    np.testing.assert_allclose(report["time"][-1], 0.6)
    # the simulator continues the saved trajectory exactly
    np.testing.assert_allclose(report["pos_true"], trajectories["pos"][:, :7], rtol=0, atol=1e-9)
    # constant velocities keep the momentum; uniform motion does not keep the energy
    np.testing.assert_allclose(report["momentum_drift_model"], 0.0, atol=1e-12)
    assert report["energy_drift_model"][-1] > 0
    c = conserved_quantities(report["pos_true"], trajectories["vel"][:, :7], q)
    assert c["energy"].shape == (4, 7) and c["momentum"].shape == (4, 7, 3)
    np.testing.assert_allclose(report["energy_true"], c["energy"])
    assert report["momentum_model"].shape == (4, 7, 3)


def test_collapsed_particles_give_infinite_energy_without_warnings():
    x = np.zeros((2, 5, 3))  # every particle on the same spot
    e = conserved_quantities(x[:, None], x[:, None], np.ones((2, 5)))["energy"]
    assert np.isinf(e).all()
