"""What the neighbour search can be asked for, checked before vesin runs.

vesin's cell list (0.6) fails in two ways that no Python exception can catch, so both are
prevented here, from a few numbers computed in microseconds:

1. **Its cell grid collapses and the process dies of SIGFPE.** vesin sizes the grid as
   ``trunc(extent / cutoff)`` cells per direction (the bounding box along non-periodic
   directions, the distance between faces along periodic ones) and, beyond 1e5 cells, shrinks
   it "keeping the ratios": for a flat or elongated extent (an atom 1e6 Angstrom away, a
   400 x 400 Angstrom planar structure with a 1 Angstrom search radius) one direction truncates
   to 0 cells and its integer division by zero kills the interpreter. :func:`plan_search`
   replays vesin's arithmetic (checked against vesin 0.6.2 on 110 shapes, 48 of which crash)
   and widens the search radius just enough that the grid stays whole; callers keep the pairs
   within the real cutoff.
2. **It materialises every pair**, so a 1000 Angstrom cutoff on a 3 Angstrom periodic cell asks
   for 1e8 edges per atom pair and grows memory until the machine kills the process.
   :func:`plan_search` estimates the pairs from the density and :func:`check_edge_budget`
   refuses, naming the numbers, above a limit (default: 5e8 edges, or what the available
   memory holds at :data:`BYTES_PER_EDGE`; ``max_edges=`` or ``$EQUIVAR_MAX_EDGES`` overrides
   it).

Coordinates beyond :data:`MAX_COORDINATE` are refused earlier, by
:func:`equivar.data.validation.check_positions`.
"""

from __future__ import annotations

import math
import os

import numpy as np

__all__ = ["BYTES_PER_EDGE", "MAX_COORDINATE", "MAX_EDGES", "check_edge_budget", "plan_search"]

#: |coordinate| (Angstrom) above which positions are refused as absurd (an exploded simulation,
#: a unit error): beyond it vesin's cell indices and float64 distances lose their meaning.
MAX_COORDINATE = 1e5
#: Edges a neighbour list may hold by default (~64 GB at :data:`BYTES_PER_EDGE`).
MAX_EDGES = 500_000_000
#: Peak memory of :func:`equivar.data.radius_graph` per edge (measured: ~110 bytes in float64;
#: vesin's pairs and shifts, the sort keys, the gathered and converted copies).
BYTES_PER_EDGE = 128
#: vesin's MAX_NUMBER_OF_CELLS (vesin/src/cpu_cell_list.cpp)
_VESIN_MAX_CELLS = 1e5
_ENV = "EQUIVAR_MAX_EDGES"
#: estimates below this many edges pass without reading the available memory
_SMALL = 2_000_000


def _vesin_matrix(cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """vesin's box matrix: non-periodic rows replaced by unit vectors orthogonal to the periodic
    ones (the identity when nothing is periodic), as in vesin/src/types.hpp. ``[3, 3]``"""
    m = np.array(cell, dtype=np.float64)
    periodic = np.flatnonzero(pbc)
    if len(periodic) == 0:
        return np.eye(3)
    if len(periodic) == 1:
        k = int(periodic[0])
        a = m[k]
        b = np.array([0.0, 1.0, 0.0])
        if abs(a @ b) / np.linalg.norm(a) > 0.9:
            b = np.array([0.0, 0.0, 1.0])
        c = np.cross(a, b)
        c /= np.linalg.norm(c)
        b = np.cross(c, a)
        m[(k + 1) % 3], m[(k + 2) % 3] = b / np.linalg.norm(b), c
    elif len(periodic) == 2:
        c = np.cross(m[periodic[0]], m[periodic[1]])
        m[3 - int(periodic.sum())] = c / np.linalg.norm(c)
    return m


def _grid(extents: list[float], radius: float) -> list[float]:
    """Cells per direction that vesin would use (a 0 = SIGFPE), operation for operation."""
    n = [max(math.trunc(e / radius), 1.0) for e in extents]
    if n[0] * n[1] * n[2] > _VESIN_MAX_CELLS:  # vesin's rescaling "keeping the ratios"
        ratio_xy, ratio_yz = n[0] / n[1], n[1] / n[2]
        n2 = math.trunc(np.cbrt(_VESIN_MAX_CELLS / (ratio_xy * ratio_yz * ratio_yz)))
        n1 = math.trunc(ratio_yz * n2)
        n = [math.trunc(ratio_xy * n1), n1, n2]
    return [float(v) for v in n]


def _whole(extents: list[float], radius: float) -> bool:
    """Whether vesin's grid at ``radius`` needs no rescaling (so has no empty direction)."""
    return math.prod(max(math.trunc(e / radius), 1.0) for e in extents) <= _VESIN_MAX_CELLS


def plan_search(
    pos: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float
) -> tuple[float, float]:
    """``(radius, pairs)``: the radius to give vesin and about how many directed pairs it will
    return, for one structure.

    ``radius`` is ``cutoff`` unless vesin's cell grid would have a direction with 0 cells (the
    SIGFPE); then it is the smallest larger radius whose grid needs no rescaling (bisection:
    the cell count only falls as the radius grows), and callers drop the pairs beyond
    ``cutoff``. ``pairs`` is ``n^2 (4/3 pi r^3) / V`` for a cell periodic in 3D of volume
    ``V``; otherwise ``n^2`` times the fraction of the box that a sphere of radius ``r``
    covers (images counted along periodic directions, at most the whole extent along the
    others), at most ``n (n - 1)`` for a molecule. It is an average: atoms clustered far above
    the mean density have more pairs.

    Raises:
        ValueError: an atom so many cells outside a periodic cell that vesin's int32 cell index
            would overflow (silently wrong neighbours).

    Shapes:
        pos: ``[n_nodes, 3]``; cell: ``[3, 3]``; pbc: ``[3]``.
    """
    periodic = [bool(v) for v in pbc]
    n = float(len(pos))
    low = pos.min(axis=0).tolist() if len(pos) else [0.0] * 3
    span = [h - lo for h, lo in zip(pos.max(axis=0).tolist(), low, strict=True)] if len(pos) \
        else [0.0] * 3  # fmt: skip
    # vesin's distances_between_faces: the bounding box along non-periodic axes (1 if flat,
    # +1 %, at least 1), the periodic lattice's face distances along periodic ones
    extents = [max((s if s >= 1e-6 else 1.0) * 1.01, 1.0) for s in span]
    matrix = None
    if any(periodic):
        matrix = _vesin_matrix(cell, pbc)
        normals = np.cross(matrix[[1, 2, 0]], matrix[[2, 0, 1]])  # [3, 3]
        faces = np.abs(np.einsum("dx,dx->d", normals, matrix)) / np.linalg.norm(normals, axis=1)
        extents = [f if p else e for f, p, e in zip(faces.tolist(), periodic, extents, strict=True)]
    radius = float(cutoff)
    if min(_grid(extents, radius)) < 1:
        lo, hi = radius, max(extents)  # at `hi` every direction has one cell
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            lo, hi = (lo, mid) if _whole(extents, mid) else (mid, hi)
            if hi - lo <= 1e-9 * hi:
                break
        radius = hi
    if matrix is not None and len(pos):
        cells = np.array(_grid(extents, radius))[pbc]  # [n_periodic]
        frac = np.abs(pos @ np.linalg.inv(matrix))[:, pbc] * cells  # [n_nodes, n_periodic]
        atom, axis = np.unravel_index(int(np.argmax(frac)), frac.shape)
        if frac[atom, axis] >= 2**30:
            raise ValueError(f"pos: atom {int(atom)} at {pos[atom].tolist()} Angstrom lies "
                             f"{frac[atom, axis]:.3g} grid cells outside the periodic cell; wrap "
                             "the positions into the cell (ase.Atoms.wrap()) first")
    if all(periodic):
        volume = abs(float(np.linalg.det(cell)))
        return radius, n * n * (4.0 / 3.0 * math.pi * radius**3) / volume
    window = math.pi / 6.0
    for p, s, e in zip(periodic, span, extents, strict=True):
        window *= 2 * radius / e if p else (min(1.0, 2 * radius / s) if s > 0 else 1.0)
    return radius, min(n * n * window, n * (n - 1)) if not any(periodic) else n * n * window


def _available_memory() -> int | None:
    """Bytes this process may still allocate: MemAvailable, bounded by a cgroup v2 limit."""
    available = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    try:
        with open("/sys/fs/cgroup/memory.max") as fh:
            limit = fh.read().strip()
        with open("/sys/fs/cgroup/memory.current") as fh:
            used = int(fh.read().strip())
        if limit != "max" and available is not None:
            available = min(available, int(limit) - used)
    except (OSError, ValueError):
        pass
    return available


def edge_limit(max_edges: int | None = None) -> tuple[float, str]:
    """``(limit, where it comes from)``: ``max_edges``, else ``$EQUIVAR_MAX_EDGES``, else the
    smaller of :data:`MAX_EDGES` and the available memory / :data:`BYTES_PER_EDGE`."""
    if max_edges is not None:
        if isinstance(max_edges, bool) or not isinstance(max_edges, (int, float)) or max_edges < 0:
            raise ValueError(f"max_edges must be a non-negative number, got {max_edges!r}")
        return float(max_edges), "max_edges"
    env = os.environ.get(_ENV)
    if env:
        try:
            value = float(env)
        except ValueError:
            raise ValueError(f"${_ENV} must be a number of edges, got {env!r}") from None
        if not value >= 0:
            raise ValueError(f"${_ENV} must be a non-negative number of edges, got {env!r}")
        return value, f"${_ENV}"
    memory = _available_memory()
    if memory is not None and memory / BYTES_PER_EDGE < MAX_EDGES:
        return max(memory, 0) / BYTES_PER_EDGE, (f"what {memory / 1e9:.3g} GB of available "
                                                  f"memory holds at ~{BYTES_PER_EDGE} bytes/edge")
    return float(MAX_EDGES), "the default"


def check_edge_budget(pairs: float, what: str, max_edges: int | None = None) -> None:
    """Raise ``ValueError`` when ``pairs`` (from :func:`plan_search`) exceeds the limit of
    :func:`edge_limit`; ``what`` describes the system for the message."""
    if max_edges is None and pairs <= _SMALL and not os.environ.get(_ENV):
        return  # a few hundred MB at most: not worth reading /proc (this runs per structure)
    limit, source = edge_limit(max_edges)
    if pairs > limit:
        raise ValueError(
            f"the neighbour list would hold about {pairs:.3g} edges ({what}), more than the "
            f"limit of {limit:.3g} edges ({source}); lower the cutoff or check the cell and "
            f"positions, or raise the limit with radius_graph(..., max_edges=N) or ${_ENV} "
            "if the machine has the memory"
        )
