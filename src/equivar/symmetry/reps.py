"""Representations of a :class:`~equivar.symmetry.MatrixGroup` as a small algebra.

``V = Vector(G)`` is the base representation (``rho(g) = g``); from it and scalars
(:class:`Scalar`, or plain integers) come direct sums ``3*V + V**2 + 2``, tensor products
``V * V.T``, duals ``V.T`` / ``V.dual`` (``rho(g)^{-T}``, ``drho(A) = -A^T``) and powers. A
representation gives its matrices on group elements (:meth:`Rep.rho`) and on Lie-algebra
elements (:meth:`Rep.drho`), and keeps its structure: :meth:`Rep.terms` lists its summands as
tensor products of base vectors with the coordinates each one occupies, which the constraint
solver (:mod:`equivar.symmetry.constraints`) solves once per distinct kind.

Coordinates: a sum stacks its summands in order; a product ``A * B`` is the row-major Kronecker
product (coordinate ``i * B.size + j`` holds ``a_i b_j``), so ``(A * B).rho(g) =
kron(A.rho(g), B.rho(g))``. :func:`as_rep` reads the expressions that ``str(rep)`` writes.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence

import torch
from torch import Tensor

from equivar.symmetry.matrix_groups import MatrixGroup

__all__ = ["ProductRep", "Rep", "Scalar", "SumRep", "Vector", "as_rep"]

#: one summand of a representation: (its tensor factors, the coordinates it occupies)
Term = tuple[tuple["Vector", ...], Tensor]


class Rep:
    """A representation of ``group`` on ``R^size`` (base class; build them with the operators).

    Operators: ``a + b`` (direct sum; an int ``n`` is ``n`` scalars), ``n * a`` (``n`` copies),
    ``a * b`` (tensor product), ``a ** k``, ``a.T`` / ``a.dual``.

    Attributes:
        group: the :class:`~equivar.symmetry.MatrixGroup`.
        size: the dimension.
    """

    group: MatrixGroup
    size: int

    # --- what subclasses define -------------------------------------------------------------------
    def rho(self, g: Tensor) -> Tensor:
        """The matrices of group elements ``g`` ``[..., d, d]``: ``[..., size, size]``."""
        raise NotImplementedError

    def drho(self, a: Tensor) -> Tensor:
        """The matrices of Lie-algebra elements ``a`` ``[..., d, d]``: ``[..., size, size]``
        (the derivative of :meth:`rho` at the identity)."""
        raise NotImplementedError

    @property
    def dual(self) -> Rep:
        """The dual representation: ``rho(g)^{-T}``, ``drho(A) = -A^T``."""
        raise NotImplementedError

    def terms(self) -> list[Term]:
        """The summands as tensor products of base vectors (scalars dropped, so a scalar is the
        empty product), each with its coordinates ``[term size]`` (int64) in this
        representation; row-major over the factors."""
        raise NotImplementedError

    def structure(self) -> tuple:
        """A hashable description (equal for equal representations of one group)."""
        raise NotImplementedError

    def expression(self) -> str:
        """The expression :func:`as_rep` reads back (also ``str(rep)``)."""
        raise NotImplementedError

    # --- shared -----------------------------------------------------------------------------------
    @property
    def T(self) -> Rep:  # noqa: N802 - the transpose-like name users expect
        """Same as :attr:`dual`."""
        return self.dual

    def check_same_group(self, other: Rep) -> None:
        if other.group != self.group:
            raise ValueError(f"representations of different groups: {self.group.name} and "
                             f"{other.group.name}")

    def _coerce(self, other) -> Rep | None:
        if isinstance(other, Rep):
            self.check_same_group(other)
            return other
        if isinstance(other, int) and not isinstance(other, bool) and other >= 0:
            return other * Scalar(self.group) if other else None
        raise TypeError(f"cannot combine a representation with {type(other).__name__} "
                        f"{other!r}")

    def __add__(self, other) -> Rep:
        other = self._coerce(other)
        return self if other is None else SumRep([self, other])

    def __radd__(self, other) -> Rep:
        other = self._coerce(other)
        return self if other is None else SumRep([other, self])

    def __mul__(self, other) -> Rep:
        if isinstance(other, int) and not isinstance(other, bool):
            return self.__rmul__(other)
        other = self._coerce(other)
        if other is None or isinstance(other, Scalar):  # R (x) 1 = R
            return self
        return other if isinstance(self, Scalar) else ProductRep([self, other])

    def __rmul__(self, n) -> Rep:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n * rep needs an integer n >= 1, got {n!r}")
        return self if n == 1 else SumRep([self] * n)

    def __pow__(self, k: int) -> Rep:
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"rep ** k needs an integer k >= 0, got {k!r}")
        return Scalar(self.group) if k == 0 else (self if k == 1 else ProductRep([self] * k))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Rep) and other.group == self.group
                and other.structure() == self.structure())

    def __hash__(self) -> int:
        return hash((self.group.key(), self.structure()))

    def __str__(self) -> str:
        return self.expression()

    def __repr__(self) -> str:
        return f"Rep[{self.group.name}]({self.expression()}, size={self.size})"


class Scalar(Rep):
    """The trivial representation on ``R``: ``rho(g) = 1``, ``drho(A) = 0``.

    Example:
        >>> from equivar.symmetry import special_orthogonal
        >>> (3 * Scalar(special_orthogonal(3))).size
        3
    """

    def __init__(self, group: MatrixGroup) -> None:
        self.group, self.size = group, 1

    def rho(self, g: Tensor) -> Tensor:
        return g.new_ones(*g.shape[:-2], 1, 1)

    def drho(self, a: Tensor) -> Tensor:
        return a.new_zeros(*a.shape[:-2], 1, 1)

    @property
    def dual(self) -> Rep:
        return self

    def terms(self) -> list[Term]:
        return [((), torch.zeros(1, dtype=torch.long))]

    def structure(self) -> tuple:
        return ("1",)

    def expression(self) -> str:
        return "1"


class Vector(Rep):
    """The base representation ``rho(g) = g`` (or factor ``factor``'s block of a product group;
    or its dual ``g^{-T}``).

    Args:
        group: the :class:`~equivar.symmetry.MatrixGroup`.
        factor: the block of a :func:`~equivar.symmetry.product_group` (default None: all of
            ``R^d``).
        dual: the dual, ``g^{-T}`` (default False; prefer ``Vector(g).T``). For a group acting
            orthogonally the dual equals the vector and is returned as it.

    Example:
        >>> from equivar.symmetry import orthogonal
        >>> V = Vector(orthogonal(1, 3))
        >>> (V * V.T).size, str(3 * V + V**2 + 2)
        (16, '3*V + V**2 + 2')
    """

    def __init__(self, group: MatrixGroup, factor: int | None = None, dual: bool = False) -> None:
        if not isinstance(group, MatrixGroup):
            raise TypeError(f"Vector needs a MatrixGroup, got {type(group).__name__}")
        if factor is not None and not 0 <= int(factor) < len(group.factors):
            raise ValueError(f"group {group.name!r} has factors 0..{len(group.factors) - 1}, "
                             f"got factor={factor}")
        self.group, self.factor = group, None if factor is None else int(factor)
        self.block = (0, group.d) if factor is None else group.factors[self.factor]
        self.size = self.block[1]
        self.is_dual = bool(dual) and not group.factor_is_orthogonal(self.factor)

    def _cut(self, m: Tensor) -> Tensor:
        o, s = self.block
        return m[..., o:o + s, o:o + s]

    def rho(self, g: Tensor) -> Tensor:
        g = self._cut(g)
        return torch.linalg.inv(g).mT if self.is_dual else g

    def drho(self, a: Tensor) -> Tensor:
        a = self._cut(a)
        return -a.mT if self.is_dual else a

    @property
    def dual(self) -> Rep:
        return Vector(self.group, self.factor, not self.is_dual)

    def terms(self) -> list[Term]:
        return [((self,), torch.arange(self.size))]

    def structure(self) -> tuple:
        return ("V", self.factor, self.is_dual)

    def expression(self) -> str:
        return "V" + ("" if self.factor is None else f"[{self.factor}]") + (
            ".T" if self.is_dual else "")


class SumRep(Rep):
    """The direct sum of ``reps`` (nested sums flattened), coordinates stacked in order."""

    def __init__(self, reps: Sequence[Rep]) -> None:
        flat: list[Rep] = []
        for r in reps:
            flat += r.reps if isinstance(r, SumRep) else [r]
        for r in flat[1:]:
            flat[0].check_same_group(r)
        self.group, self.reps = flat[0].group, tuple(flat)
        self.size = sum(r.size for r in flat)

    def _blocks(self, mats: list[Tensor]) -> Tensor:
        out = mats[0].new_zeros(*mats[0].shape[:-2], self.size, self.size)
        offset = 0
        for m in mats:
            s = m.shape[-1]
            out[..., offset:offset + s, offset:offset + s] = m
            offset += s
        return out

    def rho(self, g: Tensor) -> Tensor:
        return self._blocks([r.rho(g) for r in self.reps])

    def drho(self, a: Tensor) -> Tensor:
        return self._blocks([r.drho(a) for r in self.reps])

    @property
    def dual(self) -> Rep:
        return SumRep([r.dual for r in self.reps])

    def terms(self) -> list[Term]:
        out, offset = [], 0
        for r in self.reps:
            out += [(atoms, index + offset) for atoms, index in r.terms()]
            offset += r.size
        return out

    def structure(self) -> tuple:
        return ("+",) + tuple(r.structure() for r in self.reps)

    def expression(self) -> str:
        # runs in order (an int for scalars), so as_rep(str(rep)) keeps the coordinates
        return " + ".join(str(n) if isinstance(r, Scalar) else
                          r.expression() if n == 1 else f"{n}*{_wrap(r, '*')}"
                          for r, n in _runs(self.reps))


class ProductRep(Rep):
    """The tensor product of ``reps`` (nested products flattened), row-major coordinates."""

    def __init__(self, reps: Sequence[Rep]) -> None:
        flat: list[Rep] = []
        for r in reps:
            flat += r.reps if isinstance(r, ProductRep) else [r]
        for r in flat[1:]:
            flat[0].check_same_group(r)
        self.group, self.reps = flat[0].group, tuple(flat)
        self.size = 1
        for r in flat:
            self.size *= r.size

    def rho(self, g: Tensor) -> Tensor:
        return _kron([r.rho(g) for r in self.reps])

    def drho(self, a: Tensor) -> Tensor:
        # the Leibniz rule: sum over factors of I x .. x drho_i x .. x I
        total = None
        for i, r in enumerate(self.reps):
            mats = [torch.eye(q.size, dtype=a.dtype, device=a.device).expand(*a.shape[:-2], -1, -1)
                    for q in self.reps]
            mats[i] = r.drho(a)
            term = _kron(mats)
            total = term if total is None else total + term
        return total

    @property
    def dual(self) -> Rep:
        return ProductRep([r.dual for r in self.reps])

    def terms(self) -> list[Term]:
        out: list[Term] = [((), torch.zeros(1, dtype=torch.long))]
        for r in self.reps:
            out = [(a + b, (i[:, None] * r.size + j[None, :]).reshape(-1))
                   for a, i in out for b, j in r.terms()]
        return out

    def structure(self) -> tuple:
        return ("*",) + tuple(r.structure() for r in self.reps)

    def expression(self) -> str:
        return "*".join(_wrap(r, "**") if n == 1 else f"{_wrap(r, '**')}**{n}"
                        for r, n in _runs(self.reps))


def _runs(reps: Sequence[Rep]) -> list[tuple[Rep, int]]:
    """Consecutive equal representations as ``(rep, count)``."""
    out: list[tuple[Rep, int]] = []
    for r in reps:
        if out and out[-1][0].structure() == r.structure():
            out[-1] = (r, out[-1][1] + 1)
        else:
            out.append((r, 1))
    return out


def _wrap(rep: Rep, operator: str) -> str:
    """``rep``'s expression, in parentheses where ``operator`` binds tighter."""
    loose = isinstance(rep, SumRep) or (operator == "**" and isinstance(rep, ProductRep))
    return f"({rep.expression()})" if loose else rep.expression()


def _kron(mats: list[Tensor]) -> Tensor:
    """Batched row-major Kronecker product ``[..., n_i, n_i] -> [..., prod n_i, prod n_i]``."""
    out = mats[0]
    for m in mats[1:]:
        batch = torch.broadcast_shapes(out.shape[:-2], m.shape[:-2])
        prod = out[..., :, None, :, None] * m[..., None, :, None, :]
        out = prod.reshape(*batch, out.shape[-2] * m.shape[-2], out.shape[-1] * m.shape[-1])
    return out


def as_rep(spec, group: MatrixGroup) -> Rep:
    """A representation of ``group`` from a :class:`Rep`, an int (that many scalars) or an
    expression in ``V`` (the base vector), ``V[i]`` (factor ``i`` of a product group), integers,
    ``+``, ``*``, ``**`` and ``.T``, e.g. ``"3*V + V**2 + 2"`` or ``"V[0]*V[1]"`` (what
    ``str(rep)`` writes).

    Args:
        spec: the representation.
        group: the :class:`~equivar.symmetry.MatrixGroup`.

    Returns:
        The :class:`Rep`.

    Raises:
        ValueError: an expression outside that grammar, or a representation of another group.

    Example:
        >>> from equivar.symmetry import special_orthogonal
        >>> as_rep("2*V + V**2", special_orthogonal(3)).size
        15
    """
    if isinstance(spec, Rep):
        if spec.group != group:
            raise ValueError(f"{spec!r} is a representation of {spec.group.name}, not of "
                             f"{group.name}")
        return spec
    if isinstance(spec, int) and not isinstance(spec, bool) and spec >= 1:
        return spec * Scalar(group)
    if not isinstance(spec, str):
        raise TypeError(f"a representation is a Rep, an int or an expression, got "
                        f"{type(spec).__name__}")
    try:
        tree = ast.parse(spec.strip(), mode="eval").body
        out = _evaluate(tree, group)
    except (SyntaxError, ValueError, TypeError) as err:
        raise ValueError(f"cannot read the representation {spec!r}: {err}; write e.g. "
                         f"'3*V + V**2 + 2', 'V*V.T' or 'V[0]*V[1]'") from None
    return out if isinstance(out, Rep) else as_rep(out, group)


def _evaluate(node: ast.AST, group: MatrixGroup):
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.Name) and node.id == "V":
        return Vector(group)
    if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name)
            and node.value.id == "V" and isinstance(node.slice, ast.Constant)):
        return Vector(group, node.slice.value)
    if isinstance(node, ast.Attribute) and node.attr in ("T", "dual"):
        return _as_rep_value(_evaluate(node.value, group), group).dual
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult, ast.Pow)):
        left, right = _evaluate(node.left, group), _evaluate(node.right, group)
        if isinstance(node.op, ast.Pow):
            return _as_rep_value(left, group) ** right
        return left + right if isinstance(node.op, ast.Add) else left * right
    raise ValueError(f"unsupported part {ast.dump(node)[:40]}")


def _as_rep_value(value, group: MatrixGroup) -> Rep:
    return value if isinstance(value, Rep) else as_rep(value, group)
