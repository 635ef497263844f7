"""Ziegler-Biersack-Littmark (ZBL) screened nuclear repulsion: a short-range physical prior."""

from __future__ import annotations

import torch
from ase.data import covalent_radii
from torch import nn

from equivar.nn.radial import PolynomialCutoff
from equivar.nn.scatter import scatter_sum

# e^2 / (4 pi eps0) in eV * Angstrom (CODATA 2018)
COULOMB_EV_ANGSTROM = 14.399645478425668
# universal screening function: sum_k c_k exp(-d_k x)
_ZBL_C = (0.18175, 0.50986, 0.28022, 0.02817)
_ZBL_D = (3.19980, 0.94229, 0.40290, 0.20162)


class ZBLRepulsion(nn.Module):
    r"""Pairwise ZBL energy, switched off smoothly at the sum of the covalent radii.

    .. math::
        E_i = \frac12 \sum_{j} \frac{e^2}{4\pi\epsilon_0}\frac{Z_i Z_j}{r_{ij}}
              \phi\!\left(\frac{r_{ij}}{a_{ij}}\right) u\!\left(\frac{r_{ij}}{r^\text{cov}_i +
              r^\text{cov}_j}\right),\qquad a_{ij} = \frac{0.46850}{Z_i^{0.23} + Z_j^{0.23}}

    with :math:`u` the polynomial envelope. It diverges as two nuclei meet, so MD with a learned
    potential cannot collapse atoms onto each other, and it is exactly zero at bonding distances
    beyond the covalent radii sum (so it does not fight the learned part there).

    Args:
        p: order of the switching envelope (default 6).

    Shapes:
        z: [n_nodes], edge_len: [n_edges], edge_index: [2, n_edges] -> [n_nodes] (eV per atom)

    References:
        Ziegler, Biersack, Littmark, "The Stopping and Range of Ions in Solids" (1985).
    """

    def __init__(self, p: int = 6) -> None:
        super().__init__()
        self.register_buffer(
            "radii", torch.tensor(covalent_radii, dtype=torch.float64), persistent=False
        )
        self.register_buffer("c", torch.tensor(_ZBL_C, dtype=torch.float64), persistent=False)
        self.register_buffer("d", torch.tensor(_ZBL_D, dtype=torch.float64), persistent=False)
        self.envelope = PolynomialCutoff(1.0, p)

    def forward(
        self, z: torch.Tensor, edge_len: torch.Tensor, edge_index: torch.Tensor
    ) -> torch.Tensor:
        zj, zi = z[edge_index[0]], z[edge_index[1]]  # [n_edges]
        zf_i, zf_j = zi.to(edge_len.dtype), zj.to(edge_len.dtype)
        a = 0.46850 / (zf_i.pow(0.23) + zf_j.pow(0.23))  # [n_edges] screening length (Angstrom)
        x = (edge_len / a).unsqueeze(-1)  # [n_edges, 1]
        phi = (self.c.to(x.dtype) * torch.exp(-self.d.to(x.dtype) * x)).sum(-1)  # [n_edges]
        r_switch = self.radii.to(edge_len.dtype)[zi] + self.radii.to(edge_len.dtype)[zj]
        pair = COULOMB_EV_ANGSTROM * zf_i * zf_j / edge_len * phi
        pair = pair * self.envelope(edge_len / r_switch)  # [n_edges]
        # each pair appears as i->j and j->i: half of it goes to each receiver
        return scatter_sum(0.5 * pair, edge_index[1], z.shape[0])  # [n_nodes]
