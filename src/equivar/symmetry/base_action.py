"""The base of every group action: :class:`Action`, the trivial action and their shared checks.

Every concrete action (points, sets, irreps in :mod:`equivar.symmetry.actions`, images in
:mod:`equivar.symmetry.images`, group axes in :mod:`equivar.symmetry.regular`) derives from
:class:`Action` here, so those modules import this one and never each other; the factory
:func:`~equivar.symmetry.as_action`, which names them all, sits above them in
:mod:`equivar.symmetry.actions`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from equivar.symmetry.groups import FiniteGroup

__all__ = ["Action", "TrivialAction", "check_elements", "same_group"]


def same_group(a: FiniteGroup, b: FiniteGroup) -> bool:
    """Whether ``a`` and ``b`` are the same group: the same object, or the same order and the
    same multiplication table (so actions of one are actions of the other).

    Example:
        >>> from equivar.symmetry import cyclic, dihedral
        >>> same_group(cyclic(4), cyclic(4)), same_group(cyclic(4), dihedral(2))
        (True, False)
    """
    if a is b:
        return True
    return len(a) == len(b) and torch.equal(a.multiplication_table(), b.multiplication_table())


def check_elements(elements: Tensor, x: Tensor) -> Tensor:
    """The group elements of :meth:`Action.act_each` as int64 on ``x``'s device, one per sample.

    Args:
        elements: ``[batch]`` element indices (any integer tensor or sequence).
        x: the batched input ``[batch, ...]`` they apply to.

    Returns:
        ``[batch]`` int64 on ``x.device``.

    Raises:
        ValueError: ``elements`` is not ``[batch]``.

    Shapes:
        ``elements``: ``[batch]``; ``x``: ``[batch, ...]``.
    """
    elements = torch.as_tensor(elements, dtype=torch.long, device=x.device)
    if elements.shape != (x.shape[0],):
        raise ValueError(f"act_each: elements must have shape [batch] = [{x.shape[0]}], got "
                         f"{list(elements.shape)}")
    return elements


class Action:
    """A left action of ``group`` on batched tensors ``[batch, ...]`` (base class).

    Subclasses implement :meth:`act_each` (and :meth:`check` for their shapes). Everything else
    (:meth:`act`, :meth:`orbit`) is built on it.

    Attributes:
        group: the acting :class:`FiniteGroup`.
        is_permutation: True when every element only permutes the entries of ``x`` (images,
            sets, the regular representation), so element-wise functions commute with it.
    """

    is_permutation: bool = False
    #: short name used in reprs and messages
    kind: str = "action"

    def __init__(self, group: FiniteGroup) -> None:
        if not isinstance(group, FiniteGroup):
            raise TypeError(f"{type(self).__name__} needs a FiniteGroup, got "
                            f"{type(group).__name__}")
        self.group = group

    def check(self, x: Tensor) -> None:
        """Raise ``TypeError``/``ValueError`` naming the problem when the group cannot act on
        ``x`` (wrong shape); return None otherwise."""
        if not isinstance(x, Tensor):
            raise TypeError(f"{self!r} acts on tensors, got {type(x).__name__}")
        if x.dim() < 1:
            raise ValueError(f"{self!r} acts on batched tensors [batch, ...], got a scalar")

    def accepts(self, x: Tensor) -> bool:
        """Whether :meth:`check` passes for ``x``."""
        try:
            self.check(x)
        except (TypeError, ValueError):
            return False
        return True

    def act_each(self, x: Tensor, elements: Tensor) -> Tensor:
        """Apply ``elements[b]`` to sample ``x[b]``, for every ``b`` at once.

        Args:
            x: ``[batch, ...]``.
            elements: ``[batch]`` int64 group elements.

        Returns:
            ``[batch, ...]``, same shape as ``x``.
        """
        raise NotImplementedError

    def act(self, x: Tensor, g: int) -> Tensor:
        """Apply the element ``g`` to every sample of ``x`` ``[batch, ...]``."""
        self.check(x)
        g = self.group.check_element(g)
        return self.act_each(x, torch.full((x.shape[0],), g, dtype=torch.long, device=x.device))

    def orbit(self, x: Tensor, inverse: bool = False) -> Tensor:
        """Every element applied to every sample, stacked on a group axis after the batch axis.

        Args:
            x: ``[batch, ...]``.
            inverse: apply ``g^-1`` instead of ``g`` at index ``g`` (the lift's inputs).

        Returns:
            ``[batch, n_group, ...]`` with ``out[:, g] = g.x`` (or ``g^-1.x``).
        """
        self.check(x)
        n, batch = len(self.group), x.shape[0]
        elements = torch.arange(n, device=x.device)
        if inverse:
            elements = self.group.inverses().to(x.device)
        tiled = x.unsqueeze(1).expand(batch, n, *x.shape[1:]).reshape(batch * n, *x.shape[1:])
        out = self.act_each(tiled, elements.repeat(batch))  # [batch * n_group, ...]
        return out.reshape(batch, n, *x.shape[1:])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.group.name})"


class TrivialAction(Action):
    """Every element acts as the identity (invariant outputs).

    Example:
        >>> import torch
        >>> from equivar.symmetry import TrivialAction, cyclic
        >>> TrivialAction(cyclic(4)).act(torch.ones(2, 3), 1).sum().item()
        6.0
    """

    is_permutation = True
    kind = "trivial"

    def act_each(self, x: Tensor, elements: Tensor) -> Tensor:
        return x
