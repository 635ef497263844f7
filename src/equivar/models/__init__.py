"""Models assembled from blocks and heads: ``build(name, **options)`` with presets."""

from equivar.models.backbone import EquivariantBackbone, hidden_irreps
from equivar.models.build import BUILDERS, DEFAULT_SPECIES, PRESETS, build
from equivar.models.emlp import EMLP
from equivar.models.potential import PotentialModel
from equivar.models.property import TARGET_KINDS, PropertyModel

__all__ = [
    "BUILDERS",
    "DEFAULT_SPECIES",
    "EMLP",
    "PRESETS",
    "TARGET_KINDS",
    "EquivariantBackbone",
    "PotentialModel",
    "PropertyModel",
    "build",
    "hidden_irreps",
]
