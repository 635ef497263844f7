"""Equivariant building blocks on explicit tensors (e3nn irreps everywhere)."""

from equivar.nn.attention import SE3TransformerBlock
from equivar.nn.conv import TensorProductConv, channelwise_instructions
from equivar.nn.egnn import EGNNLayer
from equivar.nn.embedding import GraphInputEmbedding, SpeciesEmbedding, resolve_species
from equivar.nn.emlp import EMLPBlock, EquivariantBilinear, EquivariantLinear, GatedNonlinearity
from equivar.nn.gate import GatedActivation
from equivar.nn.geometry import edge_vectors
from equivar.nn.harmonics import EdgeSphericalHarmonics
from equivar.nn.interaction import InteractionBlock
from equivar.nn.linear import IrrepsLinear
from equivar.nn.norm import EquivariantRMSNorm
from equivar.nn.product import ProductBasis
from equivar.nn.radial import (
    BesselBasis,
    GaussianBasis,
    PolynomialCutoff,
    RadialEmbedding,
    RadialMLP,
)
from equivar.nn.repulsion import ZBLRepulsion
from equivar.nn.scatter import scatter_mean, scatter_sum

__all__ = [
    "BesselBasis",
    "EGNNLayer",
    "EMLPBlock",
    "EquivariantBilinear",
    "EquivariantLinear",
    "GatedNonlinearity",
    "EdgeSphericalHarmonics",
    "EquivariantRMSNorm",
    "GatedActivation",
    "GaussianBasis",
    "GraphInputEmbedding",
    "InteractionBlock",
    "IrrepsLinear",
    "PolynomialCutoff",
    "ProductBasis",
    "RadialEmbedding",
    "RadialMLP",
    "SE3TransformerBlock",
    "SpeciesEmbedding",
    "TensorProductConv",
    "ZBLRepulsion",
    "channelwise_instructions",
    "edge_vectors",
    "resolve_species",
    "scatter_mean",
    "scatter_sum",
]
