"""Equivariant per-structure vectors and rank-2 tensors (dipoles, polarizabilities)."""

from __future__ import annotations

import torch
from e3nn import io, o3
from torch import nn

from equivar.heads.pooling import pool
from equivar.nn.linear import IrrepsLinear


class VectorHead(nn.Module):
    """A polar vector per structure: sum of per-atom l = 1 (1o) outputs.

    Shapes:
        node_feats: [n_nodes, irreps_in.dim], batch: [n_nodes] -> [n_graphs, 3]
    """

    def __init__(self, irreps_in: o3.Irreps | str) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        if o3.Irrep("1o") not in [ir for _, ir in self.irreps_in]:
            raise ValueError(f"VectorHead needs 1o channels in its input, got {self.irreps_in}")
        self.irreps_out = o3.Irreps("1x1o")
        self.linear = IrrepsLinear(self.irreps_in, self.irreps_out)
        # [3, 3]: e3nn's l=1 basis -> Cartesian (x, y, z); taken from e3nn, not hard-coded,
        # because e3nn versions order the l=1 components differently
        q = io.CartesianTensor("i").reduced_tensor_products().change_of_basis
        self.register_buffer("to_cartesian", q.to(torch.get_default_dtype()), persistent=False)

    def forward(self, node_feats: torch.Tensor, batch: torch.Tensor, n_graphs: int) -> torch.Tensor:
        v = self.linear(node_feats) @ self.to_cartesian.to(node_feats.dtype)  # [n_nodes, 3]
        return pool(v, batch, n_graphs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.irreps_in} -> 3-vector)"


class DipoleHead(nn.Module):
    r"""Dipole = sum of atomic dipoles + sum of partial charges times positions.

    .. math:: \mu = \sum_i \mu_i + \sum_i q_i (r_i - r_\text{com}), \qquad
              q_i = \tilde q_i + \frac{Q - \sum_j \tilde q_j}{n}

    The charges are corrected to sum exactly to the total charge Q of each structure; positions
    are taken from the centre of mass, so the dipole of an ion is translation invariant too.

    Shapes:
        node_feats: [n_nodes, irreps_in.dim], pos: [n_nodes, 3], masses: [n_nodes],
        total_charge: [n_graphs], batch: [n_nodes] -> dipole [n_graphs, 3], charges [n_nodes]
    """

    def __init__(self, irreps_in: o3.Irreps | str) -> None:
        super().__init__()
        self.atomic = VectorHead(irreps_in)
        self.irreps_in = self.atomic.irreps_in
        self.charge = IrrepsLinear(self.irreps_in, "1x0e")

    def forward(
        self,
        node_feats: torch.Tensor,
        pos: torch.Tensor,
        masses: torch.Tensor,
        total_charge: torch.Tensor,
        batch: torch.Tensor,
        n_graphs: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.charge(node_feats).squeeze(-1)  # [n_nodes]
        n_atoms = pool(torch.ones_like(q), batch, n_graphs)  # [n_graphs]
        excess = (total_charge - pool(q, batch, n_graphs)) / n_atoms.clamp(min=1)
        q = q + excess[batch]  # [n_nodes], sums to total_charge per graph
        m = masses.unsqueeze(-1)  # [n_nodes, 1]
        com = pool(m * pos, batch, n_graphs) / pool(m, batch, n_graphs)  # [n_graphs, 3]
        charge_part = pool(q.unsqueeze(-1) * (pos - com[batch]), batch, n_graphs)
        return self.atomic(node_feats, batch, n_graphs) + charge_part, q

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.irreps_in} -> dipole, charges)"


class SymmetricTensorHead(nn.Module):
    """A symmetric rank-2 Cartesian tensor per structure from per-atom 0e + 2e outputs.

    The 0e part is the isotropic trace and the 2e part the traceless symmetric part; the sum over
    atoms is converted with e3nn's change of basis for ``ij=ji``, so ``T -> R T R^T`` exactly.

    Shapes:
        node_feats: [n_nodes, irreps_in.dim], batch: [n_nodes] -> [n_graphs, 3, 3]
    """

    def __init__(self, irreps_in: o3.Irreps | str) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        present = {ir for _, ir in self.irreps_in}
        if o3.Irrep("0e") not in present or o3.Irrep("2e") not in present:
            raise ValueError(
                f"SymmetricTensorHead needs 0e and 2e channels in its input, got {self.irreps_in}"
            )
        self.cartesian = io.CartesianTensor("ij=ji")
        self.linear = IrrepsLinear(self.irreps_in, self.cartesian)  # -> 1x0e+1x2e
        # [6, 3, 3]: irreps (1x0e+1x2e) -> Cartesian, computed once at construction
        q = self.cartesian.reduced_tensor_products().change_of_basis
        self.register_buffer("change_of_basis", q.to(torch.get_default_dtype()), persistent=False)

    def forward(self, node_feats: torch.Tensor, batch: torch.Tensor, n_graphs: int) -> torch.Tensor:
        t = pool(self.linear(node_feats), batch, n_graphs)  # [n_graphs, 6]
        return torch.einsum("gk,kij->gij", t, self.change_of_basis.to(t.dtype))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.irreps_in} -> symmetric 3x3)"
