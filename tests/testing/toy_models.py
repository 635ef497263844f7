"""Test-only toy models and hand-built batches for the tests of ``equivar.testing``.

``MorsePotential`` is conservative and E(3)/permutation equivariant by construction; every other
model breaks exactly one promise, so each check of the assertions can be shown to catch it.
Batches are built by hand (all-pairs edges for molecules, ``ase.neighborlist`` for a crystal) so
these tests do not depend on ``equivar.data``.
"""

from __future__ import annotations

import ase
import numpy as np
import torch
from ase.neighborlist import neighbor_list
from torch import Tensor, nn
from torch_geometric.data import Batch, Data

from equivar.keys import (
    ATOMIC_NUMBERS,
    BATCH,
    CELL,
    CHARGES,
    DIPOLE,
    EDGE_INDEX,
    EDGE_SHIFTS,
    ENERGY,
    FIELDS,
    FORCES,
    NODE_ENERGY,
    PBC,
    POLARIZABILITY,
    POSITIONS,
    STRESS,
    FieldSpec,
)

CUTOFF = 4.0
TORQUE = "torque"  # [n_graphs, 3] | toy axial-vector output, declared in output_specs
AUX = "aux"  # [n_graphs] | toy output with no spec: treated as invariant scalars


# --- hand-built batches ---------------------------------------------------------------------------
def _spread_positions(rng: np.random.Generator, n: int, box: float) -> np.ndarray:
    pos: list[np.ndarray] = []
    while len(pos) < n:
        candidate = rng.uniform(0.0, box, size=3)
        if all(np.linalg.norm(candidate - p) >= 0.9 for p in pos):
            pos.append(candidate)
    return np.asarray(pos)


def molecule_data(n_atoms: int, seed: int, dtype: torch.dtype = torch.float64) -> Data:
    """One molecule with all-pairs edges (both directions), no periodicity."""
    rng = np.random.default_rng(seed)
    pos = _spread_positions(rng, n_atoms, box=2.6)
    i, j = np.nonzero(~np.eye(n_atoms, dtype=bool))
    return Data(
        **{
            POSITIONS: torch.tensor(pos, dtype=dtype),
            ATOMIC_NUMBERS: torch.tensor(rng.choice([1, 6, 7, 8], size=n_atoms)),
            CELL: torch.zeros(1, 3, 3, dtype=dtype),
            PBC: torch.zeros(1, 3, dtype=torch.bool),
            EDGE_INDEX: torch.tensor(np.stack([j, i])),  # (sender j, receiver i)
            EDGE_SHIFTS: torch.zeros(len(i), 3, dtype=dtype),
        }
    )


def crystal_data(seed: int, dtype: torch.dtype = torch.float64) -> Data:
    """A triclinic two-atom crystal smaller than 2 * cutoff (many images, self-images too)."""
    rng = np.random.default_rng(seed)
    cell = np.array([[3.1, 0.0, 0.0], [0.6, 2.9, 0.0], [-0.4, 0.5, 3.3]])
    while True:
        frac = rng.uniform(size=(2, 3))
        atoms = ase.Atoms(numbers=[8, 14], scaled_positions=frac, cell=cell, pbc=True)
        if len(neighbor_list("i", atoms, 1.2)) == 0:
            break
    i, j, shift = neighbor_list("ijS", atoms, CUTOFF)  # D = pos[j] - pos[i] + S @ cell
    return Data(
        **{
            POSITIONS: torch.tensor(atoms.positions, dtype=dtype),
            ATOMIC_NUMBERS: torch.tensor(atoms.numbers),
            CELL: torch.tensor(cell, dtype=dtype).unsqueeze(0),
            PBC: torch.ones(1, 3, dtype=torch.bool),
            EDGE_INDEX: torch.tensor(np.stack([j, i])),
            EDGE_SHIFTS: torch.tensor(shift, dtype=dtype),
        }
    )


def molecule_batch(dtype: torch.dtype = torch.float64) -> Batch:
    return Batch.from_data_list([molecule_data(4, 1, dtype), molecule_data(5, 2, dtype)])


def mixed_batch(dtype: torch.dtype = torch.float64) -> Batch:
    """A molecule and a periodic crystal in one batch."""
    return Batch.from_data_list([molecule_data(4, 3, dtype), crystal_data(4, dtype)])


def edge_vectors(batch) -> Tensor:
    """``pos[j] - pos[i] + shifts @ cell[batch[i]]`` straight from a batch."""
    j, i = batch[EDGE_INDEX]
    graph = batch[BATCH] if BATCH in batch else torch.zeros_like(batch[ATOMIC_NUMBERS])
    cell = batch[CELL].view(-1, 3, 3)[graph[i]]  # [n_edges, 3, 3]
    shift = torch.bmm(batch[EDGE_SHIFTS].unsqueeze(1), cell).squeeze(1)
    return batch[POSITIONS][j] - batch[POSITIONS][i] + shift


# --- the good model -------------------------------------------------------------------------------
class MorsePotential(nn.Module):
    """Species-weighted Morse pairs with a smooth polynomial cutoff.

    Returns energy, node energy, forces (``-dE/dpos``) and, when a graph is periodic, stress
    (``dE/d(strain) / volume``, both by autograd); with ``extras=True`` also a dipole (1o), a
    polarizability-like tensor (3x3), a torque (1e), charges (node 0e) and an unspecified
    graph-level scalar.
    """

    def __init__(self, cutoff: float = CUTOFF, extras: bool = False) -> None:
        super().__init__()
        self.cutoff, self.extras = cutoff, extras
        self.depth, self.alpha, self.r0 = 0.6, 1.3, 1.4
        self.output_specs = dict(FIELDS) | {TORQUE: FieldSpec("graph", "1e")}

    def energy_terms(self, batch, pos: Tensor, strain: Tensor):
        z, graph = batch[ATOMIC_NUMBERS], batch[BATCH]
        j, i = batch[EDGE_INDEX]
        sym = 0.5 * (strain + strain.transpose(-1, -2))  # [n_graphs, 3, 3]
        pos = pos + torch.bmm(pos.unsqueeze(1), sym[graph]).squeeze(1)
        cell = batch[CELL] + torch.bmm(batch[CELL], sym)
        shift = torch.bmm(batch[EDGE_SHIFTS].unsqueeze(1), cell[graph[i]]).squeeze(1)
        vec = pos[j] - pos[i] + shift  # [n_edges, 3]
        r = vec.norm(dim=-1)
        u = (r / self.cutoff).clamp(max=1.0)
        envelope = (1.0 - u**2) ** 3  # C2 at the cutoff
        weight = (1.0 + 0.05 * z.to(pos.dtype))  # [n_nodes]
        pair = self.depth * weight[i] * weight[j] * ((1 - torch.exp(-self.alpha * (r - self.r0)))
                                                     ** 2 - 1.0) * envelope
        node_energy = pos.new_zeros(pos.shape[0]).index_add(0, i, 0.5 * pair)  # [n_nodes]
        n_graphs = batch[CELL].shape[0]
        energy = pos.new_zeros(n_graphs).index_add(0, graph, node_energy)  # [n_graphs]
        return energy, node_energy

    def forward(self, batch) -> dict[str, Tensor]:
        pos = batch[POSITIONS]
        if not pos.requires_grad:
            pos.requires_grad_(True)
        n_graphs = batch[CELL].shape[0]
        strain = torch.zeros(n_graphs, 3, 3, dtype=pos.dtype, device=pos.device,
                             requires_grad=True)
        energy, node_energy = self.energy_terms(batch, pos, strain)
        d_pos, d_strain = torch.autograd.grad(energy.sum(), [pos, strain])
        out = {ENERGY: energy, NODE_ENERGY: node_energy, FORCES: -d_pos}
        periodic = batch[PBC].any(-1)  # [n_graphs]
        if bool(periodic.any()):
            volume = torch.linalg.det(batch[CELL]).abs()
            out[STRESS] = torch.where(periodic.view(-1, 1, 1),
                                      d_strain / volume.clamp_min(1e-12).view(-1, 1, 1), 0.0)
        if self.extras:
            out.update(self.extra_outputs(batch, pos.detach(), out[FORCES]))
        return out

    def extra_outputs(self, batch, pos: Tensor, forces: Tensor) -> dict[str, Tensor]:
        z, graph = batch[ATOMIC_NUMBERS], batch[BATCH]
        n_graphs = batch[CELL].shape[0]
        counts = pos.new_zeros(n_graphs).index_add(0, graph, torch.ones_like(pos[:, 0]))
        centroid = pos.new_zeros(n_graphs, 3).index_add(0, graph, pos) / counts.unsqueeze(-1)
        rel = pos - centroid[graph]  # [n_nodes, 3]
        charge = 0.1 * z.to(pos.dtype) - 0.4
        eye = torch.eye(3, dtype=pos.dtype, device=pos.device)
        outer = rel.unsqueeze(-1) * rel.unsqueeze(-2) + eye
        return {
            CHARGES: charge,
            DIPOLE: pos.new_zeros(n_graphs, 3).index_add(0, graph, charge.unsqueeze(-1) * rel),
            POLARIZABILITY: pos.new_zeros(n_graphs, 3, 3).index_add(
                0, graph, (1.0 + charge).view(-1, 1, 1) * outer),
            TORQUE: pos.new_zeros(n_graphs, 3).index_add(
                0, graph, torch.linalg.cross(rel * z.to(pos.dtype).unsqueeze(-1), forces)),
            AUX: counts * 0.5,
        }


# --- models that break one promise each ---------------------------------------------------------
class AbsolutePositionModel(MorsePotential):
    """Adds ``sum_i sin(x_i)``: conservative, but neither rotation nor translation invariant."""

    def energy_terms(self, batch, pos, strain):
        energy, node_energy = super().energy_terms(batch, pos, strain)
        extra = 0.3 * torch.sin(pos[:, 0])  # [n_nodes]
        return energy.index_add(0, batch[BATCH], extra), node_energy + extra


class SortedForcesModel(MorsePotential):
    """Returns each graph's forces sorted by magnitude: not in the order of the input atoms."""

    def forward(self, batch):
        out = super().forward(batch)
        forces, graph = out[FORCES], batch[BATCH]
        key = graph.to(forces.dtype) * 1e6 + forces.norm(dim=-1)
        out[FORCES] = forces[torch.argsort(key)]
        return out


class FixedAxisDipoleModel(MorsePotential):
    """A dipole of the right size that always points along z: does not rotate."""

    def __init__(self) -> None:
        super().__init__(extras=True)

    def forward(self, batch):
        out = super().forward(batch)
        size = out[DIPOLE].norm(dim=-1, keepdim=True)  # [n_graphs, 1]
        out[DIPOLE] = size * size.new_tensor([0.0, 0.0, 1.0])
        return out


def _fixed_rotation(dtype: torch.dtype) -> Tensor:
    q, _ = torch.linalg.qr(torch.tensor([[0.3, -1.2, 0.5], [0.9, 0.4, -0.7], [-0.2, 0.8, 1.1]],
                                        dtype=torch.float64))
    return q.to(dtype)


class CurlForceModel(MorsePotential):
    """Forces ``-dE/dx + k Q J Q^T (x - anchor)`` with ``J`` the rotation generator about z.

    The extra field has a curl everywhere. With ``anchor`` set to the test positions it vanishes
    there, so the forces equal ``-dE/dx`` at that point (finite differences of the energy pass)
    while the Hessian is asymmetric and the loop work is not zero.
    """

    def __init__(self, strength: float = 0.5, anchor: Tensor | None = None) -> None:
        super().__init__()
        self.strength, self.anchor = strength, anchor

    def forward(self, batch):
        out = super().forward(batch)
        pos = batch[POSITIONS].detach()
        q = _fixed_rotation(pos.dtype).to(pos.device)
        gen = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=pos.dtype,
                           device=pos.device)
        rel = pos if self.anchor is None else pos - self.anchor.to(pos)
        out[FORCES] = out[FORCES] + self.strength * rel @ (q @ gen @ q.T).T
        return out


class ScaledForcesModel(MorsePotential):
    """Forces ``-1.01 dE/dx``: a conservative field, but not the gradient of the energy."""

    def forward(self, batch):
        out = super().forward(batch)
        out[FORCES] = 1.01 * out[FORCES]
        return out


class WrongStressSignModel(MorsePotential):
    """Stress with the opposite (virial-like) sign."""

    def forward(self, batch):
        out = super().forward(batch)
        out[STRESS] = -out[STRESS]
        return out


class NodeFeatureModel(MorsePotential):
    """Returns an undeclared node-level output, which assert_equivariant must refuse."""

    def forward(self, batch):
        out = super().forward(batch)
        out["hidden"] = out[NODE_ENERGY].unsqueeze(-1).repeat(1, 4)
        return out
