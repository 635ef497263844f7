"""Exponential envelopes: make orbitals decay like bound states far from the nuclei."""

from __future__ import annotations

import torch
from torch import nn


class IsotropicEnvelope(nn.Module):
    r"""``env_k(r_i) = sum_I pi_kI exp(-|sigma_kI| |r_i - R_I|)``: one envelope per orbital.

    Multiplying orbital k by its envelope gives it the exponential tail of a bound state, so
    ``|psi|^2`` is normalisable whatever the network computes; ``|sigma|`` keeps it decaying.

    Args:
        n_nuclei: number of nuclei.
        n_orbitals: number of orbitals (all determinants of one spin together).
        sigma: initial decay rates (1/bohr, default 1.0).

    Shapes:
        d_en: [n_walkers, n, n_nuclei] electron-nucleus distances -> [n_walkers, n, n_orbitals]

    References:
        Spencer, Pfau, Botev, Foulkes, "Better, faster fermionic neural networks", arXiv:2011.07125
        (2020), the isotropic envelope of FermiNet.
    """

    def __init__(self, n_nuclei: int, n_orbitals: int, sigma: float = 1.0) -> None:
        super().__init__()
        if n_nuclei < 1 or n_orbitals < 1:
            raise ValueError(f"IsotropicEnvelope needs n_nuclei >= 1 and n_orbitals >= 1, got "
                             f"{n_nuclei} and {n_orbitals}")
        self.n_nuclei, self.n_orbitals = int(n_nuclei), int(n_orbitals)
        self.sigma = nn.Parameter(torch.full((n_nuclei, n_orbitals), float(sigma)))
        self.pi = nn.Parameter(torch.ones(n_nuclei, n_orbitals))

    def forward(self, d_en: torch.Tensor) -> torch.Tensor:
        decay = torch.exp(-d_en.unsqueeze(-1) * self.sigma.abs())  # [n_walkers, n, n_nuclei, n_orb]
        return (decay * self.pi).sum(-2)  # [n_walkers, n, n_orbitals]

    def extra_repr(self) -> str:
        return f"n_nuclei={self.n_nuclei}, n_orbitals={self.n_orbitals}"


ENVELOPES = {"isotropic": IsotropicEnvelope}
