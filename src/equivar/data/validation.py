"""Input checks that fail early with a message naming the field and the problem.

Every check takes numpy arrays or torch tensors (converted to float64/int64 numpy on the CPU),
returns ``None`` on success and raises ``ValueError`` (bad values or shapes) or ``TypeError`` (wrong
kind of object) otherwise. :func:`validate_structure` runs all of them on one structure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from equivar.data.limits import MAX_COORDINATE, check_edge_budget, plan_search

__all__ = [
    "MIN_DISTANCE",
    "check_atomic_numbers",
    "check_cell",
    "check_cutoff",
    "check_edge_lengths",
    "check_min_distance",
    "check_positions",
    "check_species",
    "validate_structure",
]

#: Two atoms (or an atom and a periodic image) closer than this (Angstrom) are an input error.
MIN_DISTANCE = 1e-2
#: Lattice vectors shorter than this (Angstrom) count as zero.
_ZERO_VECTOR = 1e-6
#: Periodic lattice vectors whose spanned volume is below this fraction of the product of their
#: lengths (i.e. sine of the angles ~ 0) are degenerate.
_DEGENERATE = 1e-6


def _as_numpy(x: Any, field: str, dtype: type = np.float64) -> np.ndarray:
    """``x`` as a numpy array of ``dtype`` (tensors are detached and moved to the CPU)."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except Exception as err:  # noqa: BLE001 - any conversion failure is a type problem
        raise TypeError(f"{field} must be array-like, got {type(x).__name__}") from err
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{field} must be numeric, got dtype {arr.dtype}")
    return arr.astype(dtype, copy=False)


def check_cutoff(cutoff: Any) -> None:
    """Check that ``cutoff`` is a finite positive number.

    Args:
        cutoff: neighbour cutoff radius (Angstrom).

    Returns:
        None; raises ``TypeError`` for a non-number and ``ValueError`` for ``<= 0``, NaN or inf.
    """
    if isinstance(cutoff, bool) or not isinstance(cutoff, (int, float, np.integer, np.floating)):
        raise TypeError(f"cutoff must be a real number, got {type(cutoff).__name__}")
    if not math.isfinite(float(cutoff)) or cutoff <= 0:
        raise ValueError(f"cutoff must be finite and positive, got {cutoff}")


def check_positions(pos: Any, *, allow_empty: bool = True) -> None:
    """Check that positions are a finite ``[n_nodes, 3]`` array within ``MAX_COORDINATE``
    (1e5 Angstrom) of the origin: farther atoms (an exploded simulation, a unit error) would
    break the neighbour search (vesin dies of SIGFPE on some such shapes).

    Args:
        pos: Cartesian positions (Angstrom).
        allow_empty: accept zero atoms. Default True (an empty batch has no edges);
            :func:`validate_structure` passes False.

    Shapes:
        pos: ``[n_nodes, 3]``.
    """
    arr = _as_numpy(pos, "pos")
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"pos must have shape [n_nodes, 3], got {tuple(arr.shape)}")
    if not allow_empty and arr.shape[0] == 0:
        raise ValueError("pos is empty: a structure needs at least one atom")
    bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
    if bad.size:
        raise ValueError(
            f"pos has non-finite (NaN/inf) coordinates for atom {int(bad[0])} "
            f"({arr[bad[0]].tolist()}); {bad.size} atom(s) affected"
        )
    far = np.flatnonzero((np.abs(arr) > MAX_COORDINATE).any(axis=1))
    if far.size:
        raise ValueError(
            f"pos has an absurd coordinate for atom {int(far[0])}: {arr[far[0]].tolist()} "
            f"Angstrom is beyond {MAX_COORDINATE:g} Angstrom of the origin ({far.size} atom(s) "
            "affected); check the units, or recentre / wrap the structure"
        )


def check_atomic_numbers(z: Any, n_nodes: int | None = None) -> None:
    """Check that atomic numbers are integers in 1..118, one per atom.

    Args:
        z: atomic numbers.
        n_nodes: expected number of atoms (from ``pos``). Default None: not checked.

    Shapes:
        z: ``[n_nodes]``.
    """
    arr = _as_numpy(z, "z")
    if arr.ndim != 1:
        raise ValueError(f"z must have shape [n_nodes], got {tuple(arr.shape)}")
    if n_nodes is not None and arr.shape[0] != n_nodes:
        raise ValueError(f"z has {arr.shape[0]} entries but pos has {n_nodes} atoms")
    if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
        raise ValueError(f"z must hold integer atomic numbers, got {arr.tolist()[:10]}")
    bad = np.flatnonzero((arr <= 0) | (arr > 118))
    if bad.size:
        raise ValueError(
            f"z must be in 1..118; atom {int(bad[0])} has atomic number {int(arr[bad[0]])}"
        )


def check_cell(cell: Any, pbc: Any) -> None:
    """Check a cell: finite, ``[3, 3]``, and non-degenerate along its periodic directions.

    Lattice vectors along non-periodic directions are ignored (they may be zero).

    Args:
        cell: lattice vectors as rows (Angstrom).
        pbc: periodicity along each lattice vector.

    Shapes:
        cell: ``[3, 3]``; pbc: ``[3]``.
    """
    c = _as_numpy(cell, "cell")
    p = _as_numpy(pbc, "pbc", dtype=bool)
    if c.shape != (3, 3):
        raise ValueError(f"cell must have shape [3, 3], got {tuple(c.shape)}")
    if p.shape != (3,):
        raise ValueError(f"pbc must have shape [3], got {tuple(p.shape)}")
    if not np.all(np.isfinite(c)):
        raise ValueError(f"cell has non-finite (NaN/inf) entries: {c.tolist()}")
    if not p.any():
        return
    periodic = c[p]  # [n_periodic, 3]
    lengths = np.linalg.norm(periodic, axis=1)  # [n_periodic]
    for k, length in zip(np.flatnonzero(p), lengths, strict=True):
        if length < _ZERO_VECTOR:
            raise ValueError(f"cell vector {int(k)} is zero but pbc[{int(k)}] is True")
    volume = math.sqrt(max(np.linalg.det(periodic @ periodic.T), 0.0))
    if volume < _DEGENERATE * float(np.prod(lengths)):
        raise ValueError(
            f"cell is singular along its periodic directions {np.flatnonzero(p).tolist()}: "
            f"the periodic lattice vectors are (nearly) linearly dependent "
            f"(|det| = {abs(np.linalg.det(c)):.3g}, spanned volume {volume:.3g})"
        )


def _coincident_error(i: int, j: int, shift: Any, distance: float, min_distance: float) -> str:
    where = (
        "" if not np.any(shift) else f" (periodic image shifted by {np.asarray(shift).tolist()})"
    )
    return (
        f"pos has coincident atoms: atoms {i} and {j}{where} are {distance:.3g} Angstrom apart "
        f"(minimum allowed {min_distance:g})"
    )


def check_min_distance(
    pos: Any, cell: Any = None, pbc: Any = None, min_distance: float = MIN_DISTANCE
) -> None:
    """Check that no two atoms, periodic images included, are closer than ``min_distance``.

    Uses a vesin cell list (linear cost). Its search radius is at least 1 Angstrom: much smaller
    radii make vesin's cell grid, and so the call, slow (tens of ms even for a few atoms).

    Args:
        pos: Cartesian positions (Angstrom).
        cell: lattice vectors as rows. Default None: non-periodic.
        pbc: periodicity along each lattice vector. Default None: non-periodic.
        min_distance: smallest allowed distance (Angstrom). Default ``MIN_DISTANCE`` = 0.01.

    Shapes:
        pos: ``[n_nodes, 3]``; cell: ``[3, 3]``; pbc: ``[3]``.
    """
    import vesin  # local: keeps `import equivar.data` light

    p = _as_numpy(pos, "pos")
    periodic = np.zeros(3, bool) if pbc is None else _as_numpy(pbc, "pbc", dtype=bool)
    box = np.zeros((3, 3)) if cell is None or not periodic.any() else _as_numpy(cell, "cell")
    if len(p) < 2 and not periodic.any():
        return
    check_positions(p)
    # a wider radius where vesin's cell grid would collapse (SIGFPE); the minimum is the same
    radius, pairs = plan_search(p, box, periodic, max(float(min_distance), 1.0))
    check_edge_budget(pairs / 2, f"distance check of {len(p)} atoms within {radius:.3g} Angstrom")
    calculator = vesin.NeighborList(cutoff=radius, full_list=False)
    i, j, s, d = calculator.compute(
        points=np.ascontiguousarray(p), box=box, periodic=periodic.tolist(), quantities="ijSd"
    )
    if len(d) and d.min() < min_distance:
        k = int(np.argmin(d))
        raise ValueError(_coincident_error(int(i[k]), int(j[k]), s[k], float(d[k]), min_distance))


def check_edge_lengths(
    pos: Any, edge_index: Any, shifts: Any, cell: Any, min_distance: float = MIN_DISTANCE
) -> None:
    """Coincident-atom check from an existing radius graph (free once the graph is built).

    Equivalent to :func:`check_min_distance` when the graph's cutoff exceeds ``min_distance``.

    Args:
        pos: Cartesian positions (Angstrom).
        edge_index: ``(sender j, receiver i)`` pairs.
        shifts: lattice translations of the senders.
        cell: lattice vectors as rows.
        min_distance: smallest allowed distance (Angstrom). Default 0.01.

    Shapes:
        pos: ``[n_nodes, 3]``; edge_index: ``[2, n_edges]``; shifts: ``[n_edges, 3]``;
        cell: ``[3, 3]`` or ``[1, 3, 3]``.
    """
    p = _as_numpy(pos, "pos")
    ei = _as_numpy(edge_index, "edge_index", dtype=np.int64)
    if ei.shape[1] == 0:
        return
    s = _as_numpy(shifts, "shifts")
    c = _as_numpy(cell, "cell").reshape(3, 3)
    vec = p[ei[0]] - p[ei[1]] + s @ c  # [n_edges, 3]
    lengths = np.sqrt(np.einsum("ex,ex->e", vec, vec))  # [n_edges]
    k = int(np.argmin(lengths))
    if lengths[k] < min_distance:
        i, j = int(ei[1, k]), int(ei[0, k])
        raise ValueError(_coincident_error(i, j, s[k].astype(np.int64), lengths[k], min_distance))


def validate_structure(
    pos: Any,
    z: Any,
    cell: Any = None,
    pbc: Any = None,
    *,
    cutoff: float | None = None,
    min_distance: float = MIN_DISTANCE,
    check_distances: bool = True,
) -> None:
    """Run every structure check: shapes, finiteness, atomic numbers, cell, cutoff, distances.

    Args:
        pos: Cartesian positions (Angstrom).
        z: atomic numbers (1..118).
        cell: lattice vectors as rows. Default None: non-periodic.
        pbc: periodicity along each lattice vector. Default None: all False.
        cutoff: neighbour cutoff (Angstrom), checked when given. Default None.
        min_distance: smallest allowed interatomic distance (Angstrom). Default 0.01.
        check_distances: run :func:`check_min_distance`. Default True; callers that build a radius
            graph anyway pass False and call :func:`check_edge_lengths` on it instead.

    Returns:
        None; raises ``ValueError``/``TypeError`` naming the field and the problem.

    Shapes:
        pos: ``[n_nodes, 3]``; z: ``[n_nodes]``; cell: ``[3, 3]`` (or ``[1, 3, 3]``);
        pbc: ``[3]`` (or ``[1, 3]``).

    Example:
        >>> validate_structure([[0.0, 0.0, 0.0], [0.0, 0.0, 0.005]], [1, 1])
        Traceback (most recent call last):
        ...
        ValueError: pos has coincident atoms: atoms 0 and 1 are 0.005 Angstrom apart ...
    """
    check_positions(pos, allow_empty=False)
    p = _as_numpy(pos, "pos")
    check_atomic_numbers(z, n_nodes=p.shape[0])
    if cutoff is not None:
        check_cutoff(cutoff)
    c = None
    periodic = np.zeros(3, dtype=bool)
    if pbc is not None:
        periodic = _as_numpy(pbc, "pbc", dtype=bool).reshape(-1)
        if periodic.shape != (3,):
            raise ValueError(f"pbc must have shape [3] or [1, 3], got {tuple(np.shape(pbc))}")
    if cell is not None:
        c = _as_numpy(cell, "cell")
        if c.shape == (1, 3, 3):
            c = c[0]
        check_cell(c, periodic)
    elif periodic.any():
        raise ValueError("pbc is True along some direction but no cell was given")
    if check_distances:
        check_min_distance(p, c, periodic, min_distance)


def check_species(z: Any, allowed: Iterable[int]) -> None:
    """Check that every atomic number in ``z`` is one of ``allowed`` (e.g. a model's species).

    Args:
        z: atomic numbers of a structure or batch.
        allowed: the atomic numbers that are supported.

    Returns:
        None; raises ``ValueError`` listing the unknown atomic numbers with element symbols.

    Shapes:
        z: ``[n_nodes]``.

    Example:
        >>> check_species([1, 8, 1], allowed=[1, 6, 8])
        >>> check_species([1, 17], allowed=[1, 6])
        Traceback (most recent call last):
        ...
        ValueError: z contains species the model does not know: 17 (Cl); known: 1 (H), 6 (C)
    """
    from ase.data import chemical_symbols

    def name(number: int) -> str:
        symbol = chemical_symbols[number] if 0 <= number < len(chemical_symbols) else "?"
        return f"{number} ({symbol})"

    present = {int(v) for v in np.unique(_as_numpy(z, "z", dtype=np.int64))}
    known = {int(v) for v in allowed}
    unknown = sorted(present - known)
    if unknown:
        raise ValueError(
            "z contains species the model does not know: "
            + ", ".join(name(v) for v in unknown)
            + "; known: "
            + ", ".join(name(v) for v in sorted(known))
        )
