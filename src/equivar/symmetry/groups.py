"""``FiniteGroup``: a finite group as a multiplication table, with optional representations.

Elements are the integers ``0 .. n_group - 1`` and element ``0`` is the identity.
``multiplication_table()[a, b]`` is the index of the product ``a * b`` (first ``b``, then ``a``
when the group acts on something from the left). A group may carry

* ``matrices()``: a homomorphism into O(3), ``[n_group, 3, 3]`` float64 (point groups);
* ``permutations()``: a homomorphism into the symmetric group, ``[n_group, n]`` int64 with
  ``(a * b)[i] = a[b[i]]`` (permutation groups acting on the points of a set).

Both are checked against the table when the group is built, so every action built on them is a
left action. Groups are immutable: accessors return copies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["FiniteGroup", "direct_product"]

#: decimals used to recognise equal matrices (the closure's products carry ~1e-15 rounding)
_DECIMALS = 6
#: tables up to this order are checked for associativity (an n^3 comparison) when built
MAX_ASSOCIATIVITY_CHECK = 130


def _keys(matrices: Tensor) -> list[tuple[int, ...]]:
    """Hashable keys of ``[..., 3, 3]`` matrices, equal for matrices equal to ~1e-6 (products
    of the closure carry ~1e-15 rounding; distinct group elements differ by far more)."""
    codes = torch.round(matrices.reshape(-1, 9) * 10**_DECIMALS).to(torch.long)
    return [tuple(row) for row in codes.tolist()]


class FiniteGroup:
    """A finite group given by its multiplication table, optionally with O(3) matrices and/or
    point permutations that represent it.

    Args:
        table: ``[n_group, n_group]`` integers, ``table[a, b]`` = index of ``a * b``; element 0
            must be the identity.
        name: a short name used in messages (``"O"``, ``"D4"``, ``"S3"``).
        matrices: optional ``[n_group, 3, 3]`` orthogonal matrices with
            ``matrices[a] @ matrices[b] == matrices[table[a, b]]`` (need not be faithful).
        permutations: optional ``[n_group, n]`` permutations with
            ``permutations[a][permutations[b]] == permutations[table[a, b]]``.
        check: validate the table (identity, Latin square, associativity up to 130 elements) and
            that the representations are homomorphisms. Default True.
        note: why the group has no matrices, shown when ``matrices()`` is asked for.

    Raises:
        ValueError: the table is not a group table, element 0 is not the identity, or a
            representation does not respect the table (the message names the element pair).

    Shapes:
        ``table``: ``[n_group, n_group]``; ``matrices``: ``[n_group, 3, 3]``;
        ``permutations``: ``[n_group, n]``.

    Example:
        >>> import torch
        >>> z2 = FiniteGroup(torch.tensor([[0, 1], [1, 0]]), name="Z2")
        >>> len(z2), z2.inverses().tolist()
        (2, [0, 1])

    References:
        E. Bao, J. Lu, L. Song, N. Hart-Hodgson, W. Parson, Y. Zhou, "Equivariant neural networks
        and equivarification", arXiv:1906.07172 (section 2: groups and G-sets).
    """

    def __init__(
        self,
        table: Tensor,
        name: str = "G",
        *,
        matrices: Tensor | None = None,
        permutations: Tensor | None = None,
        check: bool = True,
        note: str = "",
    ) -> None:
        table = torch.as_tensor(table)
        if table.dtype.is_floating_point or table.dim() != 2 or table.shape[0] != table.shape[1]:
            raise ValueError(f"group {name!r}: table must be a square integer tensor "
                             f"[n_group, n_group], got {table.dtype} {list(table.shape)}")
        if table.shape[0] == 0:
            raise ValueError(f"group {name!r}: a group has at least one element (the identity)")
        self._table = table.to(torch.long).clone()
        self.name = str(name)
        self._note = note
        n = self._table.shape[0]
        if check:
            self._check_table()
        # inverse of a: the b with a * b = identity (exactly one per row of a Latin square)
        self._inverses = (self._table == 0).long().argmax(dim=1)
        self._matrices = None
        self._permutations = None
        if matrices is not None:
            matrices = torch.as_tensor(matrices, dtype=torch.float64).clone()
            if matrices.shape != (n, 3, 3):
                raise ValueError(f"group {name!r}: matrices must have shape [{n}, 3, 3], got "
                                 f"{list(matrices.shape)}")
            self._matrices = matrices
            if check:
                self._check_matrices()
        if permutations is not None:
            permutations = torch.as_tensor(permutations).to(torch.long).clone()
            if permutations.dim() != 2 or permutations.shape[0] != n:
                raise ValueError(f"group {name!r}: permutations must have shape [{n}, n_points], "
                                 f"got {list(permutations.shape)}")
            self._permutations = permutations
            if check:
                self._check_permutations()

    # --- construction -----------------------------------------------------------------------------
    @classmethod
    def from_matrices(cls, matrices: Tensor | Sequence[Tensor], name: str = "G") -> FiniteGroup:
        """The group formed by a closed set of O(3) matrices (the identity must be among them).

        The identity is moved to index 0; the rest keep their order.

        Args:
            matrices: ``[n_group, 3, 3]`` matrices closed under multiplication.
            name: the group's name.

        Returns:
            A :class:`FiniteGroup` with ``matrices()``.

        Raises:
            ValueError: the set is not closed, has duplicates or lacks the identity.

        Shapes:
            ``matrices``: ``[n_group, 3, 3]``.
        """
        mats = torch.stack([torch.as_tensor(m, dtype=torch.float64) for m in matrices])
        if mats.dim() != 3 or mats.shape[1:] != (3, 3):
            raise ValueError(f"group {name!r}: matrices must have shape [n_group, 3, 3], "
                             f"got {list(mats.shape)}")
        keys = _keys(mats)
        if len(set(keys)) != len(keys):
            raise ValueError(f"group {name!r}: the matrices contain duplicates")
        eye = _keys(torch.eye(3, dtype=torch.float64))[0]
        if eye not in keys:
            raise ValueError(f"group {name!r}: the identity matrix is not among the matrices")
        order = [keys.index(eye)] + [i for i in range(len(keys)) if keys[i] != eye]
        mats = mats[order]
        keys = [keys[i] for i in order]
        return cls(_table_of(mats, keys, name), name, matrices=mats)

    @classmethod
    def from_generators(
        cls, generators: Sequence[Tensor], name: str = "G", max_order: int = 1_000
    ) -> FiniteGroup:
        """The group generated by O(3) matrices, built by closure (breadth first from the
        identity; matrices are recognised as equal after rounding to 1e-6).

        Args:
            generators: ``[3, 3]`` orthogonal matrices.
            name: the group's name.
            max_order: stop with an error when the closure grows past this many elements
                (default 1000; the finite subgroups of O(3) used in practice have <= 120).

        Returns:
            A :class:`FiniteGroup` with element 0 the identity and ``matrices()``.

        Raises:
            ValueError: a generator is not orthogonal, or the closure exceeds ``max_order``
                (the generators do not generate a finite group, e.g. an irrational angle).

        Example:
            >>> import torch
            >>> quarter = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64)
            >>> len(FiniteGroup.from_generators([quarter], "C4"))
            4
        """
        gens = [torch.as_tensor(g, dtype=torch.float64) for g in generators]
        eye = torch.eye(3, dtype=torch.float64)
        for k, g in enumerate(gens):
            if g.shape != (3, 3) or not torch.allclose(g @ g.T, eye, atol=1e-9):
                raise ValueError(f"group {name!r}: generator {k} is not an orthogonal 3x3 matrix")
        elements, seen, frontier = [eye], set(_keys(eye)), eye[None]
        stacked = torch.stack(gens)  # [n_gens, 3, 3]
        while len(frontier):
            new = []
            products = (stacked[:, None] @ frontier[None]).reshape(-1, 3, 3)  # g @ m
            for p, k in zip(products, _keys(products), strict=True):
                if k not in seen:
                    seen.add(k)
                    elements.append(p)
                    new.append(p)
            if len(elements) > max_order:
                raise ValueError(f"group {name!r}: the closure of the generators exceeds "
                                 f"{max_order} elements; they do not generate a finite group")
            frontier = torch.stack(new) if new else frontier[:0]
        mats = torch.stack(elements)
        return cls(_table_of(mats, _keys(mats), name), name, matrices=mats)

    # --- the group --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._table.shape[0]

    @property
    def identity(self) -> int:
        """Index of the identity element (always 0)."""
        return 0

    def multiplication_table(self) -> Tensor:
        """``[n_group, n_group]`` int64, ``table[a, b]`` = index of ``a * b`` (a copy)."""
        return self._table.clone()

    def inverses(self) -> Tensor:
        """``[n_group]`` int64, ``inverses()[a]`` = index of ``a^-1`` (a copy)."""
        return self._inverses.clone()

    def inverse(self, a: int) -> int:
        """Index of ``a^-1``."""
        return int(self._inverses[self.check_element(a)])

    def multiply(self, a: int, b: int) -> int:
        """Index of ``a * b``."""
        return int(self._table[self.check_element(a), self.check_element(b)])

    @property
    def has_matrices(self) -> bool:
        """Whether :meth:`matrices` is available."""
        return self._matrices is not None

    @property
    def has_permutations(self) -> bool:
        """Whether :meth:`permutations` is available."""
        return self._permutations is not None

    def matrices(self) -> Tensor:
        """``[n_group, 3, 3]`` float64 O(3) matrices representing the elements (a copy).

        Raises:
            TypeError: the group has no 3x3 representation (e.g. a permutation group).
        """
        if self._matrices is None:
            why = f" ({self._note})" if self._note else ""
            raise TypeError(f"group {self.name!r} has no 3x3 matrices{why}; it acts through "
                            f"{'permutations()' if self.has_permutations else 'its table only'}")
        return self._matrices.clone()

    def permutations(self) -> Tensor:
        """``[n_group, n]`` int64: element ``a`` sends point ``i`` to point ``perm[a, i]``
        (a copy).

        Raises:
            TypeError: the group does not permute points (e.g. a point group).
        """
        if self._permutations is None:
            raise TypeError(f"group {self.name!r} has no point permutations; it acts through "
                            f"{'matrices()' if self.has_matrices else 'its table only'}")
        return self._permutations.clone()

    def describe(self, a: int) -> str:
        """A readable name of element ``a`` for messages, e.g. ``"3: rotation 90 deg about
        [0, 0, 1]"`` or ``"2: permutation [1, 0, 2]"``."""
        a = self.check_element(a)
        if self._matrices is not None:
            m = self._matrices[a]
            det = torch.linalg.det(m).item()
            proper = m * (1.0 if det > 0 else -1.0)
            angle = math.degrees(math.acos(max(-1.0, min(1.0, (proper.trace().item() - 1) / 2))))
            if angle < 1e-6:
                what = "identity" if det > 0 else "inversion"
            else:
                vals, vecs = torch.linalg.eig(proper)
                axis = vecs[:, (vals - 1).abs().argmin()].real
                axis = axis / axis.norm()
                text = "[" + ", ".join(f"{c:.3g}" for c in (axis + 0.0).tolist()) + "]"
                what = f"rotation {angle:.4g} deg about {text}"
                if det < 0:
                    what = "inversion * " + what
            return f"{a}: {what}"
        if self._permutations is not None:
            return f"{a}: permutation {self._permutations[a].tolist()}"
        return f"{a}"

    def __repr__(self) -> str:
        reps = [r for r, v in (("matrices", self._matrices), ("permutations", self._permutations))
                if v is not None]
        return f"FiniteGroup({self.name!r}, n_group={len(self)}, reps={reps})"

    # --- checks -----------------------------------------------------------------------------------
    def check_element(self, a: int) -> int:
        """``a`` as an ``int``, checked to be an element (``0 <= a < n_group``).

        Raises:
            ValueError: ``a`` is out of range (the message names the group and the range).
        """
        a = int(a)
        if not 0 <= a < len(self):
            raise ValueError(f"group {self.name!r}: element {a} is out of range 0..{len(self) - 1}")
        return a

    def _check_table(self) -> None:
        t, n, name = self._table, self._table.shape[0], self.name
        ar = torch.arange(n)
        if t.min() < 0 or t.max() >= n:
            raise ValueError(f"group {name!r}: table entries must lie in 0..{n - 1}")
        if not (torch.equal(t[0], ar) and torch.equal(t[:, 0], ar)):
            raise ValueError(f"group {name!r}: element 0 must be the identity "
                             f"(table[0, b] = b and table[a, 0] = a)")
        rows_ok = torch.equal(torch.sort(t, dim=1).values, ar.expand(n, n))
        cols_ok = torch.equal(torch.sort(t, dim=0).values, ar[:, None].expand(n, n))
        if not (rows_ok and cols_ok):
            raise ValueError(f"group {name!r}: the table is not a Latin square (some product "
                             f"repeats in a row or column), so it has no inverses")
        if n <= MAX_ASSOCIATIVITY_CHECK:
            lhs = t[t]  # [a, b, c] -> (a*b)*c
            rhs = t[:, t]  # [a, b, c] -> a*(b*c)
            if not torch.equal(lhs, rhs):
                a, b, c = (lhs != rhs).nonzero()[0].tolist()
                raise ValueError(f"group {name!r}: the table is not associative: "
                                 f"(a*b)*c != a*(b*c) for a, b, c = {a}, {b}, {c}")

    def _check_matrices(self) -> None:
        m, t = self._matrices, self._table
        eye = torch.eye(3, dtype=torch.float64)
        orth = (m @ m.transpose(1, 2) - eye).abs().amax(dim=(1, 2))
        if orth.max() > 1e-9:
            raise ValueError(f"group {self.name!r}: matrix {int(orth.argmax())} is not orthogonal")
        prod = m[:, None] @ m[None, :]  # [n_group, n_group, 3, 3]: M_a M_b
        err = (prod - m[t]).abs().amax(dim=(2, 3))
        if err.max() > 1e-9:
            a, b = divmod(int(err.argmax()), len(self))
            raise ValueError(f"group {self.name!r}: matrices[{a}] @ matrices[{b}] != "
                             f"matrices[table[{a}, {b}]] (error {err.max().item():.3g})")

    def _check_permutations(self) -> None:
        p, t = self._permutations, self._table
        k = p.shape[1]
        if not torch.equal(torch.sort(p, dim=1).values, torch.arange(k).expand_as(p)):
            raise ValueError(f"group {self.name!r}: every row of permutations must be a "
                             f"permutation of 0..{k - 1}")
        composed = torch.gather(p[:, None, :].expand(-1, len(self), -1), 2,
                                p[None, :, :].expand(len(self), -1, -1))  # p_a[p_b]
        if not torch.equal(composed, p[t]):
            a, b = (composed != p[t]).any(-1).nonzero()[0].tolist()
            raise ValueError(f"group {self.name!r}: permutations[{a}][permutations[{b}]] != "
                             f"permutations[table[{a}, {b}]]")


def _table_of(mats: Tensor, keys: list[tuple[int, ...]], name: str) -> Tensor:
    """Multiplication table of a closed set of matrices by key lookup."""
    index = {k: i for i, k in enumerate(keys)}
    n = len(keys)
    prod = mats[:, None] @ mats[None, :]  # [n_group, n_group, 3, 3]
    flat = [index.get(k, -1) for k in _keys(prod)]
    table = torch.tensor(flat, dtype=torch.long).view(n, n)
    if (table < 0).any():
        a, b = (table < 0).nonzero()[0].tolist()
        raise ValueError(f"group {name!r}: the matrices are not closed under multiplication "
                         f"(the product of elements {a} and {b} is not among them)")
    return table


def direct_product(first: FiniteGroup, second: FiniteGroup, name: str | None = None) -> FiniteGroup:
    """The direct product ``first x second``: pairs ``(a, b)`` at index ``a * len(second) + b``.

    Representations carry over when they make sense:

    * matrices: ``M_a @ M_b`` when both factors have matrices and they commute (e.g. a rotation
      group and ``inversion()``: the full point groups); the matrices of the one factor that has
      them otherwise (the other factor then acts trivially on vectors);
    * permutations: likewise, from the one factor that has them (a group acting on point
      clouds by relabelling and rotating at once, e.g. ``symmetric(4) x octahedral()``).

    Args:
        first: the group of the first component.
        second: the group of the second component.
        name: default ``"{first} x {second}"``.

    Returns:
        A :class:`FiniteGroup` of order ``len(first) * len(second)``, element 0 the identity.

    Example:
        >>> from equivar.symmetry import cyclic, inversion
        >>> len(direct_product(cyclic(4), inversion()))
        8
    """
    for g in (first, second):
        if not isinstance(g, FiniteGroup):
            raise TypeError(f"direct_product takes FiniteGroup arguments, got {type(g).__name__}")
    n1, n2 = len(first), len(second)
    name = name or f"{first.name} x {second.name}"
    t1, t2 = first.multiplication_table(), second.multiplication_table()
    a = torch.arange(n1 * n2) // n2
    b = torch.arange(n1 * n2) % n2
    table = t1[a[:, None], a[None, :]] * n2 + t2[b[:, None], b[None, :]]
    mats, note = None, ""
    if first.has_matrices and second.has_matrices:
        m1, m2 = first.matrices(), second.matrices()
        commute = (m1[:, None] @ m2[None] - m2[None] @ m1[:, None]).abs().max() < 1e-9
        if commute:
            mats = m1[a] @ m2[b]
        else:
            note = f"the matrices of {first.name} and {second.name} do not commute"
    elif first.has_matrices:
        mats = first.matrices()[a]
    elif second.has_matrices:
        mats = second.matrices()[b]
    perms = None
    if first.has_permutations and second.has_permutations:
        p1, p2 = first.permutations(), second.permutations()
        # disjoint union of the two point sets: first's points, then second's
        perms = torch.cat([p1[a], p2[b] + p1.shape[1]], dim=1)
    elif first.has_permutations:
        perms = first.permutations()[a]
    elif second.has_permutations:
        perms = second.permutations()[b]
    # valid factors make a valid product (and commuting matrices a homomorphism): the O(n^3)
    # and O(n^2) checks would cost more than the product for large factors
    return FiniteGroup(table, name, matrices=mats, permutations=perms, check=False, note=note)
