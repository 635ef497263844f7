"""Group actions on graphs and on model outputs: rotations, translations, permutations.

Every function that takes a batch returns a *new* batch (a clone); the caller's batch and its
tensors are never modified. The actions follow :mod:`equivar.keys`:

* rotation/reflection ``R`` (``R R^T = I``, ``det R = +-1``): ``pos -> pos @ R^T``,
  ``cell -> cell @ R^T`` (lattice vectors are rows), ``shifts`` unchanged, so that
  ``edge_vec -> edge_vec @ R^T``;
* translation ``t``: ``pos -> pos + t`` (per graph), nothing else moves;
* node permutation ``perm`` (kept inside each graph): new node ``k`` is old node ``perm[k]``;
  node-level fields are re-indexed and ``edge_index`` is relabelled with the inverse permutation;
* edge shuffle ``perm``: new edge ``k`` is old edge ``perm[k]``; edge-level fields are re-indexed.

Outputs are transformed by :func:`transform_output` from their :class:`~equivar.keys.FieldSpec`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from equivar.keys import BATCH, CELL, EDGE_INDEX, EDGE_SHIFTS, FIELDS, PBC, FieldSpec

__all__ = [
    "rotate",
    "translate",
    "permute_nodes",
    "shuffle_edges",
    "random_rotation",
    "random_permutation_within_graphs",
    "random_edge_permutation_within_graphs",
    "transform_output",
]

# Fields with one entry per graph; never permuted with the nodes even when n_graphs == n_nodes.
_GRAPH_KEYS = frozenset({CELL, PBC, "ptr"} | {k for k, s in FIELDS.items() if s.level == "graph"})
_NODE_KEYS = frozenset({BATCH} | {k for k, s in FIELDS.items() if s.level == "node"})


# --- helpers --------------------------------------------------------------------------------------
def num_graphs(batch) -> int:
    """The number of graphs of a ``Batch`` (``num_graphs``), or 1 for a single ``Data``."""
    n = getattr(batch, "num_graphs", None)
    if isinstance(n, int):
        return n
    graph = batch[BATCH] if BATCH in batch else None
    return int(graph.max()) + 1 if graph is not None and graph.numel() else 1


def graph_index(batch) -> Tensor:
    """The graph of every node (``batch.batch``, or zeros for a single ``Data``).

    Shapes:
        returns ``[n_nodes]`` int64.
    """
    if BATCH in batch and batch[BATCH] is not None:
        return batch[BATCH]
    return torch.zeros(batch.num_nodes, dtype=torch.long, device=batch.pos.device)


def _check_rotation(R: Tensor) -> None:
    if R.shape != (3, 3):
        raise ValueError(f"R must have shape [3, 3], got {list(R.shape)}")
    eye = torch.eye(3, dtype=torch.float64, device=R.device)
    R64 = R.detach().to(torch.float64)
    err = (R64 @ R64.T - eye).abs().max().item()
    tol = 1e-5 if R.dtype in (torch.float64, torch.float32) else 1e-2
    if err > tol:
        raise ValueError(f"R must be orthogonal (R @ R.T = I), but max|R R^T - I| = {err:.3g}")


def _check_permutation(perm: Tensor, n: int, what: str) -> Tensor:
    perm = torch.as_tensor(perm, dtype=torch.long)
    if perm.shape != (n,):
        raise ValueError(f"{what} permutation must have shape [{n}], got {list(perm.shape)}")
    if n and not torch.equal(torch.sort(perm.cpu()).values, torch.arange(n)):
        raise ValueError(f"{what} permutation must contain each index 0..{n - 1} exactly once")
    return perm


def _inverse(perm: Tensor) -> Tensor:
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel(), device=perm.device)
    return inv


def _is_node_key(batch, key: str) -> bool:
    if key in _NODE_KEYS:
        return True
    if key in _GRAPH_KEYS or "index" in key or key == "face":
        return False
    return bool(batch.is_node_attr(key))


def _is_edge_key(batch, key: str) -> bool:
    if key in (EDGE_INDEX, EDGE_SHIFTS):
        return True
    if key in _GRAPH_KEYS or key in _NODE_KEYS:
        return False
    return bool(batch.is_edge_attr(key))


# --- actions on batches ---------------------------------------------------------------------------
def rotate(batch, R: Tensor):
    """Rotate (or reflect) a batch: ``pos -> pos @ R^T``, ``cell -> cell @ R^T``.

    Known vector/tensor targets stored on the batch (e.g. ``forces``, ``stress``, ``dipole`` from
    :data:`equivar.keys.FIELDS`) are transformed as well, so that the batch stays consistent.
    ``shifts`` (integer lattice translations) do not change.

    Args:
        batch: a ``torch_geometric`` ``Data`` or ``Batch`` with ``pos`` (and optionally ``cell``).
        R: an orthogonal ``[3, 3]`` matrix (``det R = +1`` rotation, ``-1`` improper rotation).

    Returns:
        A new batch; the input is not modified.

    Shapes:
        ``R``: ``[3, 3]``; ``pos``: ``[n_nodes, 3]``; ``cell``: ``[n_graphs, 3, 3]``.

    Example:
        >>> import torch
        >>> from torch_geometric.data import Data
        >>> from equivar.testing import rotate, random_rotation
        >>> data = Data(pos=torch.randn(4, 3, dtype=torch.float64))
        >>> R = random_rotation(torch.float64, torch.Generator().manual_seed(0))
        >>> torch.allclose(rotate(data, R).pos, data.pos @ R.T)
        True
    """
    _check_rotation(R)
    new = batch.clone()
    R = R.to(dtype=batch.pos.dtype, device=batch.pos.device)
    new.pos = batch.pos @ R.T
    if CELL in batch and batch[CELL] is not None:
        new[CELL] = batch[CELL] @ R.T
    for key, spec in FIELDS.items():
        if key in batch and spec.rep != "0e" and not spec.translates:
            value = batch[key]
            if isinstance(value, Tensor) and value.is_floating_point():
                new[key] = transform_output(value, spec, R=R)
    return new


def translate(batch, t: Tensor):
    """Translate a batch: ``pos -> pos + t`` (one vector for all graphs or one per graph).

    Args:
        batch: a ``Data`` or ``Batch`` with ``pos``.
        t: ``[3]`` (same translation for every graph) or ``[n_graphs, 3]``.

    Returns:
        A new batch; the input is not modified.

    Shapes:
        ``t``: ``[3]`` or ``[n_graphs, 3]``.

    Example:
        >>> import torch
        >>> from torch_geometric.data import Data
        >>> from equivar.testing import translate
        >>> data = Data(pos=torch.zeros(2, 3))
        >>> translate(data, torch.tensor([1.0, 0.0, 0.0])).pos[:, 0].tolist()
        [1.0, 1.0]
    """
    t = torch.as_tensor(t, dtype=batch.pos.dtype, device=batch.pos.device)
    if t.shape == (3,):
        shift = t.expand_as(batch.pos)
    elif t.dim() == 2 and t.shape[1] == 3 and t.shape[0] == num_graphs(batch):
        shift = t[graph_index(batch)]  # [n_nodes, 3]
    else:
        raise ValueError(f"t must have shape [3] or [n_graphs, 3], got {list(t.shape)}")
    new = batch.clone()
    new.pos = batch.pos + shift
    return new


def permute_nodes(batch, perm: Tensor):
    """Relabel the nodes: new node ``k`` is old node ``perm[k]``.

    Every node-level field (``pos``, ``z``, ``batch``, per-node targets, ...) is re-indexed and
    every node-index field (``edge_index``, any key PyG increments by ``num_nodes``) is mapped
    through the inverse permutation, so the graph is the same graph with other labels. The
    permutation must keep every node in its own graph (so graph-level fields do not change).

    Args:
        batch: a ``Data`` or ``Batch``.
        perm: a permutation of ``range(n_nodes)``.

    Returns:
        A new batch; the input is not modified.

    Shapes:
        ``perm``: ``[n_nodes]`` int64.

    Example:
        >>> import torch
        >>> from torch_geometric.data import Data
        >>> from equivar.testing import permute_nodes
        >>> data = Data(pos=torch.arange(9.0).view(3, 3), edge_index=torch.tensor([[0], [2]]))
        >>> new = permute_nodes(data, torch.tensor([2, 0, 1]))
        >>> new.edge_index.tolist(), new.pos[0].tolist()
        ([[1], [0]], [6.0, 7.0, 8.0])
    """
    n = batch.num_nodes
    perm = _check_permutation(perm, n, "node").to(batch.pos.device)
    graph = graph_index(batch)
    if not torch.equal(graph[perm], graph):
        raise ValueError("node permutation must keep every node in its own graph "
                         "(batch.batch[perm] must equal batch.batch)")
    inv = _inverse(perm)
    new = batch.clone()
    for key in batch.keys():
        value = batch[key]
        if not isinstance(value, Tensor):
            continue
        if ("index" in key or key == "face") and not value.is_floating_point():
            new[key] = inv[value]  # relabel node indices
        elif _is_node_key(batch, key):
            dim = batch.__cat_dim__(key, value)
            new[key] = value.index_select(dim, perm)
    return new


def shuffle_edges(batch, perm: Tensor):
    """Reorder the edges: new edge ``k`` is old edge ``perm[k]`` (``edge_index``, ``shifts`` and
    every other edge-level field are re-indexed together).

    For a ``Batch`` the permutation must keep every edge in its graph (graph of the receiver),
    so that the batch can still be split back into graphs.

    Args:
        batch: a ``Data`` or ``Batch`` with ``edge_index``.
        perm: a permutation of ``range(n_edges)``.

    Returns:
        A new batch; the input is not modified.

    Shapes:
        ``perm``: ``[n_edges]`` int64.

    Example:
        >>> import torch
        >>> from torch_geometric.data import Data
        >>> from equivar.testing import shuffle_edges
        >>> data = Data(pos=torch.zeros(3, 3), edge_index=torch.tensor([[0, 1], [1, 2]]))
        >>> shuffle_edges(data, torch.tensor([1, 0])).edge_index.tolist()
        [[1, 0], [2, 1]]
    """
    edge_index = batch[EDGE_INDEX]
    n_edges = edge_index.shape[1]
    perm = _check_permutation(perm, n_edges, "edge").to(edge_index.device)
    edge_graph = graph_index(batch)[edge_index[1]]  # [n_edges]
    if not torch.equal(edge_graph[perm], edge_graph):
        raise ValueError("edge permutation must keep every edge in its own graph")
    new = batch.clone()
    for key in batch.keys():
        value = batch[key]
        if isinstance(value, Tensor) and _is_edge_key(batch, key):
            dim = batch.__cat_dim__(key, value)
            new[key] = value.index_select(dim, perm)
    return new


# --- random group elements ------------------------------------------------------------------------
def random_rotation(
    dtype: torch.dtype = torch.float64,
    generator: torch.Generator | None = None,
    inversion: bool = False,
    device: torch.device | str | None = None,
) -> Tensor:
    """A rotation matrix drawn uniformly (Haar measure) from SO(3), optionally times ``-1``.

    Drawn as the QR factor of a Gaussian matrix with the sign convention that makes it Haar
    distributed on O(3), then multiplied by ``-1`` when needed to land in SO(3).

    Args:
        dtype: dtype of the result (drawn in float64 and then cast).
        generator: a CPU ``torch.Generator`` for reproducibility.
        inversion: if True return ``-R`` (an improper rotation, ``det = -1``).
        device: device of the result.

    Returns:
        ``R`` with ``R @ R.T = I`` and ``det R = -1`` if ``inversion`` else ``+1``.

    Shapes:
        returns ``[3, 3]``.

    Example:
        >>> import torch
        >>> from equivar.testing import random_rotation
        >>> R = random_rotation(torch.float64, torch.Generator().manual_seed(0), inversion=True)
        >>> round(torch.linalg.det(R).item(), 6)
        -1.0
    """
    a = torch.randn(3, 3, dtype=torch.float64, generator=generator)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)  # Haar on O(3)
    if torch.linalg.det(q) < 0:
        q = -q  # -I has det -1 in 3D and commutes with everything: Haar on SO(3)
    if inversion:
        q = -q
    return q.to(dtype=dtype, device=device)


def random_permutation_within_graphs(batch, generator: torch.Generator | None = None) -> Tensor:
    """A random node permutation that keeps every node in its own graph.

    Args:
        batch: a ``Data`` or ``Batch``.
        generator: a CPU ``torch.Generator``.

    Returns:
        ``perm`` usable with :func:`permute_nodes`.

    Shapes:
        returns ``[n_nodes]`` int64 on the batch's device.
    """
    return _permutation_within(graph_index(batch), generator)


def random_edge_permutation_within_graphs(
    batch, generator: torch.Generator | None = None
) -> Tensor:
    """A random edge permutation that keeps every edge in its own graph (for
    :func:`shuffle_edges`).

    Shapes:
        returns ``[n_edges]`` int64 on the batch's device.
    """
    return _permutation_within(graph_index(batch)[batch[EDGE_INDEX][1]], generator)


def _permutation_within(group: Tensor, generator: torch.Generator | None) -> Tensor:
    group_cpu = group.detach().cpu().to(torch.float64)
    noise = torch.rand(group_cpu.shape, dtype=torch.float64, generator=generator)
    slots = torch.argsort(group_cpu, stable=True)  # positions, grouped by graph
    shuffled = torch.argsort(group_cpu + noise)  # items, grouped by graph, random within
    perm = torch.empty_like(slots)
    perm[slots] = shuffled  # both lists have the same group sizes, so groups are preserved
    return perm.to(group.device)


# --- actions on outputs ---------------------------------------------------------------------------
def transform_output(
    value: Tensor,
    spec: FieldSpec,
    R: Tensor | None = None,
    perm: Tensor | None = None,
    t: Tensor | None = None,
) -> Tensor:
    """Apply a group element to a model output, as its :class:`~equivar.keys.FieldSpec` says.

    The element acts as ``x -> x @ R^T + t`` followed by the node relabelling ``perm``:
    ``0e`` unchanged; ``1o`` ``v @ R^T``; ``1e`` ``det(R) v @ R^T``; ``3x3`` ``R T R^T``;
    ``translates=True`` adds ``t``; node-level outputs are re-indexed ``value[perm]``.

    Args:
        value: the output tensor.
        spec: how symmetry acts on it.
        R: orthogonal ``[3, 3]`` matrix, or None for no rotation.
        perm: node permutation (new node ``k`` = old node ``perm[k]``); ignored for graph-level.
        t: translation, ``[3]`` or broadcastable to ``value`` (e.g. ``[n_nodes, 3]``); only used
            for fields with ``spec.translates``.

    Returns:
        The transformed output (a new tensor).

    Shapes:
        ``value``: ``[n, ...]`` with ``...`` ending in ``3`` for ``1o``/``1e`` and ``3, 3`` for
        ``3x3``; ``n`` is ``n_nodes`` or ``n_graphs``.

    Example:
        >>> import torch
        >>> from equivar.keys import FIELDS, FORCES
        >>> from equivar.testing import transform_output
        >>> R = -torch.eye(3)
        >>> transform_output(torch.ones(2, 3), FIELDS[FORCES], R=R).tolist()[0]
        [-1.0, -1.0, -1.0]
    """
    out = value
    if R is not None and spec.rep != "0e":
        R = R.to(dtype=value.dtype, device=value.device)
        if spec.rep in ("1o", "1e"):
            if value.dim() < 1 or value.shape[-1] != 3:
                raise ValueError(f"a {spec.rep} field must end in a dimension of size 3, "
                                 f"got shape {list(value.shape)}")
            out = out @ R.T
            if spec.rep == "1e":
                out = out * torch.linalg.det(R.to(torch.float64)).round().to(value.dtype)
        else:  # 3x3
            if value.dim() < 2 or value.shape[-2:] != (3, 3):
                raise ValueError(f"a 3x3 field must end in dimensions [3, 3], "
                                 f"got shape {list(value.shape)}")
            out = R @ out @ R.T
    if t is not None and spec.translates:
        out = out + torch.as_tensor(t, dtype=value.dtype, device=value.device)
    if perm is not None and spec.level == "node":
        out = out.index_select(0, torch.as_tensor(perm, device=value.device))
    return out
