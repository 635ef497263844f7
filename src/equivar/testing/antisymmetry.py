"""``assert_antisymmetric``: exchange symmetry of wavefunctions returning ``(sign, log|psi|)``.

For fermions, swapping two electrons of the same spin flips the sign of psi and keeps
``log|psi|``; a permutation of parity ``p`` multiplies psi by ``(-1)^p``. For bosons
(:func:`assert_symmetric`) nothing changes under any permutation. Each permutation is checked
on every walker: the sign must come out permuted *exactly* (+-1), ``log|psi|`` within tolerance.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from equivar.testing.measurement import (
    EQUIVARIANCE_TOLERANCES,
    SymmetryAssertionError,
    default_tolerances,
    relative_error,
)

__all__ = ["assert_antisymmetric", "assert_symmetric"]

Wavefunction = Callable[[Tensor], tuple[Tensor, Tensor]]


def _spins(wavefunction, r: Tensor, n_up: int | None, n_down: int | None) -> tuple[int, int]:
    if n_up is None:
        n_up = getattr(wavefunction, "n_up", None)
        n_down = getattr(wavefunction, "n_down", None) if n_down is None else n_down
    if n_up is None:
        raise ValueError("assert_antisymmetric: pass n_up= (the wavefunction has no n_up "
                         "attribute)")
    n_down = r.shape[1] - n_up if n_down is None else n_down
    if n_up < 0 or n_down < 0 or n_up + n_down != r.shape[1]:
        raise ValueError(f"assert_antisymmetric: n_up={n_up} + n_down={n_down} must equal the "
                         f"{r.shape[1]} electrons of r")
    return n_up, n_down


def _parity(perm: Sequence[int]) -> int:
    """+1 for an even permutation, -1 for an odd one (by counting cycles)."""
    seen, sign = set(), 1
    for start in range(len(perm)):
        length, i = 0, start
        while i not in seen:
            seen.add(i)
            i, length = perm[i], length + 1
        if length and length % 2 == 0:
            sign = -sign
    return sign


def _permutations(groups: list[range], n: int, seed: int, n_random: int, even: bool):
    """(kind, permutation) pairs: every transposition, even ones, random ones (within groups)."""
    out = []
    for g in groups:
        for i, j in itertools.combinations(g, 2):
            p = list(range(n))
            p[i], p[j] = j, i
            out.append(("transposition", p))
    if even:
        for g in groups:  # every 3-cycle i -> j -> k
            for i, j, k in itertools.combinations(g, 3):
                p = list(range(n))
                p[i], p[j], p[k] = j, k, i
                out.append(("even_permutation", p))
        big = [g for g in groups if len(g) >= 2]
        if len(big) >= 2:  # one swap in each of two groups: even overall
            p = list(range(n))
            for g in big[:2]:
                p[g[0]], p[g[1]] = g[1], g[0]
            out.append(("even_permutation", p))
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n_random):
        p = list(range(n))
        for g in groups:
            order = torch.randperm(len(g), generator=gen).tolist()
            for a, b in zip(g, order, strict=True):
                p[a] = g[b]
        out.append(("random_permutation", p))
    return out


def _check(wavefunction: Wavefunction, r: Tensor, groups: list[range], antisymmetric: bool,
           even_permutations: bool, n_random: int, rtol: float | None, atol: float | None,
           seed: int, what: str) -> dict[str, dict[str, float]]:
    if r.dim() != 3 or r.shape[-1] != 3:
        raise ValueError(f"{what}: r must have shape [n_walkers, n_elec, 3], got {list(r.shape)}")
    d_rtol, d_atol = default_tolerances(r.dtype, EQUIVARIANCE_TOLERANCES, what)
    rtol, atol = (d_rtol if rtol is None else rtol), (d_atol if atol is None else atol)
    with torch.no_grad():
        sign0, logabs0 = (t.detach() for t in wavefunction(r))
    if not (torch.isfinite(logabs0).all() and (sign0.abs() == 1).all()):
        raise ValueError(f"{what}: the wavefunction is zero or not finite at some walkers of r; "
                         "draw r away from nodes and coalescence points")
    errors: dict[str, dict[str, float]] = {}
    failures = []
    for kind, perm in _permutations(groups, r.shape[1], seed, n_random, even_permutations):
        with torch.no_grad():
            sign, logabs = wavefunction(r[:, perm])
        expected = sign0 * (_parity(perm) if antisymmetric else 1)
        wrong = (sign != expected).sum().item()
        err = relative_error(logabs, logabs0, atol / rtol)[0]
        entry = errors.setdefault(kind, {"wrong_signs": 0, "logabs": 0.0})
        entry["wrong_signs"] = max(entry["wrong_signs"], wrong)
        entry["logabs"] = max(entry["logabs"], err)
        if wrong or err > rtol:
            failures.append((kind, tuple(perm), wrong, err, rtol))
    if failures:
        lines = [f"  {kind} {perm}: {wrong} walker(s) with a wrong sign, log|psi| error "
                 f"{err:.2e} (tolerance {tol:.0e})"
                 for kind, perm, wrong, err, tol in failures[:10]]
        more = f"\n  ... and {len(failures) - 10} more" if len(failures) > 10 else ""
        raise SymmetryAssertionError(f"{what} failed for {len(failures)} permutation(s):\n"
                                     + "\n".join(lines) + more, errors, failures)
    return errors


def assert_antisymmetric(
    wavefunction: Wavefunction,
    r: Tensor,
    *,
    n_up: int | None = None,
    n_down: int | None = None,
    even_permutations: bool = True,
    n_random: int = 4,
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Assert that same-spin exchanges multiply psi by the parity of the permutation.

    Checked on every walker: every transposition of two same-spin electrons (sign flips,
    ``log|psi|`` kept); every 3-cycle within a spin and a pair of swaps in both spins (even: sign
    kept); ``n_random`` random permutations within the spins (sign times their parity).

    Args:
        wavefunction: ``wavefunction(r) -> (sign, logabs)``, each [n_walkers].
        r: electron positions [n_walkers, n_elec, 3], spin-up first; away from nodes.
        n_up, n_down: electrons per spin (default: ``wavefunction.n_up`` / ``.n_down``).
        even_permutations: also check even permutations (default True).
        n_random: random within-spin permutations (default 4).
        rtol, atol: tolerance of ``log|psi|`` as in :func:`~equivar.testing.assert_equivariant`
            (default float64 ``1e-10, 1e-12``; float32 ``1e-5, 1e-6``). Signs must match exactly.
        seed: seed of the random permutations.

    Returns:
        ``{kind: {"wrong_signs": worst count, "logabs": worst relative error}}`` for kinds
        ``"transposition"``, ``"even_permutation"``, ``"random_permutation"``.

    Raises:
        SymmetryAssertionError: listing each failing permutation with its errors.
        ValueError: bad ``r`` or spin counts, or psi zero/non-finite at a walker.

    Example:
        >>> from equivar.models import build  # doctest: +SKIP
        >>> psi = build("wavefunction", system="Li", preset="S", dtype="float64")  # doctest: +SKIP
        >>> assert_antisymmetric(psi, torch.randn(8, 3, 3, dtype=torch.float64))  # doctest: +SKIP
    """
    n_up, n_down = _spins(wavefunction, r, n_up, n_down)
    groups = [range(0, n_up), range(n_up, n_up + n_down)]
    return _check(wavefunction, r, groups, True, even_permutations, n_random, rtol, atol, seed,
                  "assert_antisymmetric")


def assert_symmetric(
    wavefunction: Wavefunction,
    r: Tensor,
    *,
    n_random: int = 4,
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Assert that psi of identical bosons is unchanged by *any* permutation of the particles.

    Same checks, arguments and return value as :func:`assert_antisymmetric`, with all particles
    in one group and the sign required to stay the same.
    """
    return _check(wavefunction, r, [range(r.shape[1])] if r.dim() == 3 else [], False, True,
                  n_random, rtol, atol, seed, "assert_symmetric")
