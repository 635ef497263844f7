"""Electron-electron Jastrow factor with the exact Kato cusps."""

from __future__ import annotations

import torch
from torch import nn


class ElectronCuspJastrow(nn.Module):
    r"""``J = -sum_{i<j} c_ij alpha_ij^2 / (alpha_ij + r_ij)``, added to ``log|psi|``.

    ``dJ/dr_ij = c_ij`` at ``r_ij = 0``: the Kato cusp ``c = 1/2`` for opposite spins and ``1/4``
    for parallel spins, whatever the learned widths ``alpha`` (one for parallel, one for
    antiparallel pairs); ``J -> 0`` as ``1/r`` for distant pairs. The factor is symmetric under any
    permutation that keeps spins, so it multiplies an antisymmetric function into another one.

    Args:
        n_up, n_down: electrons of each spin (spin-up first). With ``n_down=0`` and
            ``cusp_parallel=0.5`` it is the Jastrow of identical bosons (or of distinguishable
            particles all of whose pairs have cusp 1/2).
        cusp_parallel: cusp of same-spin pairs (default 1/4).
        cusp_antiparallel: cusp of opposite-spin pairs (default 1/2).
        alpha: initial widths (bohr, default 1).

    Shapes:
        d_ee: [n_walkers, n_elec, n_elec] electron-electron distances -> [n_walkers]

    References:
        Kato, Commun. Pure Appl. Math. 10, 151 (1957); von Glehn, Spencer, Pfau, "A self-attention
        ansatz for ab-initio quantum chemistry", ICLR 2023 (Psiformer), the Jastrow form.
    """

    def __init__(self, n_up: int, n_down: int, cusp_parallel: float = 0.25,
                 cusp_antiparallel: float = 0.5, alpha: float = 1.0) -> None:
        super().__init__()
        n = n_up + n_down
        spin = torch.tensor([0] * n_up + [1] * n_down)
        same = spin[:, None] == spin[None, :]
        upper = torch.ones(n, n, dtype=torch.bool).triu(1)
        # masks of the pairs i < j, parallel and antiparallel: [n_elec, n_elec]
        self.register_buffer("parallel", (same & upper).to(torch.get_default_dtype()),
                             persistent=False)
        self.register_buffer("antiparallel", (~same & upper).to(torch.get_default_dtype()),
                             persistent=False)
        self.cusps = (float(cusp_parallel), float(cusp_antiparallel))
        self.alpha = nn.Parameter(torch.full((2,), float(alpha)))
        self.n_up, self.n_down = int(n_up), int(n_down)

    def forward(self, d_ee: torch.Tensor) -> torch.Tensor:
        a = self.alpha.abs()
        par = self.cusps[0] * a[0] ** 2 / (a[0] + d_ee)  # [n_walkers, n_elec, n_elec]
        anti = self.cusps[1] * a[1] ** 2 / (a[1] + d_ee)
        return -(par * self.parallel + anti * self.antiparallel).sum((-1, -2))  # [n_walkers]

    def extra_repr(self) -> str:
        return f"n_up={self.n_up}, n_down={self.n_down}, cusps={self.cusps}"
