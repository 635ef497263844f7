"""The equivariant linear maps between two representations, solved from the generators (EMLP).

A matrix ``W`` maps ``rep_in`` to ``rep_out`` equivariantly when ``W rho_in(g) = rho_out(g) W``
for every ``g``: it suffices that it holds for the discrete generators ``h`` and, in
derivative form ``W drho_in(A) = drho_out(A) W``, for the Lie-algebra generators ``A``. In
other words ``vec(W)`` is an invariant of ``rep_out (x) rep_in^*``.

How the work is cut down before any linear algebra:

1. **Direct sums.** Both representations are split into their summands, each a tensor product
   of base vectors (:meth:`~equivar.symmetry.Rep.terms`). ``Hom(sum_b B_b, sum_a A_a)`` is the
   direct sum of the blocks ``Hom(B_b, A_a)``, so each *kind* of pair is solved once:
   ``4*V + V**2 -> V`` solves ``V -> V`` and ``V**2 -> V`` once each and reuses them for every
   copy (:func:`equivariant_blocks`; an EMLP layer keeps this form).
2. **Factor order.** A product's factors are sorted (``V.T*V`` is ``V*V.T`` with its axes
   swapped) and, for groups acting orthogonally, ``V.T`` is ``V``; more pairs share a solve.
3. **Caches.** Solves are kept in memory for the process and, for ``N >= 1024`` unknowns
   (or with ``cache=True``), on disk under ``equivar.cache.cache_dir("emlp")``, keyed by the
   group's generators and the product, written atomically.
4. **Solver.** One product with ``N`` unknowns goes to
   :func:`~equivar.symmetry.nullspace.nullspace`: dense ``eigh`` of the Gram matrix up to
   ``N = 400``, block CGLS projections of random vectors (never forming an ``N x N`` matrix)
   beyond.

Measured (the solver alone on one product, float64, cache off, one thread of a 2-core CPU
shared with other jobs, so +-50%; the residual ``max ||C v||`` of the unit basis vectors is
<= 1e-11 throughout):

===================  =======  ==========  =====================
product (group)      N        invariants  time
===================  =======  ==========  =====================
V**4 (SO(3))         81       3           2 ms (dense)
V**4 (O(1,3))        256      3           30 ms (dense)
V**6 (SO(3))         729      15          0.06 s (dense: 0.2 s)
V**3 (S(10))         1000     5           0.06 s (dense: 0.3 s)
V**4 (Z(7))          2401     343         0.4 s
V**6 (O(1,3))        4096     15          0.5 s
V**6 (Sp(4))         4096     14          1.4 s
V**8 (SO(3))         6561     91          1.1 s
V**4 (S(10))         10000    15          1 s
V**9 (SO(3))         19683    232         10-18 s
V**8 (O(1,3))        65536    105         3 min
V**5 (S(10))         100000   52          70 s (2 threads)
===================  =======  ==========  =====================

Time grows like ``N^3`` (dense) and like ``N K`` times the CGLS iterations (iterative, ``K``
invariants; 10-150 iterations, more for finite groups with small angles such as S(n) or Z(n)
for large n); memory like ``N^2`` and ``N K``. A representation with many summands costs
little more than its distinct pairs of summand kinds: an EMLP hidden layer of
``42 + 14*V + 4*V**2`` for SO(3) solves in ~0.1 s.

References:
    M. Finzi, M. Welling, A. G. Wilson, "A practical method for constructing equivariant
    multilayer perceptrons for arbitrary matrix groups", ICML 2021 (sections 4-5).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import Tensor

from equivar.atomic import atomic_save
from equivar.cache import cache_dir
from equivar.symmetry.matrix_groups import MatrixGroup
from equivar.symmetry.nullspace import KroneckerConstraints, nullspace
from equivar.symmetry.reps import Rep, Vector

__all__ = [
    "DISK_CACHE_MIN_SIZE",
    "EquivariantBlock",
    "equivariant_basis",
    "equivariant_blocks",
    "invariant_basis",
]

logger = logging.getLogger(__name__)

#: products with at least this many unknowns are cached on disk by default (smaller ones solve
#: in milliseconds)
DISK_CACHE_MIN_SIZE = 1024
#: bump when the solver's output changes: old cache files are then ignored
SOLVER_VERSION = 1
_MEMORY: OrderedDict[tuple, Tensor] = OrderedDict()
_MEMORY_ENTRIES = 256


@dataclass(frozen=True)
class EquivariantBlock:
    """The equivariant maps between one kind of input summand and one kind of output summand.

    Every map of the block is ``W[out_index[i], in_index[j]] = sum_t c[t, i, j] basis[t]``
    with free coefficients ``c [n_basis, m, n]``: each of the ``m`` output copies mixes all
    ``n`` input copies.

    Attributes:
        out_index: ``[m, s_out]`` int64, the coordinates of each output copy in ``rep_out``.
        in_index: ``[n, s_in]`` int64, the coordinates of each input copy in ``rep_in``.
        basis: ``[n_basis, s_out, s_in]`` float64, orthonormal (Frobenius).
    """

    out_index: Tensor
    in_index: Tensor
    basis: Tensor

    @property
    def n_params(self) -> int:
        """``n_basis * m * n``: the free coefficients of this block."""
        return self.basis.shape[0] * self.out_index.shape[0] * self.in_index.shape[0]


def _kinds(rep: Rep) -> dict[tuple[str, ...], tuple[tuple[Vector, ...], Tensor]]:
    """The summands of ``rep`` grouped by kind: ``{sorted factor names: (sorted factors,
    [copies, size] coordinates)}``, each copy's coordinates reordered to the sorted factors."""
    grouped: dict[tuple[str, ...], tuple[tuple[Vector, ...], list[Tensor]]] = {}
    for atoms, index in rep.terms():
        names = [a.expression() for a in atoms]
        order = sorted(range(len(atoms)), key=names.__getitem__)
        if atoms:
            index = index.reshape([a.size for a in atoms]).permute(order).reshape(-1)
        key = tuple(names[i] for i in order)
        grouped.setdefault(key, (tuple(atoms[i] for i in order), []))[1].append(index)
    return {k: (atoms, torch.stack(ix)) for k, (atoms, ix) in grouped.items()}


def _constraints(atoms: tuple[Vector, ...], group: MatrixGroup) -> KroneckerConstraints:
    # all of the algebra: two generic elements generate a semisimple one, but the fewer the
    # constraints, the worse their conditioning (3x more CGLS work for SO(3), V**8)
    disc, lie = group.discrete_generators, group.lie_algebra
    return KroneckerConstraints(
        dims=tuple(a.size for a in atoms),
        discrete=[[a.rho(h) for a in atoms] for h in disc],
        lie=[[a.drho(x) for a in atoms] for x in lie],
    )


def _solve_sorted(atoms: tuple[Vector, ...], group: MatrixGroup, method: str,
                  cache: bool | None) -> Tensor:  # fmt: skip
    """The invariants ``[K, N]`` of one sorted product, through the memory and disk caches."""
    text = f"v{SOLVER_VERSION}|{group.key()}|{'*'.join(a.expression() for a in atoms)}"
    memory_key = (text, method)
    if memory_key in _MEMORY:
        _MEMORY.move_to_end(memory_key)
        return _MEMORY[memory_key]
    n = math.prod(a.size for a in atoms)
    use_disk = cache if cache is not None else n >= DISK_CACHE_MIN_SIZE
    path = cache_dir("emlp", hashlib.sha256(text.encode()).hexdigest()[:40] + ".pt")
    basis = _read_cache(path, text, n) if use_disk else None
    if basis is None:
        basis = nullspace(_constraints(atoms, group), method)
        if use_disk:
            try:
                atomic_save({"key": text, "basis": basis}, path)
            except OSError as err:  # a read-only cache folder must not stop a model
                logger.warning("equivariant basis: cannot write the cache %s (%s)", path, err)
    _MEMORY[memory_key] = basis
    if len(_MEMORY) > _MEMORY_ENTRIES:
        _MEMORY.popitem(last=False)
    return basis


def _read_cache(path, text: str, n: int) -> Tensor | None:
    if not path.is_file():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        basis = data["basis"]
        if data["key"] == text and basis.dim() == 2 and basis.shape[1] == n:
            return basis.to(torch.float64)
    except Exception as err:  # a corrupt or foreign file: solve again and overwrite it
        logger.warning("equivariant basis: ignoring the unreadable cache %s (%s)", path, err)
    return None


def _product_basis(atoms: tuple[Vector, ...], group: MatrixGroup, method: str,
                   cache: bool | None) -> Tensor:  # fmt: skip
    """The invariants ``[K, N]`` of ``atoms[0] * atoms[1] * ...`` (any factor order)."""
    names = [a.expression() for a in atoms]
    order = sorted(range(len(atoms)), key=names.__getitem__)
    basis = _solve_sorted(tuple(atoms[i] for i in order), group, method, cache)
    if len(atoms) < 2 or order == sorted(order):
        return basis
    inverse = sorted(range(len(order)), key=order.__getitem__)
    shaped = basis.reshape(-1, *[atoms[i].size for i in order])  # [K, sorted dims]
    return shaped.permute(0, *[1 + inverse[i] for i in range(len(atoms))]).reshape(len(basis), -1)


def _check_method(method: str) -> None:
    if method not in ("auto", "dense", "iterative"):
        raise ValueError(f"method must be 'auto', 'dense' or 'iterative', got {method!r}")


def equivariant_blocks(rep_in: Rep, rep_out: Rep, *, method: str = "auto",
                       cache: bool | None = None) -> list[EquivariantBlock]:  # fmt: skip
    """The equivariant maps ``rep_in -> rep_out`` in block form, one block per pair of summand
    kinds that has any (what :class:`~equivar.nn.emlp.EquivariantLinear` stores).

    Args:
        rep_in: the input :class:`~equivar.symmetry.Rep`.
        rep_out: the output representation, of the same group.
        method: ``"auto"`` (default), ``"dense"`` or ``"iterative"``; see the module docstring.
        cache: None (default): on-disk cache for products of ``>= DISK_CACHE_MIN_SIZE``
            unknowns; True: for all; False: none (the in-memory cache is always used).

    Returns:
        A list of :class:`EquivariantBlock` (empty when the only equivariant map is 0).

    Raises:
        ValueError: representations of different groups, or an unknown method.

    Example:
        >>> from equivar.symmetry import Vector, special_orthogonal
        >>> V = Vector(special_orthogonal(3))
        >>> [b.basis.shape[0] for b in equivariant_blocks(2 * V + V**2, V)]
        [1, 1]
    """
    _check_method(method)
    rep_out.check_same_group(rep_in)
    blocks = []
    kinds_in = _kinds(rep_in)
    for atoms_out, index_out in _kinds(rep_out).values():
        for atoms_in, index_in in kinds_in.values():
            atoms = atoms_out + tuple(a.dual for a in atoms_in)
            basis = _product_basis(atoms, rep_in.group, method, cache)
            if len(basis):
                shaped = basis.reshape(len(basis), index_out.shape[1], index_in.shape[1])
                blocks.append(EquivariantBlock(index_out, index_in, shaped))
    return blocks


def invariant_basis(rep: Rep, *, method: str = "auto", cache: bool | None = None) -> Tensor:
    """An orthonormal basis of the invariant vectors of ``rep`` (``rho(g) v = v`` for all g).

    Args:
        rep: the :class:`~equivar.symmetry.Rep`.
        method, cache: as for :func:`equivariant_blocks`.

    Returns:
        ``[n_basis, rep.size]`` float64 with orthonormal rows.

    Shapes:
        ``[n_basis, size]``.

    Example:
        >>> from equivar.symmetry import Vector, orthogonal
        >>> V = Vector(orthogonal(1, 3))
        >>> invariant_basis(V * V).shape  # the Minkowski metric
        torch.Size([1, 16])
    """
    _check_method(method)
    rows = []
    for atoms, index in _kinds(rep).values():
        basis = _product_basis(atoms, rep.group, method, cache)  # [K, s]
        for copy in index:
            full = torch.zeros(len(basis), rep.size, dtype=torch.float64)
            full[:, copy] = basis
            rows.append(full)
    return torch.cat(rows) if rows else torch.zeros(0, rep.size, dtype=torch.float64)


def equivariant_basis(rep_in: Rep, rep_out: Rep, *, method: str = "auto",
                      cache: bool | None = None) -> Tensor:  # fmt: skip
    """An orthonormal basis of the equivariant linear maps ``rep_in -> rep_out``, dense.

    Every basis matrix ``W`` satisfies ``W rho_in(g) = rho_out(g) W`` for all group elements
    (to ~1e-13 with the dense solver, ~1e-11 with the iterative one). Built from
    :func:`equivariant_blocks`, so the solve costs only the distinct pairs of summand kinds; the
    dense result has ``n_basis * size_out * size_in`` entries (use the blocks for large
    representations).

    Args:
        rep_in: the input representation.
        rep_out: the output representation, of the same group.
        method, cache: as for :func:`equivariant_blocks`.

    Returns:
        ``[n_basis, size_out, size_in]`` float64, orthonormal in the Frobenius inner product.

    Shapes:
        ``[n_basis, rep_out.size, rep_in.size]``.

    Example:
        >>> from equivar.symmetry import Vector, permutation_matrices
        >>> V = Vector(permutation_matrices(5))
        >>> equivariant_basis(V, V).shape  # the identity and the all-ones matrix
        torch.Size([2, 5, 5])

    References:
        M. Finzi, M. Welling, A. G. Wilson, ICML 2021 (see the module docstring).
    """
    blocks = equivariant_blocks(rep_in, rep_out, method=method, cache=cache)
    total = sum(b.n_params for b in blocks)
    out = torch.zeros(total, rep_out.size, rep_in.size, dtype=torch.float64)
    start = 0
    for b in blocks:
        k = b.basis.shape[0]
        for rows in b.out_index:
            for cols in b.in_index:
                out[start:start + k, rows[:, None], cols[None, :]] = b.basis
                start += k
    return out
