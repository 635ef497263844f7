"""Optimisers: per-walker log-derivatives, the walker-space (minSR) solve equals the
parameter-space natural gradient, SPRING's momentum, Adam's surrogate gradient, clipping."""

import pytest
import torch

from equivar.qmc import AdamVMC, StochasticReconfiguration
from equivar.qmc.optim import clip_local_energies, learning_rate, per_walker_gradients
from tests.qmc.conftest import random_walkers, small_wavefunction


def _flat_params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_per_walker_gradients_equal_autograd_per_walker():
    psi = small_wavefunction("Li", hidden_one=8, hidden_two=2)
    r = random_walkers("Li", n_walkers=3)
    o = per_walker_gradients(psi, r)
    for w in range(3):
        psi.zero_grad()
        psi(r[w:w + 1])[1].sum().backward()
        expected = torch.cat([p.grad.flatten() for p in psi.parameters()])
        torch.testing.assert_close(o[w], expected, rtol=1e-10, atol=1e-12)


def test_minsr_step_is_the_damped_natural_gradient():
    psi = small_wavefunction("He", hidden_one=4, hidden_two=2, n_determinants=1)
    r = random_walkers("He", n_walkers=16)
    e_local = torch.randn(16, dtype=torch.float64)
    o = per_walker_gradients(psi, r)
    o = (o - o.mean(0)) / 4.0
    e = (e_local - e_local.mean()) / 4.0
    damping, lr = 1e-2, 0.1
    s = o.T @ o + damping * torch.eye(o.shape[1], dtype=torch.float64)
    expected = -lr * torch.linalg.solve(s, o.T @ e)  # (S + lambda)^-1 applied to -grad / 2
    before = _flat_params(psi)
    sr = StochasticReconfiguration(psi, lr=lr, damping=damping, momentum=0.0, max_norm=0.0,
                                   clip_width=0.0)
    sr.step(r, e_local)
    torch.testing.assert_close(_flat_params(psi) - before, expected, rtol=1e-7, atol=1e-10)


def test_spring_momentum_reuses_the_previous_step():
    psi = small_wavefunction("He", hidden_one=4, hidden_two=2, n_determinants=1)
    r = random_walkers("He", n_walkers=8)
    e_local = torch.randn(8, dtype=torch.float64)
    sr = StochasticReconfiguration(psi, lr=0.05, damping=1e-3, momentum=0.9, max_norm=0.0,
                                   clip_width=0.0)
    previous = 1e-3 * torch.randn_like(sr.previous)
    sr.previous = previous.clone()
    o = per_walker_gradients(psi, r)
    o = (o - o.mean(0)) / 8**0.5
    e = (e_local - e_local.mean()) / 8**0.5
    t = o @ o.T + 1e-3 * torch.eye(8, dtype=torch.float64)
    phi = o.T @ torch.linalg.solve(t, -e - 0.9 * o @ previous) + 0.9 * previous
    sr.step(r, e_local)
    torch.testing.assert_close(sr.previous, phi, rtol=1e-7, atol=1e-12)


def test_trust_region_bounds_the_fisher_norm_of_a_step():
    psi = small_wavefunction("He", hidden_one=4, hidden_two=2, n_determinants=1)
    r = random_walkers("He", n_walkers=8)
    sr = StochasticReconfiguration(psi, lr=1.0, momentum=0.0, max_norm=1e-6, clip_width=0.0)
    before = _flat_params(psi)
    sr.step(r, 10 * torch.randn(8, dtype=torch.float64))
    o = per_walker_gradients(psi, r)  # parameters moved only a little: O barely changed
    o = (o - o.mean(0)) / 8**0.5
    step = _flat_params(psi) - before
    assert (o @ step).square().sum().item() < 1.1e-6


def test_adam_surrogate_has_the_vmc_gradient():
    psi = small_wavefunction("He", hidden_one=4, hidden_two=2, n_determinants=1)
    r = random_walkers("He", n_walkers=8)
    e_local = torch.randn(8, dtype=torch.float64)
    adam = AdamVMC(psi, lr=1e-3, clip_width=0.0)
    adam.adam.step = lambda: None  # keep the gradient, skip the update
    adam.step(r, e_local)
    got = torch.cat([p.grad.flatten() for p in psi.parameters()])
    o = per_walker_gradients(psi, r)
    expected = 2 * ((e_local - e_local.mean())[:, None] * (o - o.mean(0))).mean(0)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_clipping_and_schedule():
    e = torch.cat([-1.0 + 0.1 * torch.randn(99, dtype=torch.float64),
                   torch.tensor([50.0], dtype=torch.float64)])
    clipped = clip_local_energies(e, 5.0)
    median = e.median()
    bound = (median + 5 * (e - median).abs().mean()).item()
    assert clipped.max().item() == pytest.approx(bound) and bound < 10
    assert torch.equal(clipped[:99], e[:99])
    assert torch.equal(clip_local_energies(e, 0.0), e)
    assert learning_rate(0.1, 0, 100) == pytest.approx(0.1)
    assert learning_rate(0.1, 100, 100) == pytest.approx(0.05)
