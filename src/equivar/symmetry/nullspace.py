"""The null space of Kronecker-structured constraints: the invariant vectors of one tensor
product of representations, ``V_1 (x) V_2 (x) ... (x) V_k``.

A vector ``v`` of ``R^N`` (``N = d_1 d_2 ... d_k``, row-major) is invariant when

* ``(M_1 (x) ... (x) M_k) v = v`` for every discrete generator, ``M_i`` its matrix on factor i;
* ``sum_i (I (x) .. (x) D_i (x) .. (x) I) v = 0`` for every Lie-algebra generator, ``D_i`` its
  matrix on factor i.

Stacked, these are ``C v = 0``. Two solvers, picked by :func:`nullspace`:

* dense (``N <=`` :data:`DENSE_LIMIT`): ``P = C^T C`` from each generator's constraint
  matrix (Kronecker products of the small factors), then ``eigh(P)``; the eigenvectors of
  eigenvalues below ``1e-9 max(1, ||P||)`` span the null space. ``O(G N^3)`` time, ``O(N^2)``
  memory.
* iterative (larger ``N``): random vectors are projected onto the null space by block CGLS
  (conjugate gradients on the least-squares problem ``min ||C (q - x)||``, which converges to
  the projection of ``q``; ``C`` and ``C^T`` are applied factor by factor, ``O(N sum d_i)``
  per generator, never formed; a discrete generator whose factors are signed permutations,
  as for permutation groups and reflections, is one gather of ``N`` entries). The number of
  vectors doubles until their projections are rank deficient (by :data:`SURPLUS` at least),
  which reveals the null-space dimension; the orthonormalised result is projected once more, so
  every basis vector has ``||C v|| <= 1e-11``. ``O(N K)`` memory for ``K`` invariants.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["DENSE_LIMIT", "KroneckerConstraints", "nullspace"]

logger = logging.getLogger(__name__)

#: above this many unknowns ``N``, ``method="auto"`` uses the iterative solver (faster from a
#: few hundred on: at N = 729 (SO(3), V**6) 0.15 s dense, 0.04 s iterative)
DENSE_LIMIT = 400
#: up to this many unknowns the solvers run on one thread (restored afterwards): their products
#: of small factors are too small to share, and on a busy 2-core machine a second thread made
#: each one ~1000x slower (16 ms instead of 10 us, spin-waiting for a core)
SINGLE_THREAD_LIMIT = 1 << 16
#: the iterative solver stops growing its random set when this many of its projections are
#: dependent (so a barely independent set is never taken for the whole null space)
SURPLUS = 4
#: the iterative solver's target residual ``||C v||`` for a unit vector ``v``
ITERATIVE_TOL = 1e-11


def _kron(mats: list[Tensor]) -> Tensor:
    out = mats[0]
    for m in mats[1:]:
        out = (out[:, None, :, None] * m[None, :, None, :]).reshape(
            out.shape[0] * m.shape[0], out.shape[1] * m.shape[1])
    return out


@dataclass
class KroneckerConstraints:
    """The constraints of one tensor product (see the module docstring).

    Attributes:
        dims: ``(d_1, .., d_k)``; ``N = prod(dims)`` (1 for ``k = 0``).
        discrete: per discrete generator, its ``k`` matrices ``[d_i, d_i]`` (float64).
        lie: per Lie-algebra generator, its ``k`` matrices ``[d_i, d_i]``.
    """

    dims: tuple[int, ...]
    discrete: list[list[Tensor]]
    lie: list[list[Tensor]]

    def __post_init__(self) -> None:
        # drop what constrains nothing: identity factors of a discrete generator are skipped
        # when applied, zero factors of a Lie generator too; wholly trivial generators go
        eyes = [torch.eye(d, dtype=torch.float64) for d in self.dims]
        self._disc = [[None if torch.equal(m, e) else m for m, e in zip(ms, eyes, strict=True)]
                      for ms in self.discrete]
        self._disc = [ms for ms in self._disc if any(m is not None for m in ms)]
        self._lie = [[None if not m.any() else m for m in ms] for ms in self.lie]
        self._lie = [ms for ms in self._lie if any(m is not None for m in ms)]
        self._monomial = [_monomial(ms, self.dims) for ms in self._disc]

    @property
    def size(self) -> int:
        """``N``."""
        return math.prod(self.dims)

    @property
    def count(self) -> int:
        """The number of (non-trivial) generators ``G``."""
        return len(self._disc) + len(self._lie)

    def _modes(self, mats: list[Tensor | None], x: Tensor, transpose: bool) -> Tensor:
        """``(M_1 (x) .. (x) M_k) x`` for ``x [N, c]``, one factor at a time: factor ``i`` is a
        batched product ``M_i @ x.view(before, d_i, after * c)``, no transposes."""
        c = x.shape[-1]
        for i, m in enumerate(mats):
            if m is not None:
                before = math.prod(self.dims[:i])
                x = (m.T if transpose else m) @ x.reshape(before, self.dims[i], -1)
        return x.reshape(-1, c)

    def _sum(self, mats: list[Tensor | None], x: Tensor, transpose: bool) -> Tensor:
        """``sum_i (I (x) .. D_i .. (x) I) x``."""
        out = torch.zeros_like(x)
        for i, m in enumerate(mats):
            if m is not None:
                one = [None] * len(mats)
                one[i] = m
                out = out + self._modes(one, x, transpose)
        return out

    def _discrete(self, g: int, x: Tensor, transpose: bool) -> Tensor:
        """Discrete generator ``g`` (or its transpose) applied to ``x [N, c]``: one gather for
        signed permutations (permutation groups, reflections), else factor by factor."""
        mono = self._monomial[g]
        if mono is None:
            return self._modes(self._disc[g], x, transpose)
        index, scale = mono[2:] if transpose else mono[:2]
        return scale[:, None] * x[index]

    def apply(self, x: Tensor) -> Tensor:
        """``C x``: ``[N, c] -> [G, N, c]``."""
        out = [self._discrete(g, x, False) - x for g in range(len(self._disc))]
        out += [self._sum(ms, x, False) for ms in self._lie]
        return torch.stack(out) if out else x.new_zeros(0, *x.shape)

    def apply_t(self, y: Tensor) -> Tensor:
        """``C^T y``: ``[G, N, c] -> [N, c]``."""
        out = torch.zeros_like(y[0]) if len(y) else None
        for g in range(len(self._disc)):
            out = out + self._discrete(g, y[g], True) - y[g]
        for g, ms in enumerate(self._lie):
            out = out + self._sum(ms, y[len(self._disc) + g], True)
        return out

    def gram(self) -> Tensor:
        """``P = C^T C`` ``[N, N]``: each generator's ``[N, N]`` constraint assembled from
        Kronecker products of its factors, then squared (``O(G N^3)``)."""
        eyes = [torch.eye(d, dtype=torch.float64) for d in self.dims]
        n = self.size
        p = torch.zeros(n, n, dtype=torch.float64)
        for ms in self._disc:
            c = _kron([e if m is None else m for m, e in zip(ms, eyes, strict=True)])
            c -= torch.eye(n, dtype=torch.float64)
            p += c.T @ c
        for ms in self._lie:
            c = torch.zeros(n, n, dtype=torch.float64)
            for i, m in enumerate(ms):
                if m is not None:
                    c += _kron(eyes[:i] + [m] + eyes[i + 1:])
            p += c.T @ c
        return p


def _monomial(mats: list[Tensor | None], dims: tuple[int, ...]) -> tuple[Tensor, ...] | None:
    """For factors that are all signed permutations (one non-zero per row), their Kronecker
    product as ``(index, scale, index_t, scale_t)``: ``(M x)[r] = scale[r] x[index[r]]`` and
    the same for ``M^T``; None otherwise."""
    index = torch.zeros(1, dtype=torch.long)
    scale = torch.ones(1, dtype=torch.float64)
    for m, d in zip(mats, dims, strict=True):
        if m is None:
            src, val = torch.arange(d), torch.ones(d, dtype=torch.float64)
        else:
            if not ((m != 0).sum(dim=1) == 1).all():
                return None
            src = m.abs().argmax(dim=1)
            val = m.gather(1, src[:, None])[:, 0]
            if len(set(src.tolist())) != d:
                return None
        index = (index[:, None] * d + src[None, :]).reshape(-1)
        scale = (scale[:, None] * val[None, :]).reshape(-1)
    inverse = torch.empty_like(index)
    inverse[index] = torch.arange(len(index))
    return index, scale, inverse, scale[inverse]


def nullspace(constraints: KroneckerConstraints, method: str = "auto",
              generator: torch.Generator | None = None) -> Tensor:  # fmt: skip
    """An orthonormal basis of ``{v : C v = 0}``.

    Args:
        constraints: the :class:`KroneckerConstraints`.
        method: ``"dense"``, ``"iterative"`` or ``"auto"`` (dense up to :data:`DENSE_LIMIT`
            unknowns).
        generator: random generator of the iterative solver's starting vectors (default: a
            fixed seed, so the basis is reproducible).

    Returns:
        ``[K, N]`` float64, orthonormal rows.

    Raises:
        ValueError: an unknown method.
    """
    if method not in ("auto", "dense", "iterative"):
        raise ValueError(f"method must be 'auto', 'dense' or 'iterative', got {method!r}")
    n = constraints.size
    if constraints.count == 0:
        return torch.eye(n, dtype=torch.float64)
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    with _threads(1 if n <= SINGLE_THREAD_LIMIT else None):
        if method == "dense" or (method == "auto" and n <= DENSE_LIMIT):
            values, vectors = torch.linalg.eigh(constraints.gram())
            keep = values <= 1e-9 * max(1.0, float(values[-1]))
            return vectors[:, keep].T.contiguous()
        return _iterative(constraints, generator)


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` (None: unchanged), restored afterwards."""
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _cgls(cons: KroneckerConstraints, q: Tensor, tol: float, max_iter: int) -> Tensor:
    """Project the columns of ``q`` ``[N, c]`` onto the null space of ``C``: CGLS on
    ``min ||C (q - x)||`` from ``x = 0`` keeps ``x`` in the row space of ``C`` and converges to
    its projection, so ``v = q - x`` goes to the null-space part; the residual is ``C v``."""
    v = q.clone()
    r = cons.apply(v)  # [G, N, c]: C v
    s = cons.apply_t(r)  # [N, c]
    p = s.clone()
    gamma = (s * s).sum(0)  # [c]
    for it in range(max_iter):
        if r.pow(2).sum((0, 1)).sqrt().max() <= tol:
            return v
        w = cons.apply(p)
        ww = w.pow(2).sum((0, 1))
        alpha = torch.where(ww > 0, gamma / ww.clamp_min(1e-300), torch.zeros_like(ww))
        v = v - alpha * p
        r = r - alpha * w
        if it % 50 == 49:
            r = cons.apply(v)  # residual replacement: no drift over long runs
        s = cons.apply_t(r)
        new = (s * s).sum(0)
        beta = torch.where(gamma > 0, new / gamma.clamp_min(1e-300), torch.zeros_like(new))
        p = s + beta * p
        gamma = new
    worst = r.pow(2).sum((0, 1)).sqrt().max().item()
    logger.warning("nullspace: CGLS stopped after %d iterations with residual %.3g (target "
                   "%.3g); the constraint is ill-conditioned", max_iter, worst, tol)
    return v


def _iterative(cons: KroneckerConstraints, generator: torch.Generator,
               max_iter: int = 3000) -> Tensor:  # fmt: skip
    """Grow a set of projected random vectors until it is rank deficient by at least
    :data:`SURPLUS` columns; see the module docstring."""
    n = cons.size
    columns = torch.zeros(n, 0, dtype=torch.float64)
    width = min(n, 8)
    while True:
        q = torch.randn(n, width, generator=generator, dtype=torch.float64)
        q = q / q.norm(dim=0)
        # to 1e-9: the kept directions are then >= 1e-6 (a projected unit vector has norm
        # ~sqrt(K / N)), the discarded ones ~1e-9 / sigma_min(C)
        columns = torch.cat([columns, _cgls(cons, q, 1e-9, max_iter)], dim=1)
        u, s, _ = torch.linalg.svd(columns, full_matrices=False)
        rank = int((s > 1e-6).sum())
        if rank <= columns.shape[1] - min(SURPLUS, n - rank) or columns.shape[1] >= n:
            break
        width = min(n - columns.shape[1], max(columns.shape[1], SURPLUS))
    if rank == 0:
        return torch.zeros(0, n, dtype=torch.float64)
    # the kept directions carry the projections' errors divided by their singular values:
    # project the orthonormal basis once more, then orthonormalise (a near-identity step)
    basis = _cgls(cons, u[:, :rank].contiguous(), ITERATIVE_TOL, max_iter)
    basis, _ = torch.linalg.qr(basis)
    logger.debug("nullspace: N=%d, %d invariants from %d random vectors", n, rank,
                 columns.shape[1])
    return basis.T.contiguous()
