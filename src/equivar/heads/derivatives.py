"""Forces and stress as derivatives of the energy (conservative by construction)."""

from __future__ import annotations

import torch


def attach_strain(
    pos: torch.Tensor, cell: torch.Tensor, batch: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Apply a zero symmetric strain :math:`\epsilon` to positions and cell, to differentiate by.

    ``pos -> pos (I + eps)``, ``cell -> cell (I + eps)`` (rows are vectors), with ``eps`` the
    symmetric part of a zero ``displacement`` that requires grad. The returned tensors are equal
    to the inputs in value; :math:`\partial E / \partial \epsilon` is the negative virial.

    Shapes:
        pos: [n_nodes, 3], cell: [n_graphs, 3, 3], batch: [n_nodes]
        -> pos [n_nodes, 3], cell [n_graphs, 3, 3], displacement [n_graphs, 3, 3]
    """
    displacement = torch.zeros_like(cell).requires_grad_(True)  # [n_graphs, 3, 3]
    eps = 0.5 * (displacement + displacement.transpose(-1, -2))
    pos = pos + torch.bmm(pos.unsqueeze(1), eps[batch]).squeeze(1)  # [n_nodes, 3]
    cell = cell + torch.bmm(cell, eps)  # [n_graphs, 3, 3]
    return pos, cell, displacement


def energy_derivatives(
    energy: torch.Tensor,
    pos: torch.Tensor,
    displacement: torch.Tensor | None,
    cell: torch.Tensor,
    create_graph: bool,
) -> dict[str, torch.Tensor]:
    """Forces ``-dE/dpos`` and, when ``displacement`` is given, virial and stress.

    ``stress = dE/d(strain) / volume`` (ASE's sign; eV/Angstrom^3). Graphs with zero cell
    volume (molecules) get NaN stress: stress is undefined there, and NaN cannot be mistaken for a
    prediction.

    Args:
        energy: total energies (graph-level), differentiable in ``pos`` (and ``displacement``).
        pos: positions the energy was computed from (requires grad).
        displacement: from :func:`attach_strain`, or None for forces only.
        cell: cells (for the volume).
        create_graph: keep the graph (needed to train on forces or take second derivatives).

    Shapes:
        energy: [n_graphs], pos: [n_nodes, 3], displacement: [n_graphs, 3, 3] ->
        forces [n_nodes, 3], virial [n_graphs, 3, 3], stress [n_graphs, 3, 3]
    """
    inputs = [pos] if displacement is None else [pos, displacement]
    grads = torch.autograd.grad(
        [energy],
        inputs,
        grad_outputs=[torch.ones_like(energy)],
        create_graph=create_graph,
        allow_unused=True,
    )
    dpos = grads[0] if grads[0] is not None else torch.zeros_like(pos)
    out = {"forces": -dpos}
    if displacement is not None:
        ddisp = grads[1] if grads[1] is not None else torch.zeros_like(displacement)
        volume = torch.linalg.det(cell).abs()  # [n_graphs]
        volume = torch.where(volume > 0, volume, torch.full_like(volume, float("nan")))
        out["virial"] = -ddisp
        out["stress"] = ddisp / volume.reshape(-1, 1, 1)
    return out
