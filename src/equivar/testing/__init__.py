"""Public symmetry assertions and helpers for testing equivar models (and your own).

* :func:`assert_equivariant`: outputs transform as their ``FieldSpec`` promises under rotations,
  improper rotations, translations, atom relabellings and edge reorderings; a check on the
  measurement :func:`equivariance_error` (``{output: {transform: Deviation}}``, never raising),
  which library code such as training's logged equivariance error calls instead.
* :func:`assert_conservative`: forces are ``-dE/dpos`` (finite differences, symmetric Hessian,
  zero work around a loop) and stress is ``dE/d(strain) / volume``.
* transforms: :func:`rotate`, :func:`translate`, :func:`permute_nodes`, :func:`shuffle_edges`,
  :func:`random_rotation`, :func:`random_permutation_within_graphs`, :func:`transform_output`.
* fixtures: :func:`random_molecule_batch`, :func:`random_crystal_batch`.
* :func:`wigner_D`: representation matrices of any irreps, exact to float64 rounding (e3nn's
  ``D_from_matrix`` is accurate to ~1e-7 only), for block-level equivariance tests (defined in
  :mod:`equivar.symmetry.wigner`, re-exported here).

Names are resolved lazily, so ``import equivar.testing`` does no work.

Example:
    >>> from equivar.testing import assert_equivariant, assert_conservative  # doctest: +SKIP
    >>> model.eval()  # doctest: +SKIP
    >>> assert_equivariant(model, batch)  # doctest: +SKIP
    >>> assert_conservative(model, batch.to(torch.float64))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from equivar._lazy import lazy_attributes

__all__ = [
    "Deviation",
    "SymmetryAssertionError",
    "assert_antisymmetric",
    "assert_conservative",
    "assert_equivariant",
    "assert_group_equivariant",
    "assert_symmetric",
    "equivariance_error",
    "permute_nodes",
    "random_crystal_batch",
    "random_edge_permutation_within_graphs",
    "random_molecule_batch",
    "random_permutation_within_graphs",
    "random_rotation",
    "rotate",
    "shuffle_edges",
    "transform_output",
    "translate",
    "wigner_D",
]

_WHERE = {
    "SymmetryAssertionError": "measurement",
    "Deviation": "equivariance",
    "assert_equivariant": "equivariance",
    "equivariance_error": "equivariance",
    "assert_conservative": "conservative",
    "permute_nodes": "transforms",
    "random_edge_permutation_within_graphs": "transforms",
    "random_permutation_within_graphs": "transforms",
    "random_rotation": "transforms",
    "rotate": "transforms",
    "shuffle_edges": "transforms",
    "transform_output": "transforms",
    "translate": "transforms",
    "random_crystal_batch": "fixtures",
    "random_molecule_batch": "fixtures",
    "wigner_D": "wigner",
    "assert_group_equivariant": "groups",
    "assert_antisymmetric": "antisymmetry",
    "assert_symmetric": "antisymmetry",
}

if TYPE_CHECKING:  # pragma: no cover
    from equivar.testing.antisymmetry import assert_antisymmetric, assert_symmetric
    from equivar.testing.conservative import assert_conservative
    from equivar.testing.equivariance import Deviation, assert_equivariant, equivariance_error
    from equivar.testing.fixtures import random_crystal_batch, random_molecule_batch
    from equivar.testing.groups import assert_group_equivariant
    from equivar.testing.measurement import SymmetryAssertionError
    from equivar.testing.transforms import (
        permute_nodes,
        random_edge_permutation_within_graphs,
        random_permutation_within_graphs,
        random_rotation,
        rotate,
        shuffle_edges,
        transform_output,
        translate,
    )
    from equivar.testing.wigner import wigner_D


__getattr__, __dir__ = lazy_attributes(__name__, _WHERE, __all__)
