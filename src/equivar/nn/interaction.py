"""One interaction block: convolution + self-interaction, gated, with a residual connection."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from e3nn import o3
from torch import nn

from equivar.nn.conv import TensorProductConv
from equivar.nn.gate import GatedActivation
from equivar.nn.linear import IrrepsLinear
from equivar.nn.norm import EquivariantRMSNorm
from equivar.nn.product import ProductBasis


class InteractionBlock(nn.Module):
    r"""``h -> h + Gate(Conv(h) + Linear(h))`` (the residual only where irreps match).

    With ``correlation`` > 1 the convolution's output (the neighbour density, ``irreps_out``)
    first goes through a :class:`~equivar.nn.ProductBasis` of that order and a linear layer:
    ``h -> h + Gate(Linear(Product(Conv(h), species)) + Linear(h))``, so one block sees
    ``correlation + 1``-body terms, not only pairs.

    Args:
        irreps_in: node features in.
        irreps_out: node features out (after the gate).
        irreps_sh: edge spherical harmonics.
        num_radial: invariant edge features.
        radial_hidden: radial MLP widths (default ``(64, 64)``).
        avg_num_neighbors: normalisation of the neighbour sum.
        norm: apply :class:`EquivariantRMSNorm` to the input first (default False).
        backend: convolution backend, see :mod:`equivar.kernels` (default ``"auto"``).
        correlation: order of the product basis (default 1: none). Needs ``irreps_out`` of one
            multiplicity and ``num_species``.
        num_species: rows of the product basis's species-wise weights.

    Shapes:
        node_feats: [n_nodes, irreps_in.dim], edge_sh: [n_edges, irreps_sh.dim],
        edge_radial: [n_edges, num_radial], edge_index: [2, n_edges],
        species_index: [n_nodes] (with ``correlation`` > 1) -> [n_nodes, irreps_out.dim]
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
        correlation: int = 1,
        num_species: int | None = None,
    ) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.gate = GatedActivation(irreps_out)
        self.irreps_out = self.gate.irreps_out
        self.norm = EquivariantRMSNorm(self.irreps_in) if norm else None
        if correlation > 1:
            if num_species is None:
                raise ValueError("correlation > 1 needs num_species (species-wise weights)")
            self.product = ProductBasis(self.irreps_out, correlation, num_species)
            self.product_linear = IrrepsLinear(self.irreps_out, self.gate.irreps_in)
            conv_out = self.irreps_out
        else:
            self.product = self.product_linear = None
            conv_out = self.gate.irreps_in
        self.conv = TensorProductConv(
            self.irreps_in,
            irreps_sh,
            conv_out,
            num_radial,
            radial_hidden,
            avg_num_neighbors,
            backend,
        )
        self.self_interaction = IrrepsLinear(self.irreps_in, self.gate.irreps_in)
        self.residual = self.irreps_in == self.irreps_out

    def forward(
        self,
        node_feats: torch.Tensor,
        edge_sh: torch.Tensor,
        edge_radial: torch.Tensor,
        edge_index: torch.Tensor,
        species_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        h = self.norm(node_feats) if self.norm is not None else node_feats
        density = self.conv(h, edge_sh, edge_radial, edge_index)
        if self.product is not None:
            if species_index is None:
                raise ValueError("this block has a product basis: pass species_index")
            density = self.product_linear(self.product(density, species_index))
        pre = density + self.self_interaction(h)
        update = self.gate(pre)  # [n_nodes, irreps_out.dim]
        return node_feats + update if self.residual else update

    def __repr__(self) -> str:
        extra = ", residual" if self.residual else ""
        extra += ", norm" if self.norm is not None else ""
        text = f"{type(self).__name__}({self.irreps_in} -> {self.irreps_out}{extra})"
        text += f"\n  {self.conv!r}"
        if self.product is not None:
            text += f"\n  {self.product!r}"
        return text
