"""``RepAction``: a finite group acting on tensors through a representation of its matrix
group, so :func:`~equivar.testing.assert_group_equivariant` checks EMLP layers on every element."""

from __future__ import annotations

import torch
from torch import Tensor

from equivar.symmetry.base_action import Action, check_elements
from equivar.symmetry.reps import Rep

__all__ = ["RepAction"]


class RepAction(Action):
    """A finite group acting on ``[batch, ..., rep.size]`` through ``rep.rho`` of its elements,
    for :func:`~equivar.testing.assert_group_equivariant` (every element checked).

    Args:
        rep: a representation of a :meth:`MatrixGroup.from_finite` group.

    Shapes:
        ``x``: ``[batch, ..., size]``.

    Example:
        >>> from equivar.symmetry import MatrixGroup, Vector, symmetric
        >>> V = Vector(MatrixGroup.from_finite(symmetric(3)))
        >>> RepAction(V).act(torch.tensor([[1.0, 2.0, 3.0]]), 3).tolist()  # 0->1, 1->2, 2->0
        [[3.0, 1.0, 2.0]]
    """

    kind = "rep"

    def __init__(self, rep: Rep) -> None:
        if rep.group.finite is None:
            raise TypeError(f"RepAction needs a representation of a group made by "
                            f"MatrixGroup.from_finite, got one of {rep.group.name}")
        super().__init__(rep.group.finite)
        self.rep = rep
        self._mats = rep.rho(rep.group.elements())  # [n_group, size, size]

    def check(self, x: Tensor) -> None:
        super().check(x)
        if x.shape[-1] != self.rep.size:
            raise ValueError(f"{self!r} acts on [batch, ..., {self.rep.size}], got "
                             f"{list(x.shape)}")

    def act_each(self, x: Tensor, elements: Tensor) -> Tensor:
        mats = self._mats.to(x)[check_elements(elements, x)]  # [batch, size, size]
        return torch.einsum("bij,b...j->b...i", mats, x)

    def __repr__(self) -> str:
        return f"RepAction({self.group.name}: {self.rep.expression()})"
