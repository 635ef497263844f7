"""Actions on a group axis: the regular representation and the induced action.

The lift ``F^(x)(g) = F(g^-1 x)`` stores a function ``G -> Z`` on an axis of length ``n_group``
right after the batch axis; ``G`` acts on such tensors by left translation of that axis, and,
when ``Z`` carries an action of its own, by that action on every slice as well.
"""

from __future__ import annotations

import torch
from torch import Tensor

from equivar.symmetry.base_action import Action, TrivialAction, check_elements
from equivar.symmetry.groups import FiniteGroup

__all__ = ["InducedAction", "RegularAction"]


class InducedAction(Action):
    """The action induced on functions ``G -> Z`` stored on a group axis:
    ``(h.f)(g) = h.f(h^-1 g)``, with ``inner`` the action on ``Z``.

    With ``inner`` trivial this is the regular representation (left translation of the group
    axis, :class:`RegularAction`); with ``inner`` an image action it is how the feature maps of
    a G-CNN transform (rotate every map and permute the orientation axis).

    Args:
        inner: the action on one slice ``f(g)`` (its batch axis is the folded
            ``batch * n_group``).

    Shapes:
        ``x``: ``[batch, n_group, ...]``.

    References:
        T. Cohen, M. Welling, "Group equivariant convolutional networks", ICML 2016 (the
        transformation law of G-CNN feature maps).
    """

    kind = "induced"

    def __init__(self, inner: Action) -> None:
        if not isinstance(inner, Action):
            raise TypeError(f"InducedAction needs an Action, got {type(inner).__name__}")
        super().__init__(inner.group)
        self.inner = inner
        self.is_permutation = inner.is_permutation
        # the source slice of target slice k under h: h^-1 k
        self._sources = self.group.multiplication_table()[self.group.inverses()]

    def check(self, x: Tensor) -> None:
        super().check(x)
        n = len(self.group)
        if x.dim() < 2 or x.shape[1] != n:
            raise ValueError(f"{self!r} acts on [batch, n_group={n}, ...] (a group axis after "
                             f"the batch axis), got shape {list(x.shape)}")
        if not isinstance(self.inner, TrivialAction):
            self.inner.check(x[:, 0])

    def act_each(self, x: Tensor, elements: Tensor) -> Tensor:
        elements = check_elements(elements, x)
        batch, n = x.shape[:2]
        src = self._sources.to(x.device)[elements]  # [batch, n_group]
        index = src.view(batch, n, *([1] * (x.dim() - 2))).expand_as(x)
        moved = torch.gather(x, 1, index)  # f(h^-1 g)
        if isinstance(self.inner, TrivialAction):
            return moved
        folded = moved.reshape(batch * n, *x.shape[2:])
        out = self.inner.act_each(folded, elements.repeat_interleave(n))
        return out.reshape(x.shape)

    def __repr__(self) -> str:
        return f"InducedAction({self.inner!r})"


class RegularAction(InducedAction):
    """The regular representation on a group axis: ``(h.f)(g) = f(h^-1 g)`` (left translation).

    This is how ``G`` acts on the output of the lift ``F^(x)(g) = F(g^-1 x)``.

    Shapes:
        ``x``: ``[batch, n_group, ...]``.

    Example:
        >>> import torch
        >>> from equivar.symmetry import RegularAction, cyclic
        >>> RegularAction(cyclic(4)).act(torch.tensor([[0.0, 1.0, 2.0, 3.0]]), 1).tolist()
        [[3.0, 0.0, 1.0, 2.0]]
    """

    kind = "regular"

    def __init__(self, group: FiniteGroup) -> None:
        super().__init__(TrivialAction(group))

    def __repr__(self) -> str:
        return f"RegularAction({self.group.name})"
