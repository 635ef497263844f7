"""Spherical harmonics of edge directions."""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn


class EdgeSphericalHarmonics(nn.Module):
    """Real spherical harmonics Y_lm of the unit edge vector, l = 0..lmax.

    Uses e3nn's component normalisation (each l block has unit mean square on the sphere), so the
    output transforms under a rotation R by the Wigner matrices of ``irreps_out`` and under
    inversion with parity (-1)^l.

    Args:
        lmax: highest degree (default 3).

    Shapes:
        edge_vec: [n_edges, 3] -> [n_edges, irreps_out.dim] (= (lmax + 1)^2)

    Example:
        >>> sh = EdgeSphericalHarmonics(2)
        >>> sh(torch.randn(5, 3)).shape
        torch.Size([5, 9])
    """

    def __init__(self, lmax: int = 3) -> None:
        super().__init__()
        if lmax < 0:
            raise ValueError(f"lmax must be >= 0, got {lmax}")
        self.lmax = int(lmax)
        self.irreps_in = o3.Irreps("1o")
        self.irreps_out = o3.Irreps.spherical_harmonics(lmax)
        self.sh = o3.SphericalHarmonics(
            self.irreps_out, normalize=True, normalization="component"
        )

    def forward(self, edge_vec: torch.Tensor) -> torch.Tensor:
        return self.sh(edge_vec)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.irreps_in} -> {self.irreps_out})"
