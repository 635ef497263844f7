"""Radial bases, the smooth cutoff envelope, and the radial MLP that makes per-edge weights."""

from __future__ import annotations

import math

import torch
from e3nn.nn import FullyConnectedNet
from torch import nn


class PolynomialCutoff(nn.Module):
    r"""Smooth envelope that is 1 at r = 0 and reaches 0 at r = cutoff with p - 1 derivatives.

    .. math:: u(x) = 1 - \frac{(p+1)(p+2)}{2} x^p + p(p+2) x^{p+1} - \frac{p(p+1)}{2} x^{p+2}

    with :math:`x = r / r_c`, and :math:`u = 0` for :math:`x \ge 1`. The value and its first and
    second derivatives vanish at the cutoff, so energies and forces stay continuous (and the
    Hessian bounded) when an atom crosses it.

    Args:
        cutoff: radius :math:`r_c` (Angstrom).
        p: polynomial order (default 6; must be >= 2).

    Shapes:
        r: [...] -> [...]

    Example:
        >>> env = PolynomialCutoff(5.0)
        >>> env(torch.tensor([0.0, 5.0, 6.0])).tolist()
        [1.0, 0.0, 0.0]

    References:
        Klicpera, Gross, Guennemann, "Directional message passing for molecular graphs",
        ICLR 2020 (DimeNet), eq. 8.
    """

    def __init__(self, cutoff: float, p: int = 6) -> None:
        super().__init__()
        if not (cutoff > 0 and math.isfinite(cutoff)):
            raise ValueError(f"cutoff must be positive and finite, got {cutoff}")
        if p < 2:
            raise ValueError(f"PolynomialCutoff needs p >= 2 for a smooth envelope, got p={p}")
        self.cutoff = float(cutoff)
        self.p = int(p)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        p = self.p
        x = r / self.cutoff
        u = (
            1.0
            - 0.5 * (p + 1) * (p + 2) * x.pow(p)
            + p * (p + 2) * x.pow(p + 1)
            - 0.5 * p * (p + 1) * x.pow(p + 2)
        )
        return u * (x < 1.0).to(u.dtype)

    def extra_repr(self) -> str:
        return f"cutoff={self.cutoff}, p={self.p}"


class BesselBasis(nn.Module):
    r"""Radial Bessel functions :math:`\sqrt{2/r_c}\,\sin(n\pi r / r_c) / r`, n = 1..num_basis.

    The frequencies are trainable (initialised at :math:`n\pi/r_c`), as in DimeNet and NequIP.

    Args:
        cutoff: radius :math:`r_c` (Angstrom).
        num_basis: number of functions (default 8).
        trainable: learn the frequencies (default True).

    Shapes:
        r: [n_edges] -> [n_edges, num_basis]

    References:
        Klicpera et al., ICLR 2020 (DimeNet), eq. 7; Batzner et al., Nat. Commun. 13, 2453
        (2022) (NequIP).
    """

    def __init__(self, cutoff: float, num_basis: int = 8, trainable: bool = True) -> None:
        super().__init__()
        if num_basis < 1:
            raise ValueError(f"num_basis must be >= 1, got {num_basis}")
        self.cutoff = float(cutoff)
        self.num_basis = int(num_basis)
        freqs = torch.arange(1, num_basis + 1, dtype=torch.get_default_dtype()) * math.pi / cutoff
        self.freqs = nn.Parameter(freqs, requires_grad=trainable)
        self.prefactor = math.sqrt(2.0 / cutoff)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        r = r.unsqueeze(-1)  # [n_edges, 1]
        return self.prefactor * torch.sin(self.freqs * r) / r  # [n_edges, num_basis]

    def extra_repr(self) -> str:
        return f"cutoff={self.cutoff}, num_basis={self.num_basis}"


class GaussianBasis(nn.Module):
    r"""Gaussians :math:`\exp(-(r - \mu_k)^2 / 2\sigma^2)` on an even grid of centres in [0, r_c].

    Args:
        cutoff: radius :math:`r_c` (Angstrom).
        num_basis: number of Gaussians (default 8); the width is the grid spacing.

    Shapes:
        r: [n_edges] -> [n_edges, num_basis]

    References:
        Schuett et al., J. Chem. Phys. 148, 241722 (2018) (SchNet).
    """

    def __init__(self, cutoff: float, num_basis: int = 8) -> None:
        super().__init__()
        if num_basis < 2:
            raise ValueError(f"GaussianBasis needs num_basis >= 2, got {num_basis}")
        self.cutoff = float(cutoff)
        self.num_basis = int(num_basis)
        centres = torch.linspace(0.0, cutoff, num_basis, dtype=torch.get_default_dtype())
        self.register_buffer("centres", centres)
        self.width = float(cutoff / (num_basis - 1))

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        d = r.unsqueeze(-1) - self.centres  # [n_edges, num_basis]
        return torch.exp(-0.5 * (d / self.width).pow(2))

    def extra_repr(self) -> str:
        return f"cutoff={self.cutoff}, num_basis={self.num_basis}"


RADIAL_BASES = {"bessel": BesselBasis, "gaussian": GaussianBasis}


class RadialEmbedding(nn.Module):
    """Radial basis times the cutoff envelope: the invariant edge features.

    Every per-edge quantity built from these features vanishes smoothly at the cutoff.

    Args:
        cutoff: radius (Angstrom).
        num_basis: number of basis functions (default 8).
        basis: ``"bessel"`` (default) or ``"gaussian"``.
        cutoff_p: order of the polynomial envelope (default 6).

    Shapes:
        edge_len: [n_edges] -> [n_edges, num_basis]
    """

    def __init__(
        self, cutoff: float, num_basis: int = 8, basis: str = "bessel", cutoff_p: int = 6
    ) -> None:
        super().__init__()
        if not (cutoff > 0 and math.isfinite(cutoff)):
            raise ValueError(f"cutoff must be positive and finite, got {cutoff}")
        if basis not in RADIAL_BASES:
            raise ValueError(f"unknown radial basis {basis!r}; choose one of {list(RADIAL_BASES)}")
        self.basis = RADIAL_BASES[basis](cutoff, num_basis)
        self.envelope = PolynomialCutoff(cutoff, cutoff_p)
        self.num_basis = int(num_basis)

    def forward(self, edge_len: torch.Tensor) -> torch.Tensor:
        return self.basis(edge_len) * self.envelope(edge_len).unsqueeze(-1)


class RadialMLP(nn.Module):
    """MLP from invariant edge features to per-edge tensor-product weights.

    Built on e3nn's variance-preserving ``FullyConnectedNet`` (SiLU, no bias), so weights start
    at unit scale whatever the widths. Without a bias it maps zero features to zero weights, which
    keeps every message zero beyond the cutoff.

    Args:
        num_in: number of radial features.
        hidden: widths of the hidden layers (default ``(64, 64)``).
        num_out: number of weights per edge (the tensor product's ``weight_numel``).

    Shapes:
        edge_radial: [n_edges, num_in] -> [n_edges, num_out]
    """

    def __init__(self, num_in: int, hidden: tuple[int, ...] | list[int], num_out: int) -> None:
        super().__init__()
        self.net = FullyConnectedNet([num_in, *hidden, num_out], torch.nn.functional.silu)
        self.num_in, self.num_out = int(num_in), int(num_out)

    def forward(self, edge_radial: torch.Tensor) -> torch.Tensor:
        return self.net(edge_radial)
