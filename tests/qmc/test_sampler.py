"""Metropolis sampler: samples |psi|^2, adapts its step, and restarts exactly from its state."""

import torch

from equivar.qmc import MetropolisSampler, atom, get_system
from equivar.qmc.sampler import initial_walkers


def hydrogen_1s(r):
    return torch.ones(len(r), dtype=r.dtype), -r.norm(dim=-1).sum(-1)


def test_samples_hydrogen_density():
    """<r> = 3/2 bohr and <1/r> = 1 for |psi_1s|^2."""
    sampler = MetropolisSampler(atom("H"), 2000, dtype=torch.float64, seed=1)
    sampler.burn_in(hydrogen_1s, 200)
    radii, inverse = [], []
    for _ in range(20):
        sampler.sweep(hydrogen_1s)
        d = sampler.walkers.norm(dim=-1)
        radii.append(d.mean())
        inverse.append((1 / d).mean())
    assert abs(torch.stack(radii).mean().item() - 1.5) < 0.03
    assert abs(torch.stack(inverse).mean().item() - 1.0) < 0.02


def test_step_size_adapts_to_the_target_acceptance():
    sampler = MetropolisSampler(atom("H"), 1000, step_size=3.0, target_acceptance=0.5, seed=0)
    for _ in range(30):
        acceptance = sampler.sweep(hydrogen_1s)
    assert abs(acceptance.item() - 0.5) < 0.1
    assert sampler.step_size.item() < 3.0


def test_state_dict_restarts_exactly():
    a = MetropolisSampler(atom("H"), 64, seed=3)
    a.sweep(hydrogen_1s)
    state = {k: v.clone() for k, v in a.state_dict().items()}
    a.sweep(hydrogen_1s)
    b = MetropolisSampler(atom("H"), 64, seed=99)
    b.load_state_dict(state)
    b.sweep(hydrogen_1s)
    assert torch.equal(a.walkers, b.walkers) and torch.equal(a.step_size, b.step_size)


def test_initial_walkers_sit_on_the_atoms_with_both_spins():
    lih = get_system("LiH")
    r = initial_walkers(lih, 3, torch.Generator().manual_seed(0), dtype=torch.float64, width=0.0)
    z = r[0, :, 2].tolist()
    assert sorted(z) == [0.0, 0.0, 0.0, 3.015]  # three at Li, one at H
    assert z[:2] == [0.0, 0.0] or z[2:] == [0.0, 0.0]


def test_nan_proposals_are_rejected():
    def broken(r):  # log|psi| is NaN far from the nucleus
        la = -r.norm(dim=-1).sum(-1)
        return torch.ones_like(la), torch.where(la < -2, torch.nan, la)

    sampler = MetropolisSampler(atom("H"), 256, seed=0)
    sampler.walkers = sampler.walkers * 0.1
    sampler.sweep(broken)
    assert torch.isfinite(broken(sampler.walkers)[1]).all()
