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

Modules, bottom up (each imports only those before it): ``groups``; ``point_groups``,
``permutation_groups``; ``wigner``; ``base_action`` (:class:`Action`, :class:`TrivialAction`);
``images``, ``regular``; ``actions`` (the point, set and irreps actions and :func:`as_action`);
``orbits`` (folding a group axis into the batch); ``frames``, ``layerwise``; ``lift``.

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
    networks", ICML 2016. O. Puny et al., "Frame averaging for invariant and equivariant network
    design", ICLR 2022.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from equivar._lazy import lazy_attributes

__all__ = [
    "Action",
    "ComposedAction",
    "Equivarify",
    "FiniteGroup",
    "FrameAveraging",
    "Frames",
    "ImageAction",
    "InducedAction",
    "IrrepsAction",
    "LayerwiseEquivarify",
    "PermutationAction",
    "PointAction",
    "RegularAction",
    "TrivialAction",
    "as_action",
    "cyclic",
    "dihedral",
    "direct_product",
    "disk_mask",
    "equivarify",
    "icosahedral",
    "image_rotation_error",
    "inversion",
    "octahedral",
    "pca_frames",
    "point_group",
    "rotate_image",
    "symmetric",
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
    from equivar.symmetry.frames import FrameAveraging, Frames, pca_frames
    from equivar.symmetry.groups import FiniteGroup, direct_product
    from equivar.symmetry.images import ImageAction, disk_mask, image_rotation_error, rotate_image
    from equivar.symmetry.layerwise import LayerwiseEquivarify
    from equivar.symmetry.lift import Equivarify, equivarify
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
    from equivar.symmetry.wigner import wigner_D


__getattr__, __dir__ = lazy_attributes(__name__, _WHERE, __all__)
