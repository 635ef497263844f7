"""Molecular property model: invariant and equivariant targets on one equivariant trunk."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from ase.data import atomic_masses
from torch import nn

from equivar import keys
from equivar.heads.pooling import pool
from equivar.heads.scalar import AtomicShiftScale, ScalarHead
from equivar.heads.tensor import DipoleHead, SymmetricTensorHead, VectorHead
from equivar.models.backbone import EquivariantBackbone
from equivar.models.inputs import parameter_dtype, read_inputs
from equivar.nn.geometry import edge_vectors

#: target kinds: what each predicts and how symmetry acts on it
TARGET_KINDS = {
    "sum": keys.FieldSpec("graph", "0e"),  # extensive invariant (energies, ...)
    "mean": keys.FieldSpec("graph", "0e"),  # intensive invariant (HOMO, gap, ...)
    "node": keys.FieldSpec("node", "0e"),  # per-atom invariant (charges, shifts, ...)
    "vector": keys.FieldSpec("graph", "1o"),  # sum of atomic l=1 outputs
    "dipole": keys.FieldSpec("graph", "1o"),  # atomic dipoles + charges x positions
    "tensor": keys.FieldSpec("graph", "3x3"),  # symmetric rank 2 (polarizability)
}


class PropertyModel(nn.Module):
    """Per-structure and per-atom properties, invariant or equivariant, from one trunk.

    Each target has a kind (see ``TARGET_KINDS``): ``"sum"``/``"mean"`` pool invariant
    per-atom outputs (a sum gets per-element shifts, so it suits extensive targets such as U0);
    ``"node"`` returns them per atom; ``"vector"`` sums per-atom 1o vectors; ``"dipole"`` adds
    partial charges times positions (charges corrected to sum to the total charge, returned as
    ``"<name>_charges"``); ``"tensor"`` is a symmetric 3x3 tensor from per-atom 0e + 2e parts.

    Build it with ``equivar.models.build("property", targets={...})``.

    Returns (from ``forward``):
        a dict with one entry per target: graph-level [n_graphs] / [n_graphs, 3] /
        [n_graphs, 3, 3], node-level [n_nodes].
    """

    def __init__(
        self,
        *,
        targets: Mapping[str, str],
        target_shifts: Mapping[str, Mapping[int, float] | float] | None = None,
        target_scales: Mapping[str, float] | None = None,
        readout_hidden: int = 16,
        config: Mapping | None = None,
        **backbone: Any,
    ) -> None:
        """Args: the head options above; ``**backbone`` goes to :class:`EquivariantBackbone`."""
        super().__init__()
        if not targets:
            raise ValueError("targets must name at least one target, e.g. {'U0': 'sum'}")
        for name, kind in targets.items():
            if kind not in TARGET_KINDS:
                raise ValueError(
                    f"target {name!r} has unknown kind {kind!r}; choose one of "
                    f"{sorted(TARGET_KINDS)}"
                )
        target_shifts, target_scales = dict(target_shifts or {}), dict(target_scales or {})
        for name in (*target_shifts, *target_scales):
            if name not in targets:
                raise ValueError(f"shift/scale given for {name!r}, which is not a target")
        needs_l2 = any(k == "tensor" for k in targets.values())
        needs_l1 = any(k in ("vector", "dipole") for k in targets.values())
        lmax = backbone["lmax"]
        if needs_l2 and lmax < 2 or needs_l1 and lmax < 1:
            raise ValueError(f"lmax={lmax} is too small for targets {dict(targets)}")
        self.backbone = EquivariantBackbone(**backbone)
        self.species = self.backbone.species
        self.cutoff = self.backbone.cutoff
        self.targets = dict(targets)
        irreps = self.backbone.irreps_out
        self.heads = nn.ModuleDict()
        self.shift_scale = nn.ModuleDict()
        self.output_specs: dict[str, keys.FieldSpec] = {}
        for name, kind in self.targets.items():
            self.output_specs[name] = TARGET_KINDS[kind]
            if kind in ("sum", "mean", "node"):
                self.heads[name] = ScalarHead(irreps, 1, readout_hidden)
                self.shift_scale[name] = AtomicShiftScale(
                    self.species, target_shifts.get(name, 0.0), target_scales.get(name, 1.0)
                )
            elif kind == "vector":
                self.heads[name] = VectorHead(irreps)
            elif kind == "dipole":
                self.heads[name] = DipoleHead(irreps)
                self.output_specs[f"{name}_charges"] = keys.FieldSpec("node", "0e")
            else:
                self.heads[name] = SymmetricTensorHead(irreps)
        masses = torch.tensor(atomic_masses, dtype=torch.get_default_dtype())
        self.register_buffer("masses", masses, persistent=False)
        self.config = dict(config or {})
        self.validate = True

    def forward(self, data) -> dict[str, torch.Tensor]:
        """Predict every target for every structure (or atom) in ``data``."""
        g = read_inputs(data, dtype=parameter_dtype(self))
        n_graphs = g.n_graphs
        edge_vec = edge_vectors(g.pos, g.edge_index, g.shifts, g.cell, g.batch)
        h, species_index, _ = self.backbone(
            g.z, edge_vec, g.edge_index, g.batch, g.total_charge, g.spin, self.validate
        )
        out: dict[str, torch.Tensor] = {}
        for name, kind in self.targets.items():
            head = self.heads[name]
            if kind in ("sum", "mean", "node"):
                y = self.shift_scale[name](head(h).squeeze(-1), species_index)  # [n_nodes]
                out[name] = y if kind == "node" else pool(y, g.batch, n_graphs, kind)
            elif kind == "vector":
                out[name] = head(h, g.batch, n_graphs)
            elif kind == "dipole":
                masses = self.masses.to(g.pos.dtype)[g.z]  # [n_nodes]
                out[name], out[f"{name}_charges"] = head(
                    h, g.pos, masses, g.total_charge, g.batch, n_graphs
                )
            else:
                out[name] = head(h, g.batch, n_graphs)
        return out

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}(species={self.species}, cutoff={self.cutoff}"]
        lines += [f"  {b!r}".replace("\n", "\n  ") for b in self.backbone.blocks]
        lines += [f"  {name}: {head!r}" for name, head in self.heads.items()]
        return "\n".join(lines) + "\n)"
