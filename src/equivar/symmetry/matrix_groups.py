"""``MatrixGroup``: a group of ``d x d`` matrices given by its generators (EMLP's input).

A matrix group ``G`` in ``GL(d)`` is described by two finite sets, enough to write every
equivariance constraint (Finzi, Welling, Wilson 2021, section 4):

* discrete generators ``h_1 .. h_k`` (``[k, d, d]``): one per connected component beyond the
  identity's (a reflection for O(n)), or all generators of a finite group;
* Lie-algebra generators ``A_1 .. A_m`` (``[m, d, d]``): a basis of the algebra of the
  identity component (``exp(sum_j c_j A_j)`` for real ``c``).

Here: the class, :func:`product_group` (direct products, block diagonal) and
:meth:`MatrixGroup.from_finite` (any :class:`~equivar.symmetry.FiniteGroup` with matrices and/or
permutations). The classical groups (SO(n), O(n), Lorentz, Sp(2n)), Z_n, S_n, D_n on ``R^n`` and
:func:`~equivar.symmetry.matrix_group` (by name) are in
:mod:`equivar.symmetry.classical_groups`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["MatrixGroup", "product_group"]

_F64 = torch.float64


def _stack(mats, d: int | None, what: str, name: str) -> Tensor:
    """``[k, d, d]`` float64 from a tensor or a sequence of ``[d, d]`` matrices (may be empty)."""
    if mats is None or (isinstance(mats, Sequence) and len(mats) == 0):
        if d is None:
            raise ValueError(f"group {name!r}: give d when it has no {what}")
        return torch.zeros(0, d, d, dtype=_F64)
    out = (torch.stack([torch.as_tensor(m, dtype=_F64) for m in mats])
           if isinstance(mats, Sequence) else torch.as_tensor(mats, dtype=_F64).clone())
    if out.dim() != 3 or out.shape[1] != out.shape[2] or (d is not None and out.shape[1] != d):
        raise ValueError(f"group {name!r}: {what} must have shape [k, d, d]"
                         f"{f' with d = {d}' if d is not None else ''}, got {list(out.shape)}")
    if not torch.isfinite(out).all():
        raise ValueError(f"group {name!r}: {what} contain NaN or inf")
    return out


class MatrixGroup:
    """A matrix group from its discrete and Lie-algebra generators.

    Args:
        discrete: ``[k, d, d]`` invertible matrices (or a sequence of ``[d, d]``); default none.
        lie: ``[m, d, d]`` Lie-algebra basis matrices; default none (a finite group).
        d: the matrix size; needed only when both sets are empty (the trivial group).
        name: used in messages and by :func:`matrix_group` to rebuild the group from a config.
        factors: ``[(offset, size), ...]``: the diagonal blocks a product group acts on
            separately (default one block, the whole of ``R^d``); see :func:`product_group`.

    Raises:
        ValueError: wrong shapes, non-finite entries, or a singular discrete generator.

    Shapes:
        ``discrete_generators``: ``[k, d, d]``; ``lie_algebra``: ``[m, d, d]``;
        :meth:`sample`: ``[n, d, d]``.

    Example:
        >>> from equivar.symmetry import special_orthogonal
        >>> g = special_orthogonal(3)
        >>> g.d, g.lie_algebra.shape[0], g.discrete_generators.shape[0]
        (3, 3, 0)

    References:
        M. Finzi, M. Welling, A. G. Wilson, "A practical method for constructing equivariant
        multilayer perceptrons for arbitrary matrix groups", ICML 2021.
    """

    def __init__(self, discrete=None, lie=None, *, d: int | None = None, name: str = "G",
                 factors: Sequence[tuple[int, int]] | None = None) -> None:  # fmt: skip
        self.name = str(name)
        if d is None:
            for mats in (discrete, lie):
                if mats is not None and len(mats):
                    d = int(torch.as_tensor(mats[0]).shape[-1])
                    break
        self._discrete = _stack(discrete, d, "discrete generators", self.name)
        self._lie = _stack(lie, d, "Lie-algebra generators", self.name)
        self.d = int(self._discrete.shape[1])
        if len(self._discrete) and (torch.linalg.det(self._discrete).abs() < 1e-12).any():
            raise ValueError(f"group {self.name!r}: a discrete generator is singular")
        self.factors = tuple((int(o), int(s)) for o, s in (factors or [(0, self.d)]))
        if sum(s for _, s in self.factors) != self.d:
            raise ValueError(f"group {self.name!r}: the factor blocks {self.factors} do not "
                             f"cover d = {self.d}")
        #: the FiniteGroup this was made from (:meth:`from_finite`), else None
        self.finite = None
        self._elements: Tensor | None = None
        self._key: str | None = None
        self._orthogonal: dict[int | None, bool] = {}

    # --- the generators ---------------------------------------------------------------------------
    @property
    def discrete_generators(self) -> Tensor:
        """``[k, d, d]`` float64 (a copy)."""
        return self._discrete.clone()

    @property
    def lie_algebra(self) -> Tensor:
        """``[m, d, d]`` float64 (a copy)."""
        return self._lie.clone()

    @property
    def is_finite(self) -> bool:
        """Whether the group has no Lie algebra (so it is generated by its discrete generators;
        finite when those have finite order)."""
        return len(self._lie) == 0

    def factor_is_orthogonal(self, factor: int | None = None) -> bool:
        """Whether every generator acts orthogonally on block ``factor`` (all of ``R^d`` for
        None): discrete ``h h^T = I``, algebra ``A^T = -A``. Then ``rho^{-T} = rho`` and a dual
        representation equals the representation (the solver uses it to share work)."""
        if factor in self._orthogonal:
            return self._orthogonal[factor]
        o, s = (0, self.d) if factor is None else self.factors[factor]
        h = self._discrete[:, o:o + s, o:o + s]
        a = self._lie[:, o:o + s, o:o + s]
        eye = torch.eye(s, dtype=_F64)
        out = bool(((h @ h.mT - eye).abs().amax(dim=(1, 2)) < 1e-12).all()
                   and ((a + a.mT).abs().amax(dim=(1, 2)) < 1e-12).all())
        self._orthogonal[factor] = out
        return out

    @property
    def is_orthogonal(self) -> bool:
        """:meth:`factor_is_orthogonal` of the whole space."""
        return self.factor_is_orthogonal(None)

    def key(self) -> str:
        """A hex digest of the generators (rounded to 1e-12) and blocks: equal for equal
        groups, whatever their names; keys the solver's caches."""
        if self._key is None:
            digest = hashlib.sha256(f"{self.d}|{self.factors}".encode())
            for mats in (self._discrete, self._lie):
                rounded = torch.round(mats * 1e12) / 1e12 + 0.0  # + 0.0: no negative zeros
                digest.update(str(list(mats.shape)).encode() + rounded.numpy().tobytes())
            self._key = digest.hexdigest()
        return self._key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MatrixGroup) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    def __mul__(self, other: MatrixGroup) -> MatrixGroup:
        """``G * H``: :func:`product_group`."""
        if not isinstance(other, MatrixGroup):
            return NotImplemented
        return product_group(self, other)

    def __repr__(self) -> str:
        return (f"MatrixGroup({self.name!r}, d={self.d}, discrete={len(self._discrete)}, "
                f"lie={len(self._lie)})")

    # --- elements ---------------------------------------------------------------------------------
    def sample(self, n: int = 1, generator: torch.Generator | None = None, *,
               scale: float = 1.0, word_length: int | None = None) -> Tensor:  # fmt: skip
        """Random group elements, for tests: ``exp(sum_j c_j A_j) @ h_{i_1} ... h_{i_L}``.

        Args:
            n: how many.
            generator: torch random generator (default: the global one).
            scale: the algebra coefficients ``c_j`` are ``N(0, scale^2)`` (default 1; keep it
                small for non-compact groups, whose elements grow like ``exp(scale)``).
            word_length: each word in the discrete generators has a length uniform in
                ``0 .. word_length`` (default ``2k + 4``); each letter is a random generator.

        Returns:
            ``[n, d, d]`` float64.

        Example:
            >>> from equivar.symmetry import special_orthogonal
            >>> g = special_orthogonal(3).sample(4)
            >>> bool(torch.allclose(g @ g.mT, torch.eye(3, dtype=g.dtype).expand(4, 3, 3)))
            True
        """
        eye = torch.eye(self.d, dtype=_F64).expand(n, self.d, self.d)
        out = eye.clone()
        if len(self._lie):
            c = torch.randn(n, len(self._lie), generator=generator, dtype=_F64) * scale
            out = torch.linalg.matrix_exp(torch.einsum("nm,mij->nij", c, self._lie))
        k = len(self._discrete)
        if k:
            length = 2 * k + 4 if word_length is None else int(word_length)
            letters = torch.cat([self._discrete, torch.eye(self.d, dtype=_F64)[None]])
            stop = torch.randint(0, length + 1, (n,), generator=generator)
            for step in range(length):
                pick = torch.randint(0, k, (n,), generator=generator)
                pick = torch.where(step < stop, pick, torch.full_like(pick, k))  # k: identity
                out = out @ letters[pick]
        return out

    def elements(self, max_order: int = 10_000) -> Tensor:
        """Every element of a finite group, by closure of the discrete generators (identity
        first; matrices are equal when they agree to 1e-6).

        Args:
            max_order: stop with an error beyond this many elements (default 10000).

        Returns:
            ``[n_group, d, d]`` float64 (a copy).

        Raises:
            TypeError: the group has a Lie algebra (it is not finite).
            ValueError: the closure exceeds ``max_order``.
        """
        if not self.is_finite:
            raise TypeError(f"group {self.name!r} has a Lie algebra; it has no finite list of "
                            f"elements (use sample())")
        if self._elements is None:
            self._elements = _closure(self._discrete, self.d, max_order, self.name)
        return self._elements.clone()

    @classmethod
    def from_finite(cls, group) -> MatrixGroup:
        """A :class:`~equivar.symmetry.FiniteGroup` as a matrix group: its O(3) ``matrices()``,
        its ``permutations()`` as permutation matrices (``P e_i = e_perm[i]``, so ``P x``
        moves entry ``i`` to ``perm[i]`` as :class:`~equivar.symmetry.PermutationAction`
        does), or, when it has both, the two as the blocks ``[perm | matrix]`` of a product (its
        point clouds are then ``Vector(g, 0) * Vector(g, 1)``). The generators are a small
        generating set picked greedily from the elements.

        Args:
            group: a :class:`~equivar.symmetry.FiniteGroup` with matrices and/or permutations.

        Returns:
            A :class:`MatrixGroup` with ``finite`` set and ``elements()`` in the finite group's
            order (element ``a`` of the table is ``elements()[a]``).

        Example:
            >>> from equivar.symmetry import octahedral
            >>> MatrixGroup.from_finite(octahedral()).elements().shape
            torch.Size([24, 3, 3])
        """
        blocks = []
        if group.has_permutations:
            perms = group.permutations()
            eye = torch.eye(perms.shape[1], dtype=_F64)
            blocks.append(eye[:, perms].permute(1, 0, 2))  # column i is e_perm[i]
        if group.has_matrices:
            blocks.append(group.matrices())
        if not blocks:
            raise TypeError(f"group {group.name!r} has neither matrices nor permutations")
        mats = torch.stack([torch.block_diag(*parts) for parts in zip(*blocks, strict=True)])
        sizes = [b.shape[1] for b in blocks]
        factors = [(sum(sizes[:i]), s) for i, s in enumerate(sizes)]
        gens = _generating_set(group.multiplication_table())
        out = cls(mats[gens], None, d=mats.shape[1], name=group.name, factors=factors)
        out.finite = group
        out._elements = mats
        return out


def _closure(gens: Tensor, d: int, max_order: int, name: str) -> Tensor:
    """Breadth-first closure of ``gens`` from the identity (identity first)."""
    def key(m: Tensor) -> tuple[int, ...]:
        return tuple(torch.round(m.reshape(-1) * 1e6).to(torch.long).tolist())

    eye = torch.eye(d, dtype=_F64)
    found, seen, frontier = [eye], {key(eye)}, [eye]
    while frontier:
        new = []
        for m in frontier:
            for g in gens:
                p = g @ m
                if key(p) not in seen:
                    seen.add(key(p))
                    found.append(p)
                    new.append(p)
        if len(found) > max_order:
            raise ValueError(f"group {name!r}: more than {max_order} elements")
        frontier = new
    return torch.stack(found)


def _generating_set(table: Tensor) -> list[int]:
    """A few elements that generate the group of ``table``: each element not yet in the
    subgroup generated so far joins the generators (at most log2(n_group) of them)."""
    gens: list[int] = []
    span = {0}
    for a in range(1, table.shape[0]):
        if a in span:
            continue
        gens.append(a)
        span, frontier = {0}, [0]
        while frontier:
            nxt = [int(table[g, x]) for x in frontier for g in gens]
            frontier = [y for y in dict.fromkeys(nxt) if y not in span]
            span.update(frontier)
    return gens


def product_group(*groups: MatrixGroup, name: str | None = None) -> MatrixGroup:
    """The direct product ``G_1 x G_2 x ...`` acting block-diagonally on ``R^(d_1 + d_2 + ..)``.

    Each factor's generators act on its block (identity elsewhere), and
    :class:`~equivar.symmetry.reps.Vector` ``(G, i)`` is factor ``i``'s own vector space, so
    ``Vector(G, 0) * Vector(G, 1)`` is e.g. 5 particles in 3D for ``S(5) x SO(3)``. A factor
    that is itself a product contributes all its blocks.

    Args:
        *groups: the factors (at least one).
        name: default the factor names joined by ``"x"``.

    Returns:
        A :class:`MatrixGroup` with ``factors`` the diagonal blocks.

    Example:
        >>> from equivar.symmetry import permutation_matrices, special_orthogonal
        >>> g = product_group(permutation_matrices(5), special_orthogonal(3))
        >>> g.name, g.factors
        ('S(5)xSO(3)', ((0, 5), (5, 3)))
    """
    if not groups or not all(isinstance(g, MatrixGroup) for g in groups):
        raise TypeError("product_group takes one or more MatrixGroup arguments")
    d = sum(g.d for g in groups)
    discrete, lie, factors, offset = [], [], [], 0
    for g in groups:
        block = slice(offset, offset + g.d)
        for mats, out, base in ((g._discrete, discrete, torch.eye(d, dtype=_F64)),
                                (g._lie, lie, torch.zeros(d, d, dtype=_F64))):  # fmt: skip
            for m in mats:
                full = base.clone()
                full[block, block] = m
                out.append(full)
        factors += [(offset + o, s) for o, s in g.factors]
        offset += g.d
    return MatrixGroup(discrete, lie, d=d, name=name or "x".join(g.name for g in groups),
                       factors=factors)
