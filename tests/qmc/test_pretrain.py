"""Hartree-Fock pre-training with pyscf (the ``qm`` extra)."""

import pytest
import torch

from equivar.qmc import HartreeFock, MetropolisSampler, atom, pretrain_orbitals, vmc
from tests.qmc.conftest import random_walkers, small_wavefunction

pytest.importorskip("pyscf")


def test_hartree_fock_orbitals_of_lithium():
    hf = HartreeFock(atom("Li"), basis="cc-pvdz")
    assert hf.energy == pytest.approx(-7.4325, abs=2e-3)  # UHF/cc-pVDZ, near the HF limit
    up, down = hf.orbitals(random_walkers("Li", n_walkers=5))
    assert up.shape == (5, 2, 2) and down.shape == (5, 1, 1)
    assert up.dtype == torch.float64


def test_pretraining_fits_the_orbitals():
    li = atom("Li")
    psi = small_wavefunction(li)
    sampler = MetropolisSampler(li, 64, dtype=torch.float64, seed=0)
    losses = pretrain_orbitals(psi, li, sampler, 30, lr=1e-2)
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5])


def test_vmc_with_pretraining_records_the_hf_energy():
    result = vmc("He", model={"preset": "S", "hidden_one": 16, "hidden_two": 4},
                 pretrain=5, iterations=2, walkers=32, burn_in=10, eval_iterations=0)
    assert result.hartree_fock == pytest.approx(-2.8552, abs=1e-3)
