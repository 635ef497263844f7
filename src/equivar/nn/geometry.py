"""Edge vectors from positions, cell and integer shifts (the convention of ``equivar.keys``)."""

from __future__ import annotations

import torch


def edge_vectors(
    pos: torch.Tensor,
    edge_index: torch.Tensor,
    shifts: torch.Tensor,
    cell: torch.Tensor,
    batch: torch.Tensor,
) -> torch.Tensor:
    """``pos[j] - pos[i] + shifts @ cell[graph of i]`` for every edge ``(j -> i)``.

    Differentiable in ``pos`` and ``cell`` (forces and stress come from here).

    Shapes:
        pos: [n_nodes, 3], edge_index: [2, n_edges], shifts: [n_edges, 3],
        cell: [n_graphs, 3, 3], batch: [n_nodes] -> [n_edges, 3]
    """
    sender, receiver = edge_index[0], edge_index[1]
    edge_cell = cell[batch[receiver]]  # [n_edges, 3, 3]
    offset = torch.bmm(shifts.to(pos.dtype).unsqueeze(1), edge_cell).squeeze(1)  # [n_edges, 3]
    return pos[sender] - pos[receiver] + offset
