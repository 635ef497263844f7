"""Symmetric (bosonic) head: a permutation-invariant ``log psi`` from per-particle features."""

from __future__ import annotations

import torch
from torch import nn


class SymmetricHead(nn.Module):
    r"""``log psi = rho(mean_i phi(h_i)) - sum_{i,I} kappa_I |r_i - R_I|``, ``sign = +1``.

    A Deep Sets readout: ``phi`` and ``rho`` are small MLPs and the mean over particles makes
    ``log psi`` invariant under *every* permutation of the particles when the features ``h`` are
    permutation-equivariant. The positive decay rates ``kappa`` (softplus) keep ``psi``
    normalisable. A bosonic ground state has no nodes, so the sign is always +1.

    Args:
        num_features: width of the per-particle features.
        n_nuclei: nuclei (centres of the decay term).
        hidden: width of ``phi`` and ``rho`` (default 32).

    Shapes:
        h: [n_walkers, n_elec, num_features], d_en: [n_walkers, n_elec, n_nuclei]
        -> sign [n_walkers], logabs [n_walkers]

    References:
        Zaheer et al., "Deep Sets", NeurIPS 2017.
    """

    def __init__(self, num_features: int, n_nuclei: int, hidden: int = 32) -> None:
        super().__init__()
        self.phi = nn.Sequential(nn.Linear(num_features, hidden), nn.Tanh(),
                                 nn.Linear(hidden, hidden))
        self.rho = nn.Sequential(nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                 nn.Linear(hidden, 1))
        self.kappa = nn.Parameter(torch.full((n_nuclei,), 0.5413))  # softplus -> 1.0
        self.num_features = int(num_features)

    def forward(self, h: torch.Tensor, d_en: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.phi(h).mean(-2)  # [n_walkers, hidden]
        decay = (d_en * nn.functional.softplus(self.kappa)).sum((-1, -2))  # [n_walkers]
        logabs = self.rho(pooled).squeeze(-1) - decay
        return torch.ones_like(logabs), logabs
