"""Permutation-invariant readouts: per-atom quantities pooled to per-structure ones."""

from __future__ import annotations

import torch

from equivar.nn.scatter import scatter_mean, scatter_sum

POOLINGS = ("sum", "mean")


def pool(x: torch.Tensor, batch: torch.Tensor, n_graphs: int, reduce: str = "sum") -> torch.Tensor:
    """Sum (extensive targets) or mean (intensive targets) of node rows per graph.

    Both are invariant under any permutation of the atoms within a graph.

    Shapes:
        x: [n_nodes, ...], batch: [n_nodes] -> [n_graphs, ...]
    """
    if reduce == "sum":
        return scatter_sum(x, batch, n_graphs)
    if reduce == "mean":
        return scatter_mean(x, batch, n_graphs)
    raise ValueError(f"unknown pooling {reduce!r}; choose one of {POOLINGS}")
