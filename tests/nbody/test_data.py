"""The charged N-body generator follows the protocol; the simulator conserves what physics does."""

import numpy as np
import pytest
import torch

from equivar.data.datasets import nbody as nb


@pytest.fixture(scope="module")
def trajectories():
    """The first three test trajectories of the protocol (a second of simulation)."""
    return nb.generate_trajectories("test", 3)


def _separated_states(n_traj: int, seed: int = 0):
    """States with no close encounters within one time unit (no force clipping)."""
    rng = np.random.default_rng(seed)
    grid = np.array([[0, 0, 0], [2, 0, 0], [0, 2, 0], [0, 0, 2], [2, 2, 2]], dtype=float)
    x = grid + 0.2 * rng.standard_normal((n_traj, 5, 3))
    v = 0.5 * rng.standard_normal((n_traj, 5, 3))
    q = rng.choice([-1.0, 1.0], size=(n_traj, 5))
    return x, v, q


def test_protocol_constants():
    p = nb.PROTOCOL
    assert (p.num_particles, p.loc_std, p.vel_norm, p.box_size) == (5, 1.0, 0.5, 5.0)
    assert (p.dt, p.max_force, p.num_steps, p.save_every) == (0.001, 100.0, 5000, 100)
    assert p.max_force == pytest.approx(0.1 / p.dt)
    assert p.num_frames == 49
    assert (nb.INPUT_FRAME, nb.TARGET_FRAME) == (30, 40)  # 1000 steps apart
    assert (nb.TARGET_FRAME - nb.INPUT_FRAME) * p.save_every == 1000
    assert nb.SPLIT_SIZES == {"train": 3000, "val": 2000, "test": 2000}
    with pytest.raises(ValueError, match="multiple"):
        nb.NBodyConfig(num_steps=1050, save_every=100)


def test_initial_states_follow_the_protocol_and_the_stream_order():
    (x, v, q), (x2, v2, q2) = nb.sample_initial_states([6, 3])
    assert set(np.unique(q)) <= {-1.0, 1.0}
    np.testing.assert_allclose(np.linalg.norm(v, axis=-1), 0.5)
    assert np.abs(x).max() <= nb.PROTOCOL.box_size
    # one stream, consumed in order: the second block continues where the first stopped
    (xa, va, qa), = nb.sample_initial_states([9])
    np.testing.assert_array_equal(xa[6:], x2)
    np.testing.assert_array_equal(qa[:6], q)


def test_generated_frames_follow_the_protocol(trajectories):
    pos, vel, q = trajectories["pos"], trajectories["vel"], trajectories["charges"]
    assert pos.shape == vel.shape == (3, 49, 5, 3) and q.shape == (3, 5)
    # frame k is the state after step 100 (k + 1): the initial state is overwritten
    (x0, v0, q0), = nb.sample_initial_states([nb._DRAWN["train"] + nb._DRAWN["val"] + 3])
    x1, v1 = nb.simulate(x0[-3:], v0[-3:], q0[-3:], num_frames=1)
    np.testing.assert_array_equal(q0[-3:], q)
    np.testing.assert_allclose(x1[:, 0], pos[:, 0], rtol=0, atol=1e-12)
    # a saved frame continues exactly: 10 frames (1000 steps) from frame 30 give frame 40
    x40, v40 = nb.simulate(pos[:, 30], vel[:, 30], q, num_frames=10)
    np.testing.assert_allclose(x40[:, -1], pos[:, 40], rtol=0, atol=1e-9)
    np.testing.assert_allclose(v40[:, -1], vel[:, 40], rtol=0, atol=1e-9)


def test_simulator_conserves_momentum():
    x, v, q = _separated_states(4)
    for max_force in (None, 100.0):  # clipping never triggers here
        _, vel = nb.simulate(x, v, q, num_frames=10, save_every=100, max_force=max_force)
        p = nb.total_momentum(vel)  # [n_traj, n_frames, 3]
        np.testing.assert_allclose(p, p[:, :1].repeat(10, axis=1), rtol=0, atol=1e-12)
    # Newton's third law: the forces of every system sum to zero
    f = nb.forces(np.random.default_rng(1).standard_normal((3, 5, 3)), q[:3])
    np.testing.assert_allclose(f.sum(axis=-2), 0.0, atol=1e-10)


def test_simulator_conserves_energy_for_small_steps():
    x, v, q = _separated_states(4)
    drifts = []
    for dt, every in ((1e-3, 100), (1e-4, 1000)):  # both: ten frames over one time unit
        pos, vel = nb.simulate(x, v, q, num_frames=10, save_every=every, dt=dt)
        e = nb.total_energy(pos, vel, q[:, None])  # [n_traj, n_frames]
        drifts.append(np.abs(e - e[:, :1]).max())
    assert drifts[1] < 1e-4  # |E| ~ 1..3 here
    assert drifts[0] / drifts[1] > 5  # first-order convergence of the saved energy in dt


def test_total_energy_matches_pair_sum():
    rng = np.random.default_rng(2)
    x, v, q = rng.standard_normal((5, 3)), rng.standard_normal((5, 3)), rng.choice([-1, 1], 5)
    pair = sum(q[i] * q[j] / np.linalg.norm(x[i] - x[j]) for i in range(5) for j in range(i))
    assert nb.total_energy(x, v, q) == pytest.approx(0.5 * (v**2).sum() + pair, rel=1e-12)


def test_cache_roundtrip(tmp_path, monkeypatch):
    data = nb.load_trajectories("val", 2, root=tmp_path)
    files = list((tmp_path / "nbody").glob("*.npz"))
    assert len(files) == 1 and data["pos"].shape == (2, 49, 5, 3)

    def fail(*args, **kwargs):
        raise AssertionError("regenerated although cached")

    monkeypatch.setattr(nb, "generate_trajectories", fail)
    monkeypatch.setenv("EQUIVAR_CACHE", str(tmp_path))
    again = nb.load_trajectories("val", 2)  # from the environment variable's folder
    for key in ("pos", "vel", "charges"):
        np.testing.assert_array_equal(again[key], data[key])
    assert nb.cache_dir() == tmp_path
    with pytest.raises(AssertionError, match="regenerated"):
        nb.load_trajectories("val", 2, regenerate=True)
    with pytest.raises(ValueError, match="did you mean 'train'"):
        nb.load_trajectories("training", 2)


def test_dataset_pairs_and_batches(trajectories):
    ds = nb.NBodyDataset("test", trajectories=trajectories)
    assert len(ds) == 3 and ds.pos.shape == (3, 5, 3) and ds.pos.dtype == torch.float32
    torch.testing.assert_close(ds.target_pos, torch.as_tensor(trajectories["pos"][:, 40]).float())
    every = nb.NBodyDataset("test", trajectories=trajectories, input_frames=range(48), horizon=1,
                            dtype=torch.float64)
    assert len(every) == 3 * 48
    torch.testing.assert_close(every.target_vel[47], torch.as_tensor(trajectories["vel"][0, 48]))
    batches = list(every.batches(50, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert [b.num_graphs for b in batches] == [50, 50, 44]
    b = batches[0]
    assert b.pos.shape == (250, 3) and b.edge_index.shape == (2, 50 * 20)
    assert b.target_pos.shape == (250, 3) and b.charges.shape == (250,)
    with pytest.raises(ValueError, match="saved frames"):
        nb.NBodyDataset("test", trajectories=trajectories, input_frames=(45,), horizon=10)


def test_complete_graph():
    edge_index = nb.complete_graph(3, 5)
    assert edge_index.shape == (2, 60)
    sender, receiver = edge_index
    assert bool((sender != receiver).all())
    assert bool((sender // 5 == receiver // 5).all())  # never across systems
    pairs = {(int(s), int(r)) for s, r in edge_index.T}
    assert len(pairs) == 60  # every ordered pair once
    assert torch.equal(torch.bincount(receiver), torch.full((15,), 4))


@pytest.mark.slow
def test_full_splits_have_the_protocol_sizes():
    for split, size in nb.SPLIT_SIZES.items():
        data = nb.load_trajectories(split)
        assert data["pos"].shape == data["vel"].shape == (size, 49, 5, 3)
        assert data["charges"].shape == (size, 5)
        assert np.isfinite(data["pos"]).all()
        ds = nb.NBodyDataset(split)
        assert len(ds) == size
