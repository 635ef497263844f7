"""Batched Metropolis-Hastings sampling of ``|psi|^2`` on any device.

Every walker proposes a Gaussian move of all its electrons at once, ``r' = r + s N(0, 1)``, and
accepts it with probability ``min(1, |psi(r')|^2 / |psi(r)|^2)``; the proposal is symmetric, so no
correction factor is needed. The step size ``s`` adapts after each sweep towards a target
acceptance. All state lives in tensors on the walkers' device (no host synchronisation per
step); randomness comes from the sampler's own ``torch.Generator``, so a run is reproducible
and its state can be checkpointed.

References:
    Metropolis et al., J. Chem. Phys. 21, 1087 (1953); Hastings, Biometrika 57, 97 (1970).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from equivar.parallel import all_gather_cat, all_reduce_sum
from equivar.qmc.systems import Molecule

__all__ = ["MetropolisSampler", "initial_walkers"]


def initial_walkers(system: Molecule, n_walkers: int, generator: torch.Generator,
                    device=None, dtype=None, width: float = 1.0) -> Tensor:
    """Electrons in Gaussian clouds (``width`` bohr) around the nuclei, about as many at each
    nucleus as its charge, up and down spins spread over the nuclei alternately.

    Shapes:
        -> [n_walkers, n_elec, 3]
    """
    dtype = dtype or torch.get_default_dtype()
    # each nucleus takes Z_I electrons (then round-robin for anions); spins alternate along the
    # list, so both spins visit every atom and open shells spread out
    sites = [i for i, z in enumerate(system.charges) for _ in range(z)]
    while len(sites) < system.n_elec:
        sites += list(range(system.n_nuclei))
    up_sites: list[int] = []
    down_sites: list[int] = []
    for k, site in enumerate(sites[: system.n_elec]):
        to_up = len(down_sites) >= system.n_down or (k % 2 == 0 and len(up_sites) < system.n_up)
        (up_sites if to_up else down_sites).append(site)
    _, nuclei = system.tensors(device, dtype)
    centres = nuclei[torch.tensor(up_sites + down_sites, device=nuclei.device)]  # [n_elec, 3]
    noise = torch.randn(n_walkers, system.n_elec, 3, generator=generator, device=device,
                        dtype=dtype)
    return centres + width * noise


class MetropolisSampler:
    """Metropolis-Hastings walkers for a wavefunction ``(sign, logabs) = psi(r)``.

    Args:
        system: the molecule (for the initial walkers).
        n_walkers: number of independent chains.
        steps: Metropolis steps per :meth:`sweep` (decorrelation between energy evaluations;
            default 10).
        step_size: initial proposal width (bohr, default 0.2).
        target_acceptance: acceptance the step size adapts to (default 0.5).
        adapt: adapt the step size after every sweep (default True).
        device, dtype: of the walkers.
        seed: seed of the sampler's generator.
        rank, world_size: this process's share of the ``n_walkers`` chains when VMC runs on
            several processes (``torchrun``): the rank keeps the contiguous block
            ``torch.tensor_split(range(n_walkers), world_size)[rank]``. Every rank draws the
            random numbers of *all* chains from the same generator and uses its block, and the
            acceptance that adapts the step size is summed over all processes, so the walkers
            are the same as one process's, whatever the number of processes.

    Shapes:
        walkers: [n_local, n_elec, 3] (``n_local = n_walkers`` on one process); logabs:
            [n_local]

    Example:
        >>> from equivar.qmc import atom
        >>> psi = lambda r: (torch.ones(len(r)), -r.norm(dim=-1).sum(-1))  # hydrogen 1s
        >>> sampler = MetropolisSampler(atom("H"), 64, seed=0)
        >>> acceptance = sampler.sweep(psi)
        >>> sampler.walkers.shape
        torch.Size([64, 1, 3])
    """

    def __init__(self, system: Molecule, n_walkers: int, *, steps: int = 10,
                 step_size: float = 0.2, target_acceptance: float = 0.5, adapt: bool = True,
                 device=None, dtype=None, seed: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:  # fmt: skip
        if n_walkers < 1 or steps < 1:
            raise ValueError(f"n_walkers and steps must be >= 1, got {n_walkers} and {steps}")
        if not 0 <= rank < world_size or n_walkers < world_size:
            raise ValueError(f"{n_walkers} walkers cannot be shared by {world_size} processes "
                             f"(rank {rank}): each process needs at least one")
        bounds = [int(len(b)) for b in torch.arange(n_walkers).tensor_split(world_size)]
        self.n_total, self.start = int(n_walkers), sum(bounds[:rank])
        self.stop = self.start + bounds[rank]
        if not 0.0 < target_acceptance < 1.0:
            raise ValueError(f"target_acceptance must be in (0, 1), got {target_acceptance}")
        if not (step_size > 0 and math.isfinite(step_size)):
            raise ValueError(f"step_size must be positive, got {step_size}")
        self.system, self.steps, self.adapt = system, int(steps), bool(adapt)
        self.target_acceptance = float(target_acceptance)
        self.device = torch.device(device or "cpu")
        self.dtype = dtype or torch.get_default_dtype()
        self.generator = torch.Generator(self.device).manual_seed(int(seed))
        self.walkers = initial_walkers(system, n_walkers, self.generator, self.device,
                                       self.dtype)[self.start : self.stop]  # fmt: skip
        self.step_size = torch.tensor(float(step_size), device=self.device, dtype=self.dtype)

    @torch.no_grad()
    def sweep(self, wavefunction, steps: int | None = None) -> Tensor:
        """Advance every walker by ``steps`` Metropolis steps (default ``self.steps``).

        ``log|psi|`` of the current walkers is recomputed first (the parameters may have
        changed since the last sweep).

        Returns:
            the acceptance rate of this sweep (a 0-d tensor; no host sync).
        """
        r = self.walkers
        logabs = wavefunction(r)[1]
        accepted = torch.zeros((), device=self.device, dtype=self.dtype)
        n = self.steps if steps is None else int(steps)
        for _ in range(n):
            noise = torch.randn((self.n_total, *r.shape[1:]), generator=self.generator,
                                device=self.device, dtype=self.dtype)[self.start : self.stop]
            proposal = r + self.step_size * noise
            new_logabs = wavefunction(proposal)[1]
            u = torch.rand(self.n_total, generator=self.generator, device=self.device,
                           dtype=self.dtype)[self.start : self.stop]  # fmt: skip
            # accept with probability min(1, |psi'|^2/|psi|^2); NaN proposals are rejected
            accept = torch.log(u) < 2.0 * (new_logabs - logabs)
            r = torch.where(accept[:, None, None], proposal, r)
            logabs = torch.where(accept, new_logabs, logabs)
            accepted = accepted + accept.to(self.dtype).sum()
        acceptance = all_reduce_sum(accepted) / (n * self.n_total)
        if self.adapt:  # multiplicative, bounded: s <- s * exp(acceptance - target)
            factor = torch.exp(acceptance - self.target_acceptance)
            self.step_size = (self.step_size * factor).clamp(1e-3, 10.0)
        self.walkers = r
        return acceptance

    def burn_in(self, wavefunction, steps: int) -> Tensor:
        """``steps`` Metropolis steps in sweeps of ``self.steps``, adapting as it goes."""
        acceptance = torch.zeros((), device=self.device, dtype=self.dtype)
        for _ in range(max(1, math.ceil(steps / self.steps)) if steps > 0 else 0):
            acceptance = self.sweep(wavefunction)
        return acceptance

    def state_dict(self) -> dict[str, Tensor]:
        """All walkers (every process's, gathered: a collective call on several processes),
        step size and generator state (tensors only: checkpoint-safe)."""
        return {"walkers": all_gather_cat(self.walkers), "step_size": self.step_size,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """From :meth:`state_dict`: this process keeps its block of the saved walkers."""
        walkers = state["walkers"].to(self.device, self.dtype)
        if walkers.shape[1:] != self.walkers.shape[1:] or walkers.shape[0] != self.n_total:
            raise ValueError(f"checkpointed walkers have shape {list(walkers.shape)}, expected "
                             f"[{self.n_total}, {self.system.n_elec}, 3]")
        self.walkers = walkers[self.start : self.stop]
        self.step_size = state["step_size"].to(self.device, self.dtype)
        self.generator.set_state(state["generator"].cpu())
