"""Pre-training of the orbitals to Hartree-Fock (pyscf, the ``qm`` extra).

A freshly initialised network has a random nodal surface. Fitting its orbitals to the occupied
Hartree-Fock orbitals first (a supervised regression, cheap and stable) starts VMC near the right
nodes and saves many expensive energy steps.

References:
    Pfau et al., Phys. Rev. Research 2, 033429 (2020), sec. "Pretraining".
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from equivar.qmc.systems import Molecule

__all__ = ["HartreeFock", "pretrain_orbitals"]


class HartreeFock:
    """Unrestricted Hartree-Fock of a molecule with pyscf; evaluates its occupied orbitals.

    Args:
        system: the molecule.
        basis: a pyscf basis name (default ``"cc-pvdz"``).

    Attributes:
        energy: the HF total energy (hartree).

    Shapes:
        r: [n_walkers, n_elec, 3] -> per non-empty spin ``[n_walkers, n_s, n_s]`` (electron i,
        orbital a), spin-up first.

    Raises:
        ImportError: pyscf is not installed (``pip install equivar[qm]``).
    """

    def __init__(self, system: Molecule, basis: str = "cc-pvdz") -> None:
        try:
            from pyscf import gto, scf
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError("Hartree-Fock pre-training needs pyscf: pip install "
                              "'equivar[qm]'") from err
        self.system = system
        mol = gto.M(atom=[(z, p) for z, p in zip(system.charges, system.positions, strict=True)],
                    unit="Bohr", basis=basis, charge=system.charge, spin=system.spin, verbose=0)
        mf = scf.UHF(mol)
        mf.kernel()
        self.mol, self.energy = mol, float(mf.e_tot)
        self.occupied = [mf.mo_coeff[0][:, : system.n_up], mf.mo_coeff[1][:, : system.n_down]]

    def orbitals(self, r: Tensor) -> list[Tensor]:
        n_walkers, n_elec, _ = r.shape
        coords = r.detach().reshape(-1, 3).cpu().double().numpy()
        ao = torch.from_numpy(self.mol.eval_gto("GTOval_sph", coords))  # [n_points, n_ao]
        ao = ao.reshape(n_walkers, n_elec, -1).to(r.device, r.dtype)
        out, start = [], 0
        for n, coeff in zip((self.system.n_up, self.system.n_down), self.occupied, strict=True):
            if n:
                c = torch.as_tensor(coeff, dtype=r.dtype, device=r.device)  # [n_ao, n]
                out.append(ao[:, start:start + n] @ c)  # [n_walkers, n, n]
            start += n
        return out


def pretrain_orbitals(wavefunction: nn.Module, system: Molecule, sampler, iterations: int, *,
                      lr: float = 3e-3, basis: str = "cc-pvdz", hartree_fock: HartreeFock | None
                      = None) -> list[float]:
    """Fit every determinant's orbitals to the HF orbitals at walkers sampled from the network.

    Loss: mean over walkers, determinants, electrons and orbitals of
    ``(phi_net - phi_HF)^2``, minimised by Adam. The walkers keep following ``|psi|^2`` (one
    sampler sweep per iteration), so VMC starts from equilibrated walkers.

    Args:
        wavefunction: a fermionic equivar wavefunction (has ``orbitals(r)``).
        system: the molecule.
        sampler: a :class:`~equivar.qmc.MetropolisSampler` for it.
        iterations: Adam steps.
        lr: Adam's learning rate (default 3e-3).
        basis: pyscf basis (default ``"cc-pvdz"``).
        hartree_fock: a ready :class:`HartreeFock` (default: computed here).

    Returns:
        the loss of every iteration (floats; one host sync per iteration).
    """
    if not hasattr(wavefunction, "orbitals"):
        raise ValueError("pre-training needs a wavefunction with orbitals(r) (fermions)")
    hf = hartree_fock or HartreeFock(system, basis)
    optimizer = torch.optim.Adam(wavefunction.parameters(), lr=lr)
    losses = []
    for _ in range(iterations):
        sampler.sweep(wavefunction)
        r = sampler.walkers
        targets = hf.orbitals(r)  # per spin [n_walkers, n, n]
        optimizer.zero_grad(set_to_none=True)
        loss = sum(((phi - t.unsqueeze(1)) ** 2).mean()
                   for phi, t in zip(wavefunction.orbitals(r), targets, strict=True))
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses
