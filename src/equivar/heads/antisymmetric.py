"""Antisymmetric heads: Slater determinants of learned orbitals, combined in the log domain.

Any per-particle features that are *equivariant* under permutations of same-spin particles
(FermiNet's streams, a graph network over electrons, the invariant channels of the equivariant
blocks of :mod:`equivar.nn`) become orbitals ``phi_k(r_i; {r})``; swapping two same-spin
electrons swaps two rows of a determinant and flips its sign, so the head is antisymmetric by
construction. Nothing here ever forms psi: values are ``(sign, log|.|)`` pairs.
"""

from __future__ import annotations

import torch
from torch import nn

from equivar.heads.envelopes import ENVELOPES


def signed_logsumexp(sign: torch.Tensor, logabs: torch.Tensor, dim: int = -1):
    r"""``(sign, log|.|)`` of ``sum_k sign_k exp(logabs_k)`` along ``dim``, without overflow.

    Args:
        sign: +-1 of each term.
        logabs: log of the magnitude of each term (same shape).
        dim: the summed dimension (default -1).

    Returns:
        ``(sign, logabs)`` with ``dim`` removed.

    Example:
        >>> s, l = signed_logsumexp(torch.tensor([1.0, -1.0]), torch.tensor([1000.0, 999.0]))
        >>> s.item(), round(l.item() - 1000.0, 4)  # log(e^1000 - e^999) = 1000 + log(1 - 1/e)
        (1.0, -0.4587)
    """
    top = logabs.amax(dim, keepdim=True).detach()  # the shift cancels exactly; no grad needed
    total = (sign * torch.exp(logabs - top)).sum(dim)
    return torch.sign(total), torch.log(total.abs()) + top.squeeze(dim)


class SlaterDeterminantHead(nn.Module):
    r"""``psi = sum_k det[phi^up_k(r_i)] det[phi^down_k(r_j)]`` from per-electron features.

    For each spin s and determinant k, orbital ``a`` at electron ``i`` is
    ``phi^s_ka(i) = (w^s_ka . h_i + b^s_ka) * env^s_ka(r_i)``: a linear map of the features times
    an exponential envelope (:class:`~equivar.heads.envelopes.IsotropicEnvelope`). The
    determinants of each spin come from ``torch.linalg.slogdet`` and the sum over ``k`` from
    :func:`signed_logsumexp`; the weights of the sum live in the orbitals' scale.

    Args:
        num_features: width of the per-electron features ``h``.
        n_up, n_down: electrons of each spin (spin-up first in every input).
        n_nuclei: nuclei (for the envelopes).
        n_determinants: number of determinants (default 1).
        envelope: ``"isotropic"`` (default).

    Shapes:
        h: [n_walkers, n_elec, num_features], d_en: [n_walkers, n_elec, n_nuclei]
        -> sign [n_walkers], logabs [n_walkers]

    Example:
        >>> head = SlaterDeterminantHead(8, n_up=2, n_down=1, n_nuclei=1, n_determinants=2)
        >>> h, d = torch.randn(5, 3, 8), torch.rand(5, 3, 1)
        >>> sign, logabs = head(h, d)
        >>> s2, l2 = head(h[:, [1, 0, 2]], d[:, [1, 0, 2]])  # swap the two up electrons
        >>> bool((s2 == -sign).all()), bool(torch.allclose(l2, logabs))
        (True, True)

    References:
        Pfau, Spencer, Matthews, Foulkes, "Ab initio solution of the many-electron Schroedinger
        equation with deep neural networks", Phys. Rev. Research 2, 033429 (2020) (FermiNet).
    """

    def __init__(self, num_features: int, n_up: int, n_down: int, n_nuclei: int,
                 n_determinants: int = 1, envelope: str = "isotropic") -> None:
        super().__init__()
        if n_up < 0 or n_down < 0 or n_up + n_down < 1:
            raise ValueError(f"need n_up, n_down >= 0 and at least one electron, got {n_up}, "
                             f"{n_down}")
        if n_determinants < 1:
            raise ValueError(f"n_determinants must be >= 1, got {n_determinants}")
        if envelope not in ENVELOPES:
            raise ValueError(f"unknown envelope {envelope!r}; choose one of {sorted(ENVELOPES)}")
        self.num_features, self.n_determinants = int(num_features), int(n_determinants)
        self.spins = tuple(int(n) for n in (n_up, n_down))
        # one linear map and one envelope per non-empty spin channel
        self.orbital_maps = nn.ModuleList(
            nn.Linear(num_features, n_determinants * n) for n in self.spins if n > 0)
        self.envelopes = nn.ModuleList(
            ENVELOPES[envelope](n_nuclei, n_determinants * n) for n in self.spins if n > 0)

    def orbitals(self, h: torch.Tensor, d_en: torch.Tensor) -> list[torch.Tensor]:
        """The orbital matrices of each non-empty spin channel (up first).

        Returns:
            ``[n_walkers, n_det, n_s, n_s]`` per spin ``s``; entry ``[w, k, i, a]`` is orbital
            ``a`` of determinant ``k`` at electron ``i`` of that spin.
        """
        if h.shape[-2] != sum(self.spins) or h.shape[-1] != self.num_features:
            raise ValueError(f"features must have shape [n_walkers, {sum(self.spins)}, "
                             f"{self.num_features}], got {list(h.shape)}")
        out, start, channel = [], 0, 0
        for n in self.spins:
            if n == 0:
                continue
            sl = slice(start, start + n)
            phi = self.orbital_maps[channel](h[:, sl])  # [n_walkers, n, n_det * n]
            phi = phi * self.envelopes[channel](d_en[:, sl])
            phi = phi.unflatten(-1, (self.n_determinants, n)).transpose(1, 2)  # [n_w, n_det, n, n]
            out.append(phi)
            start, channel = start + n, channel + 1
        return out

    def forward(self, h: torch.Tensor, d_en: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sign, logabs = None, None
        for phi in self.orbitals(h, d_en):
            s, la = torch.linalg.slogdet(phi)  # [n_walkers, n_det]
            sign, logabs = (s, la) if sign is None else (sign * s, logabs + la)
        return signed_logsumexp(sign, logabs, dim=-1)  # [n_walkers] each

    def extra_repr(self) -> str:
        return (f"num_features={self.num_features}, spins={self.spins}, "
                f"n_determinants={self.n_determinants}")
