"""Output heads: invariant readouts, equivariant vectors/tensors, energy derivatives."""

from equivar.heads.derivatives import attach_strain, energy_derivatives
from equivar.heads.pooling import pool
from equivar.heads.scalar import AtomicShiftScale, ScalarHead
from equivar.heads.tensor import DipoleHead, SymmetricTensorHead, VectorHead

__all__ = [
    "AtomicShiftScale",
    "DipoleHead",
    "ScalarHead",
    "SymmetricTensorHead",
    "VectorHead",
    "attach_strain",
    "energy_derivatives",
    "pool",
]
