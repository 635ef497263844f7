"""Interatomic potential: energy as a sum of atomic energies; forces and stress by autograd."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from equivar import keys
from equivar.heads.derivatives import attach_strain, energy_derivatives
from equivar.heads.pooling import pool
from equivar.heads.scalar import AtomicShiftScale, ScalarHead
from equivar.models.backbone import EquivariantBackbone
from equivar.models.inputs import parameter_dtype, read_inputs
from equivar.nn.geometry import edge_vectors
from equivar.nn.linear import IrrepsLinear
from equivar.nn.repulsion import ZBLRepulsion


class PotentialModel(nn.Module):
    r"""E(3)-invariant energy, E(3)-equivariant forces and stress of atomic structures.

    ``species embedding -> interaction blocks -> per-atom energy (scaled, shifted per element)
    [+ ZBL] -> sum over atoms``. Forces are :math:`-\partial E/\partial r_i` and stress is
    :math:`V^{-1}\partial E/\partial\epsilon` by automatic differentiation, so they are
    conservative by construction; :func:`equivar.testing.assert_conservative` checks it.

    Build it with ``equivar.models.build("potential", ...)``, which documents every option.

    Returns (from ``forward``):
        a dict with ``energy`` [n_graphs], ``node_energy`` [n_nodes], ``forces`` [n_nodes, 3]
        (unless ``forces=False``), and ``stress``/``virial`` [n_graphs, 3, 3] when computed
        (NaN stress for non-periodic graphs in a mixed batch).

    Shapes:
        data: a PyG Batch with pos [n_nodes, 3], z [n_nodes], edge_index [2, n_edges],
        shifts [n_edges, 3], cell [n_graphs, 3, 3], pbc [n_graphs, 3], batch [n_nodes],
        total_charge and spin [n_graphs] (optional)
    """

    output_specs = {
        k: keys.FIELDS[k]
        for k in (keys.ENERGY, keys.NODE_ENERGY, keys.FORCES, keys.STRESS, keys.VIRIAL)
    }

    def __init__(
        self,
        *,
        atomic_energies: Mapping[int, float] | float = 0.0,
        energy_scale: float = 1.0,
        zbl: bool = False,
        forces: bool = True,
        stress: bool | None = None,
        readout_hidden: int = 16,
        layer_readouts: bool = False,
        config: Mapping | None = None,
        **backbone: Any,
    ) -> None:
        """Args: the head options above; ``**backbone`` goes to :class:`EquivariantBackbone`."""
        super().__init__()
        self.backbone = EquivariantBackbone(**backbone)
        self.species = self.backbone.species
        self.cutoff = self.backbone.cutoff
        self.readout = ScalarHead(self.backbone.irreps_out, 1, readout_hidden)
        #: with ``layer_readouts``, a linear energy readout of every block but the last (whose
        #: output goes through ``readout``); the atomic energy is their sum (as in MACE)
        self.layer_readouts = (
            nn.ModuleList(IrrepsLinear(b.irreps_out, "1x0e") for b in self.backbone.blocks[:-1])
            if layer_readouts else None
        )  # fmt: skip
        self.scale_shift = AtomicShiftScale(self.species, atomic_energies, energy_scale)
        self.zbl = ZBLRepulsion() if zbl else None
        self.compute_forces = bool(forces)
        self.compute_stress = stress
        #: the options this model was built with (a checkpoint stores them to rebuild it)
        self.config = dict(config or {})
        #: check atomic numbers against ``species`` on every call (one device sync)
        self.validate = True

    def forward(self, data, *, create_graph: bool | None = None) -> dict[str, torch.Tensor]:
        """Energy, forces (and stress) of every structure in ``data``.

        Args:
            data: a PyG ``Data``/``Batch`` (see class docstring).
            create_graph: keep the autograd graph of every output, to train on forces or take
                second derivatives (default: ``self.training``). Without it the outputs are
                detached, so evaluation holds no graph in memory.
        """
        g = read_inputs(data, dtype=parameter_dtype(self))
        if create_graph is None:
            create_graph = self.training
        stress = self.compute_stress
        if stress is None:
            stress = bool(g.pbc.any())
        derivatives = self.compute_forces or stress
        with torch.enable_grad():
            pos, cell, displacement = g.pos, g.cell, None
            if derivatives and not pos.requires_grad:
                pos = pos.detach().requires_grad_(True)
            pos_in = pos
            if stress:
                pos, cell, displacement = attach_strain(pos, cell, g.batch)
            edge_vec = edge_vectors(pos, g.edge_index, g.shifts, cell, g.batch)  # [n_edges, 3]
            layers, species_index, edge_len = self.backbone(
                g.z, edge_vec, g.edge_index, g.batch, g.total_charge, g.spin, self.validate,
                all_layers=True,
            )
            node_energy = self.readout(layers[-1]).squeeze(-1)  # [n_nodes]
            if self.layer_readouts is not None:
                for readout, h in zip(self.layer_readouts, layers[:-1], strict=True):
                    node_energy = node_energy + readout(h).squeeze(-1)
            node_energy = self.scale_shift(node_energy, species_index)
            if self.zbl is not None:
                node_energy = node_energy + self.zbl(g.z, edge_len, g.edge_index)
            energy = pool(node_energy, g.batch, g.n_graphs)  # [n_graphs]
            out = {keys.ENERGY: energy, keys.NODE_ENERGY: node_energy}
            if derivatives:
                grads = energy_derivatives(energy, pos_in, displacement, g.cell, create_graph)
                if self.compute_forces:
                    out[keys.FORCES] = grads["forces"]
                if stress:
                    out[keys.STRESS] = grads["stress"]
                    out[keys.VIRIAL] = grads["virial"]
        if not create_graph:
            out = {k: v.detach() for k, v in out.items()}
        return out

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}(species={self.species}, cutoff={self.cutoff}"]
        lines += [f"  {b!r}".replace("\n", "\n  ") for b in self.backbone.blocks]
        lines.append(f"  {self.readout!r}")
        if self.layer_readouts is not None:
            lines.append(f"  + linear energy readouts of blocks 1..{len(self.layer_readouts)}")
        if self.zbl is not None:
            lines.append("  ZBLRepulsion()")
        return "\n".join(lines) + "\n)"
