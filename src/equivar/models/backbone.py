"""Embedding + interaction blocks: the equivariant trunk shared by the potential and property
models."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from e3nn import o3
from torch import nn

from equivar.nn.embedding import GraphInputEmbedding, SpeciesEmbedding
from equivar.nn.harmonics import EdgeSphericalHarmonics
from equivar.nn.interaction import InteractionBlock
from equivar.nn.radial import RadialEmbedding


def hidden_irreps(num_channels: int, lmax: int) -> o3.Irreps:
    """``C x 0e + C x 1o + C x 2e + ...`` up to ``lmax`` (natural parity)."""
    return o3.Irreps([(num_channels, (deg, (-1) ** deg)) for deg in range(lmax + 1)])


class EquivariantBackbone(nn.Module):
    """Species (+ charge/spin) embedding followed by ``num_layers`` interaction blocks.

    Args:
        species: supported atomic numbers.
        cutoff: radial cutoff (Angstrom).
        num_channels: channels per irrep.
        lmax: highest l of the node features.
        sh_lmax: highest l of the edge spherical harmonics.
        num_layers: interaction blocks.
        num_basis: radial basis functions (default 8).
        radial_basis: ``"bessel"`` (default) or ``"gaussian"``.
        radial_hidden: radial MLP hidden widths (default ``(64, 64)``).
        avg_num_neighbors: normalisation of neighbour sums (default 12).
        graph_inputs: embed total charge and spin (default True).
        norm: equivariant RMS norm before each block after the first.
        backend: convolution backend.
        correlation: order of each block's many-body product basis (default 1: none; 2-3 give
            MACE-like 3- and 4-body features per layer, see :class:`~equivar.nn.ProductBasis`).

    Shapes:
        z: [n_nodes], edge_vec: [n_edges, 3], edge_index: [2, n_edges], batch: [n_nodes],
        total_charge, spin: [n_graphs] -> node_feats [n_nodes, irreps_out.dim],
        species_index [n_nodes], edge_len [n_edges]
    """

    def __init__(
        self,
        *,
        species: Sequence[int],
        cutoff: float,
        num_channels: int,
        lmax: int,
        sh_lmax: int,
        num_layers: int,
        num_basis: int = 8,
        radial_basis: str = "bessel",
        radial_hidden: Sequence[int] = (64, 64),
        avg_num_neighbors: float = 12.0,
        graph_inputs: bool = True,
        norm: bool = False,
        backend: str = "auto",
        correlation: int = 1,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.cutoff = float(cutoff)
        self.species_embedding = SpeciesEmbedding(species, num_channels)
        self.species = self.species_embedding.species
        self.graph_embedding = GraphInputEmbedding(num_channels) if graph_inputs else None
        self.radial = RadialEmbedding(cutoff, num_basis, radial_basis)
        self.sh = EdgeSphericalHarmonics(sh_lmax)
        hidden = hidden_irreps(num_channels, lmax)
        blocks, irreps = [], self.species_embedding.irreps_out
        for i in range(num_layers):
            block = InteractionBlock(
                irreps,
                hidden,
                self.sh.irreps_out,
                num_basis,
                radial_hidden,
                avg_num_neighbors,
                norm=norm and i > 0,
                backend=backend,
                correlation=correlation,
                num_species=len(self.species),
            )
            blocks.append(block)
            irreps = block.irreps_out
        self.blocks = nn.ModuleList(blocks)
        self.irreps_out = irreps

    def forward(
        self,
        z: torch.Tensor,
        edge_vec: torch.Tensor,
        edge_index: torch.Tensor,
        batch: torch.Tensor,
        total_charge: torch.Tensor,
        spin: torch.Tensor,
        validate: bool = True,
        all_layers: bool = False,
    ) -> tuple[torch.Tensor | list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """``(node_feats, species_index, edge_len)``; with ``all_layers`` the first item is the
        list of every block's output (the last one is ``node_feats``)."""
        species_index = self.species_embedding.species_index(z, validate)  # [n_nodes]
        h = self.species_embedding.embed(species_index)  # [n_nodes, num_channels]
        if self.graph_embedding is not None:
            h = h + self.graph_embedding(total_charge, spin, batch)
        edge_len = torch.linalg.vector_norm(edge_vec, dim=-1)  # [n_edges]
        edge_radial = self.radial(edge_len)  # [n_edges, num_basis]
        edge_sh = self.sh(edge_vec)  # [n_edges, sh.dim]
        layers = []
        for block in self.blocks:
            h = block(h, edge_sh, edge_radial, edge_index, species_index)  # [n_nodes, irreps.dim]
            layers.append(h)
        return (layers if all_layers else h), species_index, edge_len
