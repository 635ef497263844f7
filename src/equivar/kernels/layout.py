"""Edge orderings the fused kernels walk: edges grouped by receiver and by sender (CSR)."""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class EdgeLayout:
    """A graph's edges in compressed-sparse-row order, both ways.

    ``by_receiver = (rowptr, eid, sender)``: the edges into node ``i`` are ``eid[rowptr[i]:
    rowptr[i+1]]`` (indices into the caller's edge order, which is never permuted) and their
    senders ``sender[rowptr[i]:rowptr[i+1]]``; ``by_sender`` likewise with receivers.
    Computed once per graph and shared by every layer and by the backward pass.

    Shapes:
        sender, receiver: [n_edges]; rowptr: [n_nodes + 1]; eid, neighbour: [n_edges] (int32)
    """

    n_nodes: int
    n_edges: int
    sender: torch.Tensor
    receiver: torch.Tensor
    by_receiver: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    by_sender: tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _csr(key: torch.Tensor, other: torch.Tensor, n_nodes: int, what: str):
    counts = torch.bincount(key, minlength=n_nodes)  # [>= n_nodes]
    if counts.numel() != n_nodes:
        raise ValueError(f"edge_index has a {what} >= n_nodes = {n_nodes}")
    rowptr = torch.zeros(n_nodes + 1, dtype=torch.int64, device=key.device)
    torch.cumsum(counts, 0, out=rowptr[1:])
    order = torch.argsort(key, stable=True)  # [n_edges] edge ids grouped by key
    return rowptr.to(torch.int32), order.to(torch.int32), other[order].to(torch.int32)


def edge_layout(edge_index: torch.Tensor, n_nodes: int) -> EdgeLayout:
    """Build the :class:`EdgeLayout` of ``edge_index`` (sender row 0, receiver row 1).

    Edges may come in any order; isolated nodes and empty edge sets are fine.

    Raises:
        ValueError: for a malformed ``edge_index`` or indices outside ``[0, n_nodes)``.
    """
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index must be [2, n_edges], got {tuple(edge_index.shape)}")
    if edge_index.shape[1] >= 2**31 - 1 or n_nodes >= 2**31 - 1:
        raise ValueError("the fused convolution indexes edges and nodes with int32")
    sender, receiver = edge_index[0].long(), edge_index[1].long()
    if sender.numel() and int(torch.minimum(sender.min(), receiver.min())) < 0:
        raise ValueError("edge_index has negative entries")
    return EdgeLayout(
        n_nodes=int(n_nodes),
        n_edges=int(sender.numel()),
        sender=sender.to(torch.int32),
        receiver=receiver.to(torch.int32),
        by_receiver=_csr(receiver, sender, n_nodes, "receiver"),
        by_sender=_csr(sender, receiver, n_nodes, "sender"),
    )


class _LastLayout:
    """Remembers the layout of the last ``edge_index`` seen, so the layers of one forward pass
    (which all receive the same tensor) build it once. Keyed on the tensor object, its version
    counter (in-place edits) and ``n_nodes``; holds only a weak reference to the tensor."""

    def __init__(self) -> None:
        self._ref = None
        self._key: tuple = ()
        self._layout: EdgeLayout | None = None

    def get(self, edge_index: torch.Tensor, n_nodes: int) -> EdgeLayout:
        """:func:`edge_layout` of ``edge_index``, reused while the same unmodified tensor and
        ``n_nodes`` come back (the layers of one forward pass build it once)."""
        key = (edge_index._version, int(n_nodes), edge_index.device)
        if self._ref is not None and self._ref() is edge_index and self._key == key:
            return self._layout
        layout = edge_layout(edge_index, n_nodes)
        self._ref, self._key, self._layout = weakref.ref(edge_index), key, layout
        return layout


cached_edge_layout = _LastLayout().get
