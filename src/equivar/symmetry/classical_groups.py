"""The classical matrix groups and the small finite ones on ``R^n``, and :func:`matrix_group`,
which builds any of them (and their products) by name.

Lorentz convention: ``orthogonal(1, 3)`` preserves the metric ``diag(+1, -1, -1, -1)`` on
``(t, x, y, z)``; ``special_orthogonal(1, 3)`` has determinant 1 (it contains ``PT = -I`` up to
a rotation) and ``special_orthogonal(1, 3, identity_component=True)`` is the restricted group
SO+(1,3). Every name round-trips: ``matrix_group(g.name)`` rebuilds ``g``.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

from equivar.symmetry.matrix_groups import MatrixGroup, product_group

__all__ = [
    "cyclic_shifts",
    "dihedral_permutations",
    "matrix_group",
    "orthogonal",
    "permutation_matrices",
    "special_orthogonal",
    "symplectic",
]

_F64 = torch.float64


def _unit(d: int, i: int, j: int) -> Tensor:
    e = torch.zeros(d, d, dtype=_F64)
    e[i, j] = 1.0
    return e


def _metric_algebra(p: int, q: int) -> list[Tensor]:
    """Basis of so(p, q) for the metric ``diag(+1 x p, -1 x q)``: ``E_ij - E_ji`` within a
    block, ``E_ij + E_ji`` (boosts) across the blocks."""
    d = p + q
    sign = [[-1.0 if (i < p) == (j < p) else 1.0 for j in range(d)] for i in range(d)]
    return [_unit(d, i, j) + sign[i][j] * _unit(d, j, i) for i in range(d)
            for j in range(i + 1, d)]  # fmt: skip


def _check_dims(what: str, *dims: int) -> None:
    for n in dims:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"{what} needs integer dimensions >= 0, got {dims}")
    if sum(dims) < 1:
        raise ValueError(f"{what} needs a total dimension >= 1, got {dims}")


def _sign(d: int, *flip: int) -> Tensor:
    diag = torch.ones(d, dtype=_F64)
    diag[list(flip)] = -1.0
    return torch.diag(diag)


def special_orthogonal(n: int, q: int = 0, *, identity_component: bool = False) -> MatrixGroup:
    """SO(n), or SO(p, q) with ``p = n`` (determinant 1, preserving ``diag(+1 x p, -1 x q)``).

    Args:
        n: ``p``, the number of ``+1`` entries of the metric (the dimension when ``q = 0``).
        q: the number of ``-1`` entries (default 0: the rotation group).
        identity_component: for ``p, q >= 1``, only the connected part (SO+(p, q), e.g. the
            restricted Lorentz group SO+(1,3)); default False adds ``diag(-1, 1.., -1, 1..)``
            (``PT`` for Lorentz).

    Returns:
        A :class:`MatrixGroup` named ``"SO(n)"``, ``"SO(p,q)"`` or ``"SO+(p,q)"``.

    Example:
        >>> special_orthogonal(1, 3, identity_component=True).name
        'SO+(1,3)'
    """
    _check_dims("special_orthogonal", n, q)
    d = n + q
    name = f"SO({n})" if q == 0 else f"SO{'+' if identity_component else ''}({n},{q})"
    discrete = [_sign(d, 0, n)] if n and q and not identity_component else None
    return MatrixGroup(discrete, _metric_algebra(n, q), d=d, name=name)


def orthogonal(n: int, q: int = 0) -> MatrixGroup:
    """O(n), or O(p, q) with ``p = n``: every matrix preserving ``diag(+1 x p, -1 x q)``.

    ``orthogonal(1, 3)`` is the Lorentz group O(1,3) with parity ``P = diag(1, -1, -1, -1)``
    and time reversal ``T = diag(-1, 1, 1, 1)`` as discrete generators.

    Args:
        n: ``p`` (the dimension when ``q = 0``).
        q: default 0.

    Returns:
        A :class:`MatrixGroup` named ``"O(n)"`` or ``"O(p,q)"``.

    Example:
        >>> orthogonal(3).discrete_generators[0].diagonal().tolist()
        [-1.0, 1.0, 1.0]
    """
    _check_dims("orthogonal", n, q)
    d = n + q
    if q == 0:
        discrete = [_sign(d, 0)]
    elif n == 0:
        discrete = [_sign(d, 0)]
    else:
        discrete = [_sign(d, *range(n, d)), _sign(d, *range(n))]  # P and T
    name = f"O({n})" if q == 0 else f"O({n},{q})"
    return MatrixGroup(discrete, _metric_algebra(n, q), d=d, name=name)


def symplectic(n: int) -> MatrixGroup:
    """Sp(2n): the ``2n x 2n`` matrices with ``M^T J M = J``, ``J = [[0, I], [-I, 0]]``.

    Args:
        n: half the dimension, ``>= 1``.

    Returns:
        A :class:`MatrixGroup` named ``"Sp(2n)"`` (connected: no discrete generators), its
        algebra ``J S`` for ``S`` running over a basis of the symmetric matrices.

    Example:
        >>> symplectic(2).name, symplectic(2).d
        ('Sp(4)', 4)
    """
    _check_dims("symplectic", n)
    d = 2 * n
    j = torch.zeros(d, d, dtype=_F64)
    j[:n, n:] = torch.eye(n, dtype=_F64)
    j[n:, :n] = -torch.eye(n, dtype=_F64)
    lie = [j @ (_unit(d, a, b) + _unit(d, b, a)) for a in range(d) for b in range(a, d)]
    return MatrixGroup(None, lie, d=d, name=f"Sp({d})")


def _cycle(n: int) -> Tensor:
    return torch.eye(n, dtype=_F64).roll(1, dims=0)  # e_i -> e_{i+1 mod n}


def cyclic_shifts(n: int) -> MatrixGroup:
    """Z_n acting on ``R^n`` by cyclic shifts ``e_i -> e_{i+1 mod n}`` (its equivariant maps
    ``R^n -> R^n`` are the circulant matrices).

    Example:
        >>> cyclic_shifts(4).elements().shape
        torch.Size([4, 4, 4])
    """
    _check_dims("cyclic_shifts", n)
    return MatrixGroup([_cycle(n)] if n > 1 else None, None, d=n, name=f"Z({n})")


def permutation_matrices(n: int) -> MatrixGroup:
    """S_n acting on ``R^n`` by permutation matrices, generated by the swap of ``e_0, e_1``
    and the n-cycle.

    Example:
        >>> len(permutation_matrices(4).elements())
        24
    """
    _check_dims("permutation_matrices", n)
    swap = torch.eye(n, dtype=_F64)[[1, 0, *range(2, n)]] if n > 1 else None
    gens = [swap] + ([_cycle(n)] if n > 2 else []) if n > 1 else None
    return MatrixGroup(gens, None, d=n, name=f"S({n})")


def dihedral_permutations(n: int) -> MatrixGroup:
    """D_n (order ``2n``) acting on ``R^n``, the vertices of a regular n-gon: the n-cycle and
    the reflection ``e_i -> e_{-i mod n}``.

    Example:
        >>> len(dihedral_permutations(5).elements())
        10
    """
    _check_dims("dihedral_permutations", n)
    flip = torch.eye(n, dtype=_F64)[[(-i) % n for i in range(n)]]
    return MatrixGroup([_cycle(n), flip] if n > 1 else None, None, d=n, name=f"D({n})")


_PATTERNS = [
    (r"SO\((\d+)\)", lambda a: special_orthogonal(int(a[0]))),
    (r"SO\((\d+),(\d+)\)", lambda a: special_orthogonal(int(a[0]), int(a[1]))),
    (r"SO\+\((\d+),(\d+)\)",
     lambda a: special_orthogonal(int(a[0]), int(a[1]), identity_component=True)),
    (r"O\((\d+)\)", lambda a: orthogonal(int(a[0]))),
    (r"O\((\d+),(\d+)\)", lambda a: orthogonal(int(a[0]), int(a[1]))),
    (r"Sp\((\d+)\)", lambda a: symplectic(int(a[0]) // 2) if int(a[0]) % 2 == 0 else None),
    (r"Z\((\d+)\)", lambda a: cyclic_shifts(int(a[0]))),
    (r"S\((\d+)\)", lambda a: permutation_matrices(int(a[0]))),
    (r"D\((\d+)\)", lambda a: dihedral_permutations(int(a[0]))),
]


def matrix_group(spec) -> MatrixGroup:
    """A matrix group by name, or converted: the inverse of ``MatrixGroup.name``.

    Args:
        spec: a :class:`MatrixGroup` (returned as is), a
            :class:`~equivar.symmetry.FiniteGroup` (:meth:`MatrixGroup.from_finite`), or a name:
            ``"SO(n)"``, ``"O(n)"``, ``"SO(p,q)"``, ``"SO+(p,q)"``, ``"O(p,q)"``, ``"Sp(2n)"``,
            ``"Z(n)"``, ``"S(n)"``, ``"D(n)"``, a point group's Schoenflies name (``"Oh"``,
            ``"D4"``: its O(3) matrices), and products of them joined by ``"x"``
            (``"S(4)xSO(3)"``); spaces are ignored.

    Returns:
        The :class:`MatrixGroup`.

    Raises:
        ValueError: an unknown name (the message lists the forms).
        TypeError: ``spec`` is of another type.

    Example:
        >>> matrix_group("O(1,3)").d
        4
    """
    if isinstance(spec, MatrixGroup):
        return spec
    if type(spec).__name__ == "FiniteGroup":
        return MatrixGroup.from_finite(spec)
    if not isinstance(spec, str):
        raise TypeError(f"a matrix group is a MatrixGroup, FiniteGroup or name, got "
                        f"{type(spec).__name__}")
    groups = [_one_group(part, spec) for part in re.sub(r"\s+", "", spec).split("x")]
    return groups[0] if len(groups) == 1 else product_group(*groups)


def _one_group(part: str, spec: str) -> MatrixGroup:
    for pattern, make in _PATTERNS:
        m = re.fullmatch(pattern, part)
        if m and (g := make(m.groups())) is not None:
            return g
    from equivar.symmetry.point_groups import point_group

    try:  # a point group by its Schoenflies name, as MatrixGroup.from_finite names it
        return MatrixGroup.from_finite(point_group(part))
    except ValueError:
        raise ValueError(f"unknown matrix group {part!r} in {spec!r}; use SO(n), O(n), SO(p,q), "
                         f"SO+(p,q), O(p,q), Sp(2n), Z(n), S(n), D(n), a point group (Oh, D4), "
                         f"or products joined by 'x' such as 'S(4)xSO(3)'") from None
