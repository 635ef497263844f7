"""Invariant per-atom readouts and per-element shift/scale."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from e3nn import o3
from torch import nn

from equivar.nn.linear import IrrepsLinear


class ScalarHead(nn.Module):
    """Invariant per-atom outputs from the scalar (0e) channels of equivariant features.

    ``Linear(0e part) -> SiLU -> Linear``; l > 0 channels are not read (they enter through
    the preceding interaction blocks), so the output is invariant by construction.

    Args:
        irreps_in: node features (must contain 0e channels).
        num_out: outputs per atom (default 1).
        hidden: hidden width (default 16).

    Shapes:
        node_feats: [n_nodes, irreps_in.dim] -> [n_nodes, num_out]
    """

    def __init__(self, irreps_in: o3.Irreps | str, num_out: int = 1, hidden: int = 16) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_out = o3.Irreps(f"{num_out}x0e")
        scalars = o3.Irreps([(m, ir) for m, ir in self.irreps_in if ir == o3.Irrep("0e")])
        if scalars.dim == 0:
            raise ValueError(f"ScalarHead needs 0e channels in its input, got {self.irreps_in}")
        self.linear_in = IrrepsLinear(self.irreps_in, f"{hidden}x0e")
        self.mlp_out = nn.Linear(hidden, num_out)

    def forward(self, node_feats: torch.Tensor) -> torch.Tensor:
        h = torch.nn.functional.silu(self.linear_in(node_feats))  # [n_nodes, hidden]
        return self.mlp_out(h)  # [n_nodes, num_out]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.irreps_in} -> {self.irreps_out})"


class AtomicShiftScale(nn.Module):
    """``y_i = scale * x_i + shift[element_i]``: puts a normalised output in physical units.

    The shift is the per-element reference (e.g. isolated-atom energies fitted by least squares
    over a dataset), the scale a typical per-atom magnitude; both are buffers saved in the
    ``state_dict``.

    Args:
        species: the model's atomic numbers (row order of ``shift``).
        shift: per-element shift as a mapping ``Z -> value`` (missing elements get 0) or one number.
        scale: global scale (default 1).

    Shapes:
        x: [n_nodes], species_index: [n_nodes] -> [n_nodes]
    """

    def __init__(
        self,
        species: Sequence[int],
        shift: Mapping[int, float] | float = 0.0,
        scale: float = 1.0,
    ) -> None:
        super().__init__()
        if isinstance(shift, Mapping):
            unknown = sorted(set(int(k) for k in shift) - set(species))
            if unknown:
                raise ValueError(f"shift given for elements {unknown} outside species {species}")
            values = [float(shift.get(z, 0.0)) for z in species]
        else:
            values = [float(shift)] * len(species)
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.register_buffer("shift", torch.tensor(values, dtype=torch.get_default_dtype()))
        self.register_buffer("scale", torch.tensor(float(scale), dtype=torch.get_default_dtype()))

    def forward(self, x: torch.Tensor, species_index: torch.Tensor) -> torch.Tensor:
        return self.scale * x + self.shift[species_index]
