"""Equivariant normalisation of node features."""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn


class EquivariantRMSNorm(nn.Module):
    r"""Normalise each irrep type by the RMS of its channels, then scale per channel.

    For the block ``mul x l`` of a node, :math:`x \mapsto \gamma \odot x / \sqrt{\langle x^2 \rangle
    + \epsilon}`, the mean taken over channels and the 2l + 1 components. Norms are rotation
    invariant and the scale is per channel (not per component), so the map is equivariant; even
    scalars are centred first as in LayerNorm.

    Args:
        irreps: features to normalise.
        eps: added to the mean square (default 1e-5).

    Shapes:
        x: [n_nodes, irreps.dim] -> [n_nodes, irreps.dim]
    """

    def __init__(self, irreps: o3.Irreps | str, eps: float = 1e-5) -> None:
        super().__init__()
        self.irreps_in = self.irreps_out = o3.Irreps(irreps)
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(self.irreps_in.num_irreps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, w0 = [], 0
        for (mul, ir), sl in zip(self.irreps_in, self.irreps_in.slices(), strict=True):
            block = x[:, sl].reshape(-1, mul, ir.dim)  # [n_nodes, mul, 2l+1]
            if ir.l == 0 and ir.p == 1:
                block = block - block.mean(dim=1, keepdim=True)
            ms = block.pow(2).mean(dim=(1, 2), keepdim=True)  # [n_nodes, 1, 1]
            gamma = self.weight[w0 : w0 + mul].reshape(1, mul, 1)
            out.append((gamma * block * torch.rsqrt(ms + self.eps)).reshape(-1, mul * ir.dim))
            w0 += mul
        return torch.cat(out, dim=-1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.irreps_in})"
