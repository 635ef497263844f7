"""Sums and means of rows onto segments (nodes or graphs), the only reductions blocks use.

They live at the bottom of the package (the kernels sum messages onto receivers with them) and
are re-exported by :mod:`equivar.nn.scatter` for the blocks above.
"""

from __future__ import annotations

import torch


def scatter_sum(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """Sum rows of ``src`` that share an ``index`` (order-independent up to float rounding).

    Args:
        src: values to sum.
        index: target row of each source row.
        dim_size: number of target rows (rows with no source stay zero).

    Shapes:
        src: [n, ...], index: [n] -> [dim_size, ...]
    """
    out = src.new_zeros((dim_size, *src.shape[1:]))
    # scatter_add on a broadcast view of the index (no copy), not index_add: torch.compile's CPU
    # backend (torch 2.13) fails to generate code for index_add into a single row (n_graphs = 1).
    expanded = index.reshape(-1, *([1] * (src.dim() - 1))).expand_as(src)
    return out.scatter_add(0, expanded, src)


def scatter_mean(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """Mean of rows of ``src`` that share an ``index``; empty segments give zero.

    Shapes:
        src: [n, ...], index: [n] -> [dim_size, ...]
    """
    total = scatter_sum(src, index, dim_size)
    count = scatter_sum(torch.ones_like(index, dtype=src.dtype), index, dim_size)
    count = count.clamp(min=1).reshape(dim_size, *([1] * (src.dim() - 1)))
    return total / count
