"""Group actions on tensors: points, images, sets, irreps features and the regular representation.

An :class:`Action` is a left action of a :class:`~equivar.symmetry.groups.FiniteGroup` on
batched tensors ``x [batch, ...]``: ``act(act(x, h), g) == act(x, g * h)`` for every pair of
elements. Every action has one batched primitive, ``act_each(x, elements)``, that applies a
different element to every sample in one vectorised call (a gather or a batched matmul); lifts
fold the group axis into the batch axis and use it, so no Python loop runs over the elements.
The base class and the trivial action live in :mod:`equivar.symmetry.base_action` (re-exported
here), image actions in :mod:`equivar.symmetry.images`, actions on a group axis (regular,
induced) in :mod:`equivar.symmetry.regular`; all are listed here, and :func:`as_action`, which
names them all, imports them from there (so none of them imports this module).

==========================  ====================================  ==============================
action                      acts on                               how
==========================  ====================================  ==============================
``TrivialAction``           anything                              does nothing (invariants)
``PointAction``             ``[batch, ..., 3]``                   ``x @ R^T`` (``det R`` too for
                                                                  axial vectors)
``ImageAction``             ``[batch, ..., H, W]``                rot90 / flips, exact on pixels
``PermutationAction``       ``[batch, ..., n, ...]`` (axis dim)   relabels the points of a set
``IrrepsAction``            ``[batch, ..., irreps.dim]``          ``x @ D(R)^T`` (Wigner D)
``RegularAction``           ``[batch, n_group, ...]``             ``(h.f)(g) = f(h^-1 g)``
``InducedAction(inner)``    ``[batch, n_group, ...]``             ``(h.f)(g) = h.f(h^-1 g)``
``ComposedAction(a, b)``    what both act on                      ``a`` after ``b`` (commuting)
==========================  ====================================  ==============================

:func:`as_action` turns the strings ``"points"``, ``"vectors"``, ``"axial"``, ``"image"``,
``"set"``, ``"regular"``, ``"trivial"`` / ``"invariant"`` and irreps strings (``"0e+1o"``) into
actions of a given group.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

from equivar.symmetry.base_action import Action, TrivialAction, check_elements, same_group
from equivar.symmetry.groups import FiniteGroup
from equivar.symmetry.images import ImageAction
from equivar.symmetry.point_groups import snap
from equivar.symmetry.regular import RegularAction

__all__ = [
    "Action",
    "ComposedAction",
    "IrrepsAction",
    "PermutationAction",
    "PointAction",
    "TrivialAction",
    "as_action",
]


class PointAction(Action):
    """Rotations/reflections of points or vectors: ``x -> x @ R^T`` on the last axis.

    Args:
        group: a group with ``matrices()``.
        axial: axial (pseudo-) vectors: ``x -> det(R) x @ R^T``. Default False.

    Shapes:
        ``x``: ``[batch, ..., 3]`` (e.g. ``[batch, n_nodes, 3]`` positions).

    Example:
        >>> import torch
        >>> from equivar.symmetry import PointAction, cyclic
        >>> PointAction(cyclic(4)).act(torch.tensor([[1.0, 0.0, 0.0]]), 1).tolist()
        [[0.0, 1.0, 0.0]]
    """

    kind = "points"

    def __init__(self, group: FiniteGroup, axial: bool = False) -> None:
        super().__init__(group)
        self._mats = group.matrices()  # [n_group, 3, 3]; TypeError if it has none
        if axial:
            self._mats = self._mats * torch.linalg.det(self._mats).round()[:, None, None]
        self.axial = axial
        self.kind = "axial vectors" if axial else "points"

    def check(self, x: Tensor) -> None:
        super().check(x)
        if x.dim() < 2 or x.shape[-1] != 3:
            raise ValueError(f"{self!r} acts on [batch, ..., 3] (points or vectors), got shape "
                             f"{list(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"{self!r} acts on floating-point tensors, got {x.dtype}")

    def act_each(self, x: Tensor, elements: Tensor) -> Tensor:
        elements = check_elements(elements, x)
        rot = self._mats.to(device=x.device, dtype=x.dtype)[elements]  # [batch, 3, 3]
        flat = x.reshape(x.shape[0], -1, 3)  # [batch, n, 3]
        return (flat @ rot.transpose(1, 2)).reshape(x.shape)

    def __repr__(self) -> str:
        return f"PointAction({self.group.name}{', axial' if self.axial else ''})"


class PermutationAction(Action):
    """Relabelling of the points of a set: the point at index ``i`` moves to ``perm[g, i]``.

    Args:
        group: a group with ``permutations()`` (``symmetric(n)``, products with it).
        dim: the axis of the points in ``x`` (default 1, right after the batch axis).

    Shapes:
        ``x``: ``[batch, n, ...]`` for ``dim=1``, with ``n = permutations().shape[1]``.

    Example:
        >>> import torch
        >>> from equivar.symmetry import PermutationAction, symmetric
        >>> s3 = symmetric(3)
        >>> g = 1  # the permutation [0, 2, 1]
        >>> PermutationAction(s3).act(torch.tensor([[10.0, 20.0, 30.0]]), g).tolist()
        [[10.0, 30.0, 20.0]]
    """

    is_permutation = True
    kind = "set"

    def __init__(self, group: FiniteGroup, dim: int = 1) -> None:
        super().__init__(group)
        perms = group.permutations()  # TypeError if none
        # source index of every target index: (g.x)[j] = x[perm_{g^-1}[j]]
        self._sources = perms[group.inverses()]
        if dim == 0:
            raise ValueError("PermutationAction: dim 0 is the batch axis; the points need "
                             "their own axis (default dim=1)")
        self.dim = dim

    def check(self, x: Tensor) -> None:
        super().check(x)
        n = self._sources.shape[1]
        dim = self.dim if self.dim >= 0 else x.dim() + self.dim
        if not 1 <= dim < x.dim() or x.shape[dim] != n:
            raise ValueError(f"{self!r} permutes {n} points along dim {self.dim}, got shape "
                             f"{list(x.shape)}")

    def act_each(self, x: Tensor, elements: Tensor) -> Tensor:
        elements = check_elements(elements, x)
        dim = self.dim if self.dim >= 0 else x.dim() + self.dim
        src = self._sources.to(x.device)[elements]  # [batch, n]
        moved = x.movedim(dim, 1)  # [batch, n, ...]
        index = src.view(*src.shape, *([1] * (moved.dim() - 2))).expand_as(moved)
        return torch.gather(moved, 1, index).movedim(1, dim)

    def __repr__(self) -> str:
        return f"PermutationAction({self.group.name}, dim={self.dim})"


class IrrepsAction(Action):
    """O(3) irreps features: ``x -> x @ D(R)^T`` with ``D`` the block-diagonal Wigner matrix of
    ``irreps`` (e3nn conventions, parity included), exact to float64 rounding.

    The matrices are computed once per element on first use with
    :func:`equivar.symmetry.wigner.wigner_D`.

    Args:
        group: a group with ``matrices()``.
        irreps: e3nn irreps, e.g. ``"8x0e+4x1o+2x2e"``.

    Shapes:
        ``x``: ``[batch, ..., irreps.dim]``.

    Example:
        >>> import torch
        >>> from equivar.symmetry import IrrepsAction, octahedral
        >>> act = IrrepsAction(octahedral(), "1x0e+1x1o")
        >>> act.act(torch.tensor([[2.0, 1.0, 0.0, 0.0]], dtype=torch.float64), 0).tolist()
        [[2.0, 1.0, 0.0, 0.0]]
    """

    kind = "irreps"

    def __init__(self, group: FiniteGroup, irreps) -> None:
        super().__init__(group)
        from e3nn import o3

        self._mats = group.matrices()
        self.irreps = o3.Irreps(irreps)
        self._D: Tensor | None = None

    def matrices(self) -> Tensor:
        """``[n_group, irreps.dim, irreps.dim]`` float64 Wigner matrices of the elements."""
        if self._D is None:
            from equivar.symmetry.wigner import wigner_D  # imports e3nn: only when first needed

            # least squares leaves ~1e-16 noise; snap exact entries (0, +-1/2, +-1) so that the
            # identity acts exactly and signed permutations stay exact
            self._D = snap(torch.stack([wigner_D(self.irreps, m) for m in self._mats]))
        return self._D

    def check(self, x: Tensor) -> None:
        super().check(x)
        if x.dim() < 2 or x.shape[-1] != self.irreps.dim:
            raise ValueError(f"{self!r} acts on [batch, ..., {self.irreps.dim}], got shape "
                             f"{list(x.shape)}")

    def act_each(self, x: Tensor, elements: Tensor) -> Tensor:
        elements = check_elements(elements, x)
        d = self.matrices().to(device=x.device, dtype=x.dtype)[elements]  # [batch, dim, dim]
        flat = x.reshape(x.shape[0], -1, self.irreps.dim)
        return (flat @ d.transpose(1, 2)).reshape(x.shape)

    def __repr__(self) -> str:
        return f"IrrepsAction({self.group.name}, {self.irreps})"


class ComposedAction(Action):
    """Several actions of one group applied together (``a(b(x))``); they must commute, which
    holds when they touch different axes (e.g. relabel the points and rotate their coordinates).

    Args:
        *actions: actions of the same group.

    Example:
        >>> from equivar.symmetry import (ComposedAction, PermutationAction, PointAction,
        ...                               direct_product, octahedral, symmetric)
        >>> g = direct_product(symmetric(3), octahedral())
        >>> ComposedAction(PermutationAction(g), PointAction(g))
        ComposedAction(PermutationAction(S3 x O, dim=1), PointAction(S3 x O))
    """

    kind = "composed"

    def __init__(self, *actions: Action) -> None:
        if not actions or not all(isinstance(a, Action) for a in actions):
            raise TypeError("ComposedAction needs one or more Action instances")
        super().__init__(actions[0].group)
        for a in actions[1:]:
            if not same_group(a.group, self.group):
                raise ValueError(f"ComposedAction: {a!r} acts by another group than "
                                 f"{actions[0]!r}")
        self.actions = actions
        self.is_permutation = all(a.is_permutation for a in actions)

    def check(self, x: Tensor) -> None:
        for a in self.actions:
            a.check(x)

    def act_each(self, x: Tensor, elements: Tensor) -> Tensor:
        for a in reversed(self.actions):
            x = a.act_each(x, elements)
        return x

    def __repr__(self) -> str:
        return f"ComposedAction({', '.join(map(repr, self.actions))})"


_IRREPS = re.compile(r"^\s*(\d+\s*x\s*)?\d+[eoy]")
_NAMES = ("points", "vectors", "axial", "image", "set", "regular", "trivial", "invariant")


def as_action(spec, group: FiniteGroup) -> Action:
    """Resolve an action given as an :class:`Action` or a name, for ``group``.

    Args:
        spec: an :class:`Action` of ``group``; ``None`` for the group's natural action on point
            clouds (``x [batch, n, 3]``: matrices rotate, permutations relabel, both for a
            product); or one of ``"points"``/``"vectors"`` (``x @ R^T``), ``"axial"``,
            ``"image"``, ``"set"`` (permute axis 1), ``"regular"``, ``"trivial"``/``"invariant"``,
            or an irreps string such as ``"2x0e+1x1o"``.
        group: the acting group.

    Returns:
        The :class:`Action`.

    Raises:
        TypeError: ``spec`` is of an unknown type, or the group lacks what the action needs
            (e.g. ``"image"`` for a permutation group).
        ValueError: an unknown name, or an action of another group.

    Example:
        >>> from equivar.symmetry import as_action, octahedral
        >>> as_action("points", octahedral())
        PointAction(O)
    """
    if isinstance(spec, Action):
        if not same_group(spec.group, group):
            raise ValueError(f"{spec!r} is an action of {spec.group.name}, not of {group.name}")
        return spec
    if spec is None:
        parts: list[Action] = []
        if group.has_permutations:
            parts.append(PermutationAction(group))
        if group.has_matrices:
            parts.append(PointAction(group))
        if not parts:
            raise TypeError(f"group {group.name!r} has neither matrices nor permutations; say how "
                            f"it acts with an Action (e.g. 'regular' on a group axis)")
        return parts[0] if len(parts) == 1 else ComposedAction(*parts)
    if isinstance(spec, str):
        name = spec.strip().lower()
        if name in ("points", "vectors"):
            return PointAction(group)
        if name == "axial":
            return PointAction(group, axial=True)
        if name == "image":
            return ImageAction(group)
        if name == "set":
            return PermutationAction(group)
        if name == "regular":
            return RegularAction(group)
        if name in ("trivial", "invariant"):
            return TrivialAction(group)
        if _IRREPS.match(spec):
            return IrrepsAction(group, spec)
        raise ValueError(f"unknown action {spec!r}; use an Action or one of {', '.join(_NAMES)}, "
                         f"or irreps such as '0e+1o'")
    if type(spec).__name__ == "Irreps":
        return IrrepsAction(group, spec)
    raise TypeError(f"an action is an Action, a name or irreps, got {type(spec).__name__}")
