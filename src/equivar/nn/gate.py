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
    gated channel, then the gated blocks.

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(x)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.irreps_in} -> {self.irreps_out})"
