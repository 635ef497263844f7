"""Output heads: invariant readouts, equivariant vectors/tensors, energy derivatives."""

from equivar.heads.antisymmetric import SlaterDeterminantHead, signed_logsumexp
from equivar.heads.derivatives import attach_strain, energy_derivatives
from equivar.heads.envelopes import IsotropicEnvelope
from equivar.heads.jastrow import ElectronCuspJastrow
from equivar.heads.pooling import pool
from equivar.heads.scalar import AtomicShiftScale, ScalarHead
from equivar.heads.symmetric import SymmetricHead
from equivar.heads.tensor import DipoleHead, SymmetricTensorHead, VectorHead

__all__ = [
    "AtomicShiftScale",
    "DipoleHead",
    "ElectronCuspJastrow",
    "IsotropicEnvelope",
    "ScalarHead",
    "SlaterDeterminantHead",
    "SymmetricHead",
    "SymmetricTensorHead",
    "VectorHead",
    "attach_strain",
    "energy_derivatives",
    "pool",
    "signed_logsumexp",
]
