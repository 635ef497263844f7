"""Radius graphs with periodic boundary conditions, built on vesin's cell lists.

The edge convention is the package's (see :mod:`equivar.keys`): ``edge_index[0]`` is the sender
``j``, ``edge_index[1]`` the receiver ``i`` and

    edge_vec = pos[j] - pos[i] + shifts @ cell

vesin returns pairs ``(i, j, S)`` with distance vector ``pos[j] - pos[i] + S @ box`` (checked
numerically in ``tests/data/test_neighbors.py``), so its ``i`` is our receiver, its ``j`` our sender
and its ``S`` our ``shifts`` with no sign change.

vesin cannot be asked everything: some flat or elongated shapes make its cell grid collapse (the
process dies of SIGFPE) and a huge cutoff on a small cell fills the memory. Every graph is
planned first by :mod:`equivar.data.limits`, which widens the search radius where the grid would
collapse and refuses, with the numbers, a graph estimated above the edge budget.
"""

from __future__ import annotations

import numpy as np
import torch

from equivar.data.limits import check_edge_budget, plan_search
from equivar.data.validation import check_cell, check_cutoff, check_positions

__all__ = ["radius_graph"]

_NUMPY_DTYPES = {torch.float64: np.float64, torch.float32: np.float32, torch.float16: np.float16}


def radius_graph(
    pos: torch.Tensor,
    cutoff: float,
    cell: torch.Tensor | None = None,
    pbc: torch.Tensor | None = None,
    batch: torch.Tensor | None = None,
    *,
    max_edges: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """All pairs closer than ``cutoff``, periodic images included, as a directed edge list.

    Every pair appears in both directions (``j -> i`` with shift ``s`` and ``i -> j`` with ``-s``).
    Cutoffs larger than the cell are handled: one neighbour may appear through several images and
    an atom may neighbour its own images; the zero-shift self pair never appears. The work is
    done per graph on the CPU by ``vesin.NeighborList`` (cell lists, linear in the number of atoms);
    CUDA tensors go through host memory and the result comes back on ``pos.device``.

    Args:
        pos: Cartesian positions (Angstrom).
        cutoff: neighbour cutoff radius (Angstrom), finite and positive; pairs with distance
            strictly below it are kept.
        cell: lattice vectors as rows, one cell shared by all graphs or one per graph. Default
            ``None``: no periodicity.
        pbc: periodicity along each lattice vector, shared or per graph. Default ``None``: periodic
            along every nonzero lattice vector of ``cell`` (nothing when ``cell`` is ``None``).
        batch: graph index of each node, sorted (as PyG's ``Batch`` produces). Default ``None``:
            one graph.
        max_edges: refuse (``ValueError``) when the estimated number of edges exceeds this.
            Default ``None``: ``$EQUIVAR_MAX_EDGES``, else 5e8 or what the available memory
            holds (see :mod:`equivar.data.limits`), so that a huge cutoff on a small cell fails
            with a message instead of exhausting the machine's memory.

    Returns:
        ``(edge_index, shifts)``: ``edge_index`` int64 on ``pos.device``, sorted by receiver then
        sender (ties between images of one pair ordered by shift, so the order is deterministic);
        ``shifts`` in ``pos.dtype`` holding integer lattice translations of the sender.

    Raises:
        ValueError: a bad cutoff, positions (non-finite, or beyond 1e5 Angstrom), cell, pbc or
            batch; or a graph whose estimated edge count exceeds ``max_edges``.

    Shapes:
        pos: ``[n_nodes, 3]``; cell: ``[3, 3]`` or ``[n_graphs, 3, 3]``; pbc: ``[3]`` or
        ``[n_graphs, 3]``; batch: ``[n_nodes]``; edge_index: ``[2, n_edges]``;
        shifts: ``[n_edges, 3]``.

    Example:
        >>> pos = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
        >>> edge_index, shifts = radius_graph(pos, cutoff=1.5)
        >>> edge_index.tolist()
        [[1, 0], [0, 1]]
    """
    if not isinstance(pos, torch.Tensor):
        raise TypeError(f"pos must be a torch.Tensor, got {type(pos).__name__}")
    if not pos.is_floating_point():
        raise TypeError(f"pos must be a floating-point tensor, got {pos.dtype}")
    check_cutoff(cutoff)
    pos_np = pos.detach().to("cpu", torch.float64).numpy()  # [n_nodes, 3]
    check_positions(pos_np)
    n_nodes = pos_np.shape[0]

    counts = _graph_sizes(batch, n_nodes, cell)  # [n_graphs]
    n_graphs = len(counts)
    cells, pbcs = _cells_and_pbc(cell, pbc, n_graphs)  # [n_graphs, 3, 3], [n_graphs, 3]

    # Plan every graph before any search: vesin's radius (never a collapsed cell grid, which
    # kills the process) and the edges it will materialise (refused above the budget).
    plans, pairs, start = [], 0.0, 0
    for g in range(n_graphs):
        n_g = int(counts[g])
        if n_g > 1 or (n_g == 1 and pbcs[g].any()):
            part = pos_np[start : start + n_g]  # [n_g, 3]
            radius, estimate = plan_search(part, cells[g], pbcs[g], cutoff)
            pairs += estimate
            plans.append((g, start, n_g, radius))
        start += n_g
    if plans:
        check_edge_budget(pairs, _describe(counts, cells, pbcs, cutoff), max_edges)

    senders, receivers, shift_parts = [], [], []
    for g, start, n_g, radius in plans:
        graph = pos_np[start : start + n_g]
        j, i, s = _single_graph(graph, cutoff, cells[g], pbcs[g], radius)
        senders.append(j + start)
        receivers.append(i + start)
        shift_parts.append(s)

    if senders:
        edge_index = np.stack([np.concatenate(senders), np.concatenate(receivers)])
        shifts = np.concatenate(shift_parts)
    else:
        edge_index = np.zeros((2, 0), dtype=np.int64)
        shifts = np.zeros((0, 3), dtype=np.int64)
    # convert in numpy: torch's multithreaded casts are slow on busy machines (OpenMP wake-ups)
    np_dtype = _NUMPY_DTYPES.get(pos.dtype)
    shifts_t = torch.from_numpy(shifts.astype(np_dtype)) if np_dtype else torch.from_numpy(shifts)
    return (
        torch.from_numpy(edge_index).to(pos.device),  # [2, n_edges]
        shifts_t.to(device=pos.device, dtype=pos.dtype),  # [n_edges, 3]
    )


def _describe(counts: np.ndarray, cells: np.ndarray, pbcs: np.ndarray, cutoff: float) -> str:
    """The system, in words, for the edge-budget message."""
    what = f"{int(counts.sum())} atoms, cutoff {float(cutoff):g} Angstrom"
    if len(counts) > 1:
        return f"{what}, {len(counts)} graphs"
    if pbcs[0].all():
        return f"{what}, periodic cell of volume {abs(np.linalg.det(cells[0])):.3g} Angstrom^3"
    return what + (f", periodic along {np.flatnonzero(pbcs[0]).tolist()}" if pbcs[0].any()
                   else "")


def _single_graph(
    pos: np.ndarray, cutoff: float, cell: np.ndarray, pbc: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted ``(sender, receiver, shifts)`` of one graph, local indices, from vesin searching
    within ``radius`` (``cutoff``, or larger where vesin's cell grid would collapse: the pairs
    beyond ``cutoff`` are then dropped, as vesin drops them, on the squared distance)."""
    import vesin  # local: keeps `import equivar.data` light

    calculator = vesin.NeighborList(cutoff=float(radius), full_list=True)
    box = cell if pbc.any() else np.zeros((3, 3))
    wider = radius > cutoff
    # copy=False: views into vesin's buffers, valid while `calculator` lives; gathered below
    i, j, s, *vectors = calculator.compute(
        points=np.ascontiguousarray(pos),
        box=box,
        periodic=pbc.tolist(),
        quantities="ijSD" if wider else "ijS",
        copy=False,
    )
    if wider:
        d = vectors[0]  # [n_pairs, 3]
        keep = np.flatnonzero(np.einsum("ex,ex->e", d, d) < float(cutoff) * float(cutoff))
        i, j, s = np.take(i, keep), np.take(j, keep), np.take(s, keep, axis=0)
    receiver = i.astype(np.int64)  # [n_edges]
    sender = j.astype(np.int64)  # [n_edges]
    order = _edge_order(receiver, sender, s, len(pos))  # [n_edges]
    # np.take: much faster than fancy indexing for the [n_edges, 3] gather
    return np.take(sender, order), np.take(receiver, order), np.take(s, order, axis=0)


def _edge_order(receiver: np.ndarray, sender: np.ndarray, shifts: np.ndarray, n: int) -> np.ndarray:
    """Permutation sorting edges by (receiver, sender, shift).

    The three are packed into one int64 key when it fits (always, short of ~10^8 atoms); keys are
    unique (vesin never repeats a pair and image), so an unstable sort gives a deterministic order.
    """
    if len(receiver) == 0:
        return np.zeros(0, dtype=np.int64)
    low, high = int(shifts.min()), int(shifts.max())  # flat reductions: cheap
    width = high - low + 1
    n_shift = width**3
    if n * n * n_shift < 2**62:
        key = receiver * n + sender  # [n_edges]
        for k in range(3):
            key = key * width + (shifts[:, k].astype(np.int64) - low)
        return np.argsort(key)
    return np.lexsort((shifts[:, 2], shifts[:, 1], shifts[:, 0], sender, receiver))


def _graph_sizes(batch: torch.Tensor | None, n_nodes: int, cell: torch.Tensor | None) -> np.ndarray:
    """Nodes per graph from a sorted ``batch`` vector (``[n_graphs]`` int64)."""
    n_cells = int(cell.shape[0]) if cell is not None and cell.dim() == 3 else 1
    if batch is None:
        if n_cells != 1:
            raise ValueError(f"cell has {n_cells} graphs but no batch vector was given")
        return np.array([n_nodes], dtype=np.int64)
    if not isinstance(batch, torch.Tensor):
        raise TypeError(f"batch must be a torch.Tensor, got {type(batch).__name__}")
    b = batch.detach().to("cpu", torch.int64).numpy()  # [n_nodes]
    if b.shape != (n_nodes,):
        raise ValueError(f"batch must have shape [{n_nodes}] (one per node), got {tuple(b.shape)}")
    if n_nodes and (b.min() < 0 or np.any(np.diff(b) < 0)):
        raise ValueError("batch must be non-negative and sorted (graphs stored contiguously)")
    n_graphs = max(int(b.max()) + 1 if n_nodes else 0, n_cells)
    if cell is not None and cell.dim() == 3 and n_cells != n_graphs:
        raise ValueError(f"cell has {n_cells} graphs but batch names {n_graphs}")
    return np.bincount(b, minlength=n_graphs)


def _cells_and_pbc(
    cell: torch.Tensor | None, pbc: torch.Tensor | None, n_graphs: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-graph cells ``[n_graphs, 3, 3]`` (float64) and pbc ``[n_graphs, 3]`` (bool), checked."""
    if cell is None:
        if pbc is not None and bool(torch.as_tensor(pbc).any()):
            raise ValueError("pbc is True along some direction but no cell was given")
        return np.zeros((n_graphs, 3, 3)), np.zeros((n_graphs, 3), dtype=bool)
    cells = torch.as_tensor(cell).detach().to("cpu", torch.float64).numpy()
    if cells.shape == (3, 3):
        cells = np.broadcast_to(cells, (n_graphs, 3, 3))
    if cells.shape != (n_graphs, 3, 3):
        raise ValueError(f"cell must have shape [3, 3] or [{n_graphs}, 3, 3], got {cells.shape}")
    if pbc is None:
        pbcs = np.linalg.norm(cells, axis=-1) > 0  # [n_graphs, 3]
    else:
        pbcs = torch.as_tensor(pbc).detach().to("cpu").numpy().astype(bool)
        if pbcs.shape == (3,):
            pbcs = np.broadcast_to(pbcs, (n_graphs, 3))
        if pbcs.shape != (n_graphs, 3):
            raise ValueError(f"pbc must have shape [3] or [{n_graphs}, 3], got {pbcs.shape}")
    for g in range(n_graphs):
        check_cell(cells[g], pbcs[g])
    return cells, pbcs
