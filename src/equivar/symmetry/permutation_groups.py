"""Permutation groups acting on the points of a set: the symmetric group S_n."""

from __future__ import annotations

import itertools

import torch

from equivar.symmetry.groups import FiniteGroup

__all__ = ["symmetric"]

#: symmetric(n) builds an n! x n! table; beyond this the table no longer fits comfortably.
MAX_SYMMETRIC_DEGREE = 6


def symmetric(n: int) -> FiniteGroup:
    """The symmetric group S_n of all ``n!`` permutations of ``n`` points.

    Element 0 is the identity; ``permutations()[a]`` sends point ``i`` to ``perm[a, i]``, and
    on a point set ``x [batch, n, ...]`` the element acts as ``(a.x)[:, perm[a, i]] = x[:, i]``.

    Args:
        n: number of points, ``1 <= n <= 6`` (the table has ``(n!)^2`` entries).

    Returns:
        A :class:`FiniteGroup` named ``"S{n}"`` with ``permutations()``.

    Raises:
        ValueError: ``n`` is out of range.

    Shapes:
        ``permutations()``: ``[n_group, n]`` with ``n_group = n!``.

    Example:
        >>> len(symmetric(3)), symmetric(3).permutations()[0].tolist()
        (6, [0, 1, 2])
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_SYMMETRIC_DEGREE:
        raise ValueError(f"symmetric(n) needs an integer 1 <= n <= {MAX_SYMMETRIC_DEGREE} "
                         f"(n! elements), got {n!r}; for larger sets use a permutation-invariant "
                         f"architecture (sum pooling) instead of a lift")
    perms = torch.tensor(list(itertools.permutations(range(n))), dtype=torch.long)  # identity 1st
    index = {tuple(p): i for i, p in enumerate(perms.tolist())}
    composed = torch.gather(perms[:, None, :].expand(-1, len(perms), -1), 2,
                            perms[None, :, :].expand(len(perms), -1, -1))  # a[b[i]]
    table = torch.tensor([[index[tuple(row)] for row in block] for block in composed.tolist()])
    return FiniteGroup(table, f"S{n}", permutations=perms)
