"""One interaction block: convolution + self-interaction, gated, with a residual connection."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from e3nn import o3
from torch import nn

from equivar.nn.conv import TensorProductConv
from equivar.nn.gate import GatedActivation
from equivar.nn.norm import EquivariantRMSNorm


class InteractionBlock(nn.Module):
    r"""``h -> h + Gate(Conv(h) + Linear(h))`` (the residual only where irreps match).

    Args:
        irreps_in: node features in.
        irreps_out: node features out (after the gate).
        irreps_sh: edge spherical harmonics.
        num_radial: invariant edge features.
        radial_hidden: radial MLP widths (default ``(64, 64)``).
        avg_num_neighbors: normalisation of the neighbour sum.
        norm: apply :class:`EquivariantRMSNorm` to the input first (default False).
        backend: convolution backend, see :mod:`equivar.kernels` (default ``"auto"``).

    Shapes:
        node_feats: [n_nodes, irreps_in.dim], edge_sh: [n_edges, irreps_sh.dim],
        edge_radial: [n_edges, num_radial], edge_index: [2, n_edges] -> [n_nodes, irreps_out.dim]
    """

    def __init__(
        self,
        irreps_in: o3.Irreps | str,
        irreps_out: o3.Irreps | str,
        irreps_sh: o3.Irreps | str,
        num_radial: int,
        radial_hidden: Sequence[int] = (64, 64),
        avg_num_neighbors: float = 1.0,
        norm: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.gate = GatedActivation(irreps_out)
        self.irreps_out = self.gate.irreps_out
        self.norm = EquivariantRMSNorm(self.irreps_in) if norm else None
        self.conv = TensorProductConv(
            self.irreps_in,
            irreps_sh,
            self.gate.irreps_in,
            num_radial,
            radial_hidden,
            avg_num_neighbors,
            backend,
        )
        self.self_interaction = o3.Linear(self.irreps_in, self.gate.irreps_in)
        self.residual = self.irreps_in == self.irreps_out

    def forward(
        self,
        node_feats: torch.Tensor,
        edge_sh: torch.Tensor,
        edge_radial: torch.Tensor,
        edge_index: torch.Tensor,
    ) -> torch.Tensor:
        h = self.norm(node_feats) if self.norm is not None else node_feats
        pre = self.conv(h, edge_sh, edge_radial, edge_index) + self.self_interaction(h)
        update = self.gate(pre)  # [n_nodes, irreps_out.dim]
        return node_feats + update if self.residual else update

    def __repr__(self) -> str:
        extra = ", residual" if self.residual else ""
        extra += ", norm" if self.norm is not None else ""
        return (
            f"{type(self).__name__}({self.irreps_in} -> {self.irreps_out}{extra})\n"
            f"  {self.conv!r}"
        )
