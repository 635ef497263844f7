"""Finite groups, their actions, equivarification (global and layer-wise) and frame averaging:
symmetry for any torch module, independent of the potential stack.

* groups: :class:`FiniteGroup` (element 0 the identity, ``multiplication_table()``,
  ``inverses()``, ``matrices()`` / ``permutations()``); :func:`cyclic`, :func:`dihedral`,
  :func:`tetrahedral`, :func:`octahedral`, :func:`icosahedral`, :func:`inversion`,
  :func:`with_inversion` (full point groups such as O_h), :func:`point_group` (by Schoenflies
  name), :func:`direct_product`, :func:`symmetric`.
* actions: :class:`PointAction`, :class:`ImageAction` (the pixel groups C4 = ``cyclic(4)`` and
  D4 = ``dihedral(4)``: rot90 and flips, exact), :class:`PermutationAction`,
  :class:`IrrepsAction`, :class:`RegularAction`, :class:`InducedAction`,
  :class:`ComposedAction`, :class:`TrivialAction`, :func:`as_action`.
* lifts: :func:`equivarify` / :class:`Equivarify` (``F^(x)(g) = F(g^-1 x)``, one batched call),
  :class:`LayerwiseEquivarify` (hidden layers on ``Map(G, X_i)``; G-CNNs as a special case).
* approximate symmetry: :func:`rotate_image`, :func:`image_rotation_error`, :func:`disk_mask`.
* continuous groups: :class:`FrameAveraging`, :func:`pca_frames`, :class:`Frames`.
* :func:`wigner_D`: representation matrices of any irreps, exact to float64 rounding (what
  :class:`IrrepsAction` acts with; also :func:`equivar.testing.wigner_D`).
* matrix groups (EMLP): :class:`MatrixGroup` from discrete and Lie-algebra generators;
  :func:`special_orthogonal`, :func:`orthogonal` (O(n), Lorentz O(1,3)), :func:`symplectic`,
  :func:`cyclic_shifts`, :func:`permutation_matrices`, :func:`dihedral_permutations`,
  :func:`product_group`, :func:`matrix_group` (by name); representations :class:`Vector`,
  :class:`Scalar` and their sums, products and duals (:class:`Rep`, :func:`as_rep`);
  :func:`equivariant_basis`, :func:`equivariant_blocks`, :func:`invariant_basis` (the
  equivariant linear maps, solved from the generators); :class:`RepAction` (a finite group
  acting through a representation).

Modules, bottom up (each imports only those before it): ``groups``; ``point_groups``,
``permutation_groups``; ``wigner``; ``base_action`` (:class:`Action`, :class:`TrivialAction`);
``images``, ``regular``; ``actions`` (the point, set and irreps actions and :func:`as_action`);
``orbits`` (folding a group axis into the batch); ``frames``, ``layerwise``; ``lift``. Matrix
groups: ``matrix_groups``; ``classical_groups``, ``reps``; ``rep_action``, ``nullspace``;
``constraints``.

Checks: :func:`equivar.testing.assert_group_equivariant` tests every group element.
Names are resolved lazily, so ``import equivar.symmetry`` does no work.

Example:
    >>> import torch
    >>> from equivar.symmetry import cyclic, equivarify
    >>> cnn = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.Flatten(),
    ...                           torch.nn.Linear(8 * 6 * 6, 10))
    >>> model = equivarify(cnn, cyclic(4), invariant=True, action="image")
    >>> model(torch.randn(5, 1, 8, 8)).shape
    torch.Size([5, 10])

References:
    E. Bao, J. Lu, L. Song, N. Hart-Hodgson, W. Parson, Y. Zhou, "Equivariant neural networks and
    equivarification", arXiv:1906.07172. T. Cohen, M. Welling, "Group equivariant convolutional
    networks", ICML 2016. M. Finzi, M. Welling, A. G. Wilson, "A practical method for
    constructing equivariant multilayer perceptrons for arbitrary matrix groups", ICML 2021.
    O. Puny et al., "Frame averaging for invariant and equivariant network design", ICLR 2022.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from equivar._lazy import lazy_attributes

__all__ = [
    "Action",
    "ComposedAction",
    "EquivariantBlock",
    "Equivarify",
    "FiniteGroup",
    "FrameAveraging",
    "Frames",
    "ImageAction",
    "InducedAction",
    "IrrepsAction",
    "LayerwiseEquivarify",
    "MatrixGroup",
    "PermutationAction",
    "PointAction",
    "ProductRep",
    "RegularAction",
    "Rep",
    "RepAction",
    "Scalar",
    "SumRep",
    "TrivialAction",
    "Vector",
    "as_action",
    "as_rep",
    "cyclic",
    "cyclic_shifts",
    "dihedral",
    "dihedral_permutations",
    "direct_product",
    "disk_mask",
    "equivariant_basis",
    "equivariant_blocks",
    "equivarify",
    "icosahedral",
    "image_rotation_error",
    "invariant_basis",
    "inversion",
    "matrix_group",
    "octahedral",
    "orthogonal",
    "pca_frames",
    "permutation_matrices",
    "point_group",
    "product_group",
    "rotate_image",
    "special_orthogonal",
    "symmetric",
    "symplectic",
    "tetrahedral",
    "wigner_D",
    "with_inversion",
]

_WHERE = {
    "FiniteGroup": "groups",
    "direct_product": "groups",
    "symmetric": "permutation_groups",
    "cyclic": "point_groups",
    "dihedral": "point_groups",
    "icosahedral": "point_groups",
    "inversion": "point_groups",
    "octahedral": "point_groups",
    "point_group": "point_groups",
    "tetrahedral": "point_groups",
    "with_inversion": "point_groups",
    "Action": "base_action",
    "ComposedAction": "actions",
    "ImageAction": "images",
    "InducedAction": "regular",
    "IrrepsAction": "actions",
    "PermutationAction": "actions",
    "PointAction": "actions",
    "RegularAction": "regular",
    "TrivialAction": "base_action",
    "as_action": "actions",
    "Equivarify": "lift",
    "equivarify": "lift",
    "LayerwiseEquivarify": "layerwise",
    "disk_mask": "images",
    "image_rotation_error": "images",
    "rotate_image": "images",
    "FrameAveraging": "frames",
    "Frames": "frames",
    "pca_frames": "frames",
    "wigner_D": "wigner",
    "MatrixGroup": "matrix_groups",
    "product_group": "matrix_groups",
    "special_orthogonal": "classical_groups",
    "orthogonal": "classical_groups",
    "symplectic": "classical_groups",
    "cyclic_shifts": "classical_groups",
    "permutation_matrices": "classical_groups",
    "dihedral_permutations": "classical_groups",
    "matrix_group": "classical_groups",
    "Rep": "reps",
    "Vector": "reps",
    "Scalar": "reps",
    "SumRep": "reps",
    "ProductRep": "reps",
    "as_rep": "reps",
    "RepAction": "rep_action",
    "EquivariantBlock": "constraints",
    "equivariant_basis": "constraints",
    "equivariant_blocks": "constraints",
    "invariant_basis": "constraints",
}

if TYPE_CHECKING:  # pragma: no cover
    from equivar.symmetry.actions import (
        ComposedAction,
        IrrepsAction,
        PermutationAction,
        PointAction,
        as_action,
    )
    from equivar.symmetry.base_action import Action, TrivialAction
    from equivar.symmetry.classical_groups import (
        cyclic_shifts,
        dihedral_permutations,
        matrix_group,
        orthogonal,
        permutation_matrices,
        special_orthogonal,
        symplectic,
    )
    from equivar.symmetry.constraints import (
        EquivariantBlock,
        equivariant_basis,
        equivariant_blocks,
        invariant_basis,
    )
    from equivar.symmetry.frames import FrameAveraging, Frames, pca_frames
    from equivar.symmetry.groups import FiniteGroup, direct_product
    from equivar.symmetry.images import ImageAction, disk_mask, image_rotation_error, rotate_image
    from equivar.symmetry.layerwise import LayerwiseEquivarify
    from equivar.symmetry.lift import Equivarify, equivarify
    from equivar.symmetry.matrix_groups import MatrixGroup, product_group
    from equivar.symmetry.permutation_groups import symmetric
    from equivar.symmetry.point_groups import (
        cyclic,
        dihedral,
        icosahedral,
        inversion,
        octahedral,
        point_group,
        tetrahedral,
        with_inversion,
    )
    from equivar.symmetry.regular import InducedAction, RegularAction
    from equivar.symmetry.rep_action import RepAction
    from equivar.symmetry.reps import ProductRep, Rep, Scalar, SumRep, Vector, as_rep
    from equivar.symmetry.wigner import wigner_D


__getattr__, __dir__ = lazy_attributes(__name__, _WHERE, __all__)
