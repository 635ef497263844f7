"""Reading a model's tensors out of a PyG batch, with errors that name what is wrong."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from equivar import keys


@dataclass
class GraphInputs:
    """The tensors a model reads from a batch (defaults filled in for optional fields).

    Shapes:
        pos [n_nodes, 3], z [n_nodes], edge_index [2, n_edges], shifts [n_edges, 3],
        cell [n_graphs, 3, 3], pbc [n_graphs, 3], batch [n_nodes], total_charge [n_graphs],
        spin [n_graphs]
    """

    pos: torch.Tensor
    z: torch.Tensor
    edge_index: torch.Tensor
    shifts: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    batch: torch.Tensor
    total_charge: torch.Tensor
    spin: torch.Tensor

    @property
    def n_graphs(self) -> int:
        return self.cell.shape[0]


def _get(data, key: str, required: bool = True):
    value = getattr(data, key, None) if not isinstance(data, dict) else data.get(key)
    if value is None and required:
        raise ValueError(
            f"the batch has no field {key!r}; build graphs with equivar.data.from_ase or "
            f"equivar.data.read so that {key!r} is present"
        )
    return value


def parameter_dtype(module: torch.nn.Module) -> torch.dtype | None:
    """The dtype of ``module``'s first floating parameter (None if it has none)."""
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype
    return None


def read_inputs(data, dtype: torch.dtype | None = None) -> GraphInputs:
    """Extract and check the structure fields of a Data/Batch (or a dict of tensors).

    Missing optional fields get defaults: one graph (``batch`` zeros), no cell (zeros, no pbc),
    neutral singlet (``total_charge`` 0, ``spin`` 1). Shapes are checked without reading values,
    so this costs no device synchronisation. With ``dtype`` (the model's), positions, cell,
    shifts, charge and spin come back in it: a float32 batch runs through a float64 model (and
    the other way round, at the model's precision) instead of failing deep inside a layer.

    Raises:
        ValueError: a required field is missing or has the wrong shape or dtype.
    """
    pos = _get(data, keys.POSITIONS)
    z = _get(data, keys.ATOMIC_NUMBERS)
    edge_index = _get(data, keys.EDGE_INDEX)
    if pos.dim() != 2 or pos.shape[1] != 3:
        raise ValueError(f"{keys.POSITIONS!r} must have shape [n_nodes, 3], got {list(pos.shape)}")
    if not pos.is_floating_point():
        raise TypeError(f"{keys.POSITIONS!r} must be a float tensor, got {pos.dtype}")
    if dtype is not None and pos.dtype != dtype:
        pos = pos.to(dtype)
    n_nodes = pos.shape[0]
    if n_nodes == 0:
        raise ValueError("the batch is empty: it has no atoms")
    if z.shape != (n_nodes,):
        raise ValueError(
            f"{keys.ATOMIC_NUMBERS!r} must have shape [{n_nodes}] to match positions, "
            f"got {list(z.shape)}"
        )
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(
            f"{keys.EDGE_INDEX!r} must have shape [2, n_edges], got {list(edge_index.shape)}"
        )
    n_edges = edge_index.shape[1]
    shifts = _get(data, keys.EDGE_SHIFTS, required=False)
    if shifts is None:
        shifts = pos.new_zeros((n_edges, 3))
    elif shifts.shape != (n_edges, 3):
        raise ValueError(
            f"{keys.EDGE_SHIFTS!r} must have shape [{n_edges}, 3], got {list(shifts.shape)}"
        )
    batch = _get(data, keys.BATCH, required=False)
    cell = _get(data, keys.CELL, required=False)
    if batch is None:
        batch = torch.zeros(n_nodes, dtype=torch.long, device=pos.device)
        n_graphs = 1 if cell is None else cell.reshape(-1, 3, 3).shape[0]
    else:
        n_graphs = int(getattr(data, "num_graphs", 0) or 0) or (
            cell.reshape(-1, 3, 3).shape[0] if cell is not None else 1
        )
    if cell is None:
        cell = pos.new_zeros((n_graphs, 3, 3))
    cell = cell.reshape(-1, 3, 3).to(pos.dtype)
    if cell.shape[0] != n_graphs:
        raise ValueError(f"{keys.CELL!r} has {cell.shape[0]} cells for {n_graphs} graphs")
    pbc = _get(data, keys.PBC, required=False)
    pbc = (
        torch.zeros((n_graphs, 3), dtype=torch.bool, device=pos.device)
        if pbc is None
        else pbc.reshape(-1, 3)
    )
    total_charge = _get(data, keys.TOTAL_CHARGE, required=False)
    total_charge = (
        pos.new_zeros(n_graphs) if total_charge is None else total_charge.reshape(-1).to(pos.dtype)
    )
    spin = _get(data, keys.SPIN, required=False)
    spin = pos.new_ones(n_graphs) if spin is None else spin.reshape(-1).to(pos.dtype)
    for name, value in ((keys.TOTAL_CHARGE, total_charge), (keys.SPIN, spin)):
        if value.shape[0] != n_graphs:
            raise ValueError(f"{name!r} must have one value per graph ({n_graphs}), got "
                             f"{value.shape[0]}")
    return GraphInputs(pos, z, edge_index, shifts, cell, pbc, batch, total_charge, spin)
