"""Gated nonlinearity: pointwise activations on scalars, scalar gates on l > 0 features."""

from __future__ import annotations

import torch
from e3nn import o3
from e3nn.nn import Gate
from torch import nn


class GatedActivation(nn.Module):
    """Equivariant nonlinearity for any irreps: SiLU on scalars, sigmoid-gated l > 0 blocks.

    A pointwise nonlinearity applied to an l > 0 component would not commute with rotations, so
    each l > 0 channel is multiplied by its own sigmoid-activated invariant gate instead. Even
    scalars (0e) use SiLU; odd scalars (0o) use tanh, which is odd and so keeps their parity.
    ``irreps_in`` is what the preceding linear layer must produce: the output scalars, one gate per
    gated channel, then the gated blocks (sorted by irrep, as e3nn's ``Gate`` orders them).

    e3nn's ``Gate`` defines the map (activations normalised to unit second moment, its input and
    output layouts) and stays a submodule, so ``state_dict`` keys are unchanged; the forward pass
    evaluates it with a handful of column selections and element-wise operations instead of
    e3nn's element-wise tensor product (about 10 tensor operations instead of 40, which matters
    when the per-operation overhead dominates, as in a CPU training step on forces).

    Args:
        irreps_out: features after the activation (e.g. ``64x0e+32x1o+16x2e``).

    Shapes:
        x: [n_nodes, irreps_in.dim] -> [n_nodes, irreps_out.dim]

    References:
        Weiler et al., "3D Steerable CNNs", NeurIPS 2018.
    """

    def __init__(self, irreps_out: o3.Irreps | str) -> None:
        super().__init__()
        irreps_out = o3.Irreps(irreps_out).simplify()
        scalars = o3.Irreps([(m, ir) for m, ir in irreps_out if ir.l == 0])
        gated = o3.Irreps([(m, ir) for m, ir in irreps_out if ir.l > 0])
        acts = [torch.nn.functional.silu if ir.p == 1 else torch.tanh for _, ir in scalars]
        gates = o3.Irreps(f"{gated.num_irreps}x0e") if gated.num_irreps else o3.Irreps("")
        self.gate = Gate(
            scalars, acts, gates, [torch.sigmoid] if gated.num_irreps else [], gated
        )
        self.irreps_in = self.gate.irreps_in
        self.irreps_out = self.gate.irreps_out
        # column maps read off e3nn's own cut of the sorted input (a probe of column numbers)
        probe = torch.arange(self.irreps_in.dim, dtype=torch.float64)[None]
        scalar_cols, gate_cols, gated_cols = (t[0].long() for t in self.gate.sc(probe))
        self._scalar_blocks = []  # (columns, activation, constant) per scalar block
        start = 0
        for k, ((mul, ir), act) in enumerate(zip(scalars, self.gate.act_scalars.acts,
                                                 strict=True)):  # fmt: skip
            cols = self._columns(f"_scalar_cols{k}", scalar_cols[start : start + mul])
            self._scalar_blocks.append((cols, *_activation(act)))
            start += mul * ir.dim
        self._gate_act = None
        if gated.num_irreps:
            self._gate_act = _activation(self.gate.act_gates.acts[0])
            self._gate_cols = self._columns("_gate_index", gate_cols)
            self._gated_cols = self._columns("_gated_index", gated_cols)
            # gate k multiplies every component of the k-th gated irrep
            expand = torch.arange(gated.num_irreps).repeat_interleave(
                torch.tensor([ir.dim for mul, ir in gated for _ in range(mul)]))
            self.register_buffer("_expand", expand, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = []
        for cols, act, cst in self._scalar_blocks:
            y = act(self._take(x, cols))
            parts.append(y if cst is None else y * cst)
        if self._gate_act is not None:
            act, cst = self._gate_act
            g = act(self._take(x, self._gate_cols))  # [n_nodes, n_gated]
            if cst is not None:
                g = g * cst
            parts.append(self._take(x, self._gated_cols) * g.index_select(-1, self._expand))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.irreps_in} -> {self.irreps_out})"

    def _columns(self, name: str, cols: torch.Tensor) -> slice | str:
        """A slice when the columns are one contiguous run (a view, no copy), else the name of
        an index buffer registered for them."""
        first = int(cols[0]) if cols.numel() else 0
        if torch.equal(cols, torch.arange(first, first + cols.numel())):
            return slice(first, first + cols.numel())
        self.register_buffer(name, cols.clone(), persistent=False)
        return name

    def _take(self, x: torch.Tensor, cols: slice | str) -> torch.Tensor:
        if isinstance(cols, slice):
            return x[..., cols]
        return x.index_select(-1, getattr(self, cols))


def _activation(act) -> tuple:
    """``(function, constant or None)`` of an e3nn ``normalize2mom``-wrapped activation."""
    if getattr(act, "_is_id", False):
        return act.f, None
    return act.f, float(act.cst)
