r"""VMC optimisers: the energy gradient with Adam, and natural gradient by (minimal) stochastic
reconfiguration with SPRING momentum.

The energy gradient is ``dE/dtheta = 2 E[(E_L - E) d log|psi| / dtheta]`` over walkers drawn from
``|psi|^2`` (the ``E`` subtracted is the control variate that makes it vanish at an eigenstate).
Local energies are clipped around their median first (:func:`clip_local_energies`): near nodes
``E_L`` has heavy tails that would otherwise dominate a batch.

Natural gradient (:class:`StochasticReconfiguration`) preconditions with the Fisher matrix
``S = O^T O`` of the centred log-derivatives ``O`` [n_walkers, n_params]: it solves
``(S + lambda) delta = -g`` in the *walker* space, ``delta = -O^T (O O^T + lambda)^{-1} e``, at the
cost of one ``n_walkers x n_walkers`` Cholesky factorisation (minSR), so it scales to millions of
parameters; SPRING adds a momentum ``mu`` that reuses the previous update. The Kronecker-factored
alternative is :class:`equivar.qmc.kfac.KFAC`; :data:`equivar.qmc.driver.OPTIMIZERS` names all.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

__all__ = ["AdamVMC", "StochasticReconfiguration", "clip_local_energies", "learning_rate",
           "per_walker_gradients"]


def learning_rate(lr: float, iteration: int, decay: float) -> float:
    """``lr / (1 + iteration / decay)`` (FermiNet's schedule; ``decay <= 0``: constant)."""
    return lr / (1.0 + iteration / decay) if decay > 0 else lr


def clip_local_energies(e_local: Tensor, width: float = 5.0) -> Tensor:
    """Clip to ``median +- width * mean|E_L - median|`` (``width <= 0``: no clipping).

    Shapes:
        e_local: [n_walkers] -> [n_walkers]
    """
    if width <= 0:
        return e_local
    centre = e_local.median()
    spread = (e_local - centre).abs().mean()
    return torch.clamp(e_local, centre - width * spread, centre + width * spread)


def per_walker_gradients(wavefunction: nn.Module, r: Tensor,
                         chunk_size: int | None = None) -> Tensor:
    """``d log|psi(r_w)| / d theta`` for every walker, flattened over the trainable parameters
    (in ``named_parameters`` order), by ``torch.func.vmap`` over walkers.

    Shapes:
        r: [n_walkers, n_elec, 3] -> [n_walkers, n_params]
    """
    names = [k for k, p in wavefunction.named_parameters() if p.requires_grad]
    params = {k: p.detach() for k, p in wavefunction.named_parameters() if p.requires_grad}
    buffers = dict(wavefunction.named_buffers())

    def logabs(p: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(wavefunction, (p, buffers), (x.unsqueeze(0),))[1].squeeze(0)

    grads = vmap(grad(logabs), in_dims=(None, 0), chunk_size=chunk_size)(params, r.detach())
    return torch.cat([grads[k].flatten(1) for k in names], dim=1)  # [n_walkers, n_params]


class AdamVMC:
    """Adam on the VMC energy gradient (the standard, first-order baseline).

    Args:
        wavefunction: the model.
        lr: initial learning rate (default 1e-3); decays as :func:`learning_rate`.
        decay: iterations to halve the learning rate (default 10000; <= 0: constant).
        clip_width: see :func:`clip_local_energies` (default 5).
        betas: Adam's (default (0.9, 0.999)).
    """

    def __init__(self, wavefunction: nn.Module, *, lr: float = 1e-3, decay: float = 1e4,
                 clip_width: float = 5.0, betas: tuple[float, float] = (0.9, 0.999)) -> None:
        self.wavefunction, self.lr, self.decay = wavefunction, lr, decay
        self.clip_width = clip_width
        self.adam = torch.optim.Adam(wavefunction.parameters(), lr=lr, betas=betas)
        self.iteration = 0

    def step(self, r: Tensor, e_local: Tensor) -> None:
        """One update from walkers ``r`` [n_walkers, n_elec, 3] and their local energies."""
        for group in self.adam.param_groups:
            group["lr"] = learning_rate(self.lr, self.iteration, self.decay)
        e = clip_local_energies(e_local.detach(), self.clip_width)
        weights = e - e.mean()  # [n_walkers]
        self.adam.zero_grad(set_to_none=True)
        logabs = self.wavefunction(r.detach())[1]
        # gradient of this surrogate = 2 E[(E_L - E) d log|psi|]
        (2.0 * (weights * logabs).mean()).backward()
        self.adam.step()
        self.iteration += 1

    def state_dict(self) -> dict:
        return {"adam": self.adam.state_dict(), "iteration": self.iteration}

    def load_state_dict(self, state: dict) -> None:
        self.adam.load_state_dict(state["adam"])
        self.iteration = int(state["iteration"])


class StochasticReconfiguration:
    r"""Natural-gradient descent by minimal-SR (walker-space) stochastic reconfiguration with
    SPRING momentum.

    With ``O`` the log-derivatives centred over walkers and divided by ``sqrt(n_walkers)``, and
    ``e = (E_L - mean E_L) / sqrt(n_walkers)`` (clipped), each step solves

    .. math:: \phi_t = O^T (O O^T + \lambda I)^{-1} (-e - \mu O \phi_{t-1}) + \mu \phi_{t-1}

    (``mu = 0``: plain minSR, i.e. ``(S + lambda)^{-1}`` applied to the gradient) and moves the
    parameters by ``lr_t phi_t``, shrunk if needed so that ``lr_t^2 |O phi_t|^2 <= max_norm``
    (a trust region in the Fisher metric). The linear algebra runs in float64.

    Args:
        wavefunction: the model (vmap-compatible).
        lr: initial learning rate (default 0.05); decays as :func:`learning_rate`.
        decay: iterations to halve it (default 10000).
        damping: ``lambda`` (default 1e-3).
        momentum: SPRING's ``mu`` (default 0.9; 0 for minSR).
        max_norm: Fisher-norm bound of one step (default 1e-2; <= 0: none).
        clip_width: see :func:`clip_local_energies` (default 5).
        chunk_size: walkers per vmap chunk for the log-derivatives (default all).

    References:
        Sorella, Phys. Rev. Lett. 80, 4558 (1998); Chen, Heyl, "Empowering deep neural quantum
        states through efficient optimization", Nat. Phys. 20, 1476 (2024) (minSR); Goldshlager,
        Abrahamsen, Lin, "A Kaczmarz-inspired approach to accelerate the optimization of neural
        network wavefunctions", J. Comput. Phys. 516, 113351 (2024) (SPRING).
    """

    def __init__(self, wavefunction: nn.Module, *, lr: float = 0.05, decay: float = 1e4,
                 damping: float = 1e-3, momentum: float = 0.9, max_norm: float = 1e-2,
                 clip_width: float = 5.0, chunk_size: int | None = None) -> None:
        if damping <= 0:
            raise ValueError(f"damping must be > 0, got {damping}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.wavefunction = wavefunction
        self.lr, self.decay, self.damping, self.momentum = lr, decay, damping, momentum
        self.max_norm, self.clip_width, self.chunk_size = max_norm, clip_width, chunk_size
        self.params = [p for p in wavefunction.parameters() if p.requires_grad]
        n = sum(p.numel() for p in self.params)
        ref = self.params[0]
        self.previous = torch.zeros(n, dtype=torch.float64, device=ref.device)
        self.iteration = 0

    @torch.no_grad()
    def step(self, r: Tensor, e_local: Tensor) -> None:
        """One update from walkers ``r`` [n_walkers, n_elec, 3] and their local energies."""
        n_walkers = r.shape[0]
        o = per_walker_gradients(self.wavefunction, r, self.chunk_size).to(torch.float64)
        o = (o - o.mean(0)) / math.sqrt(n_walkers)  # [n_walkers, n_params]
        e = clip_local_energies(e_local.detach(), self.clip_width).to(torch.float64)
        e = (e - e.mean()) / math.sqrt(n_walkers)  # [n_walkers]
        mu = self.momentum
        t = o @ o.T  # [n_walkers, n_walkers]
        t.diagonal().add_(self.damping)
        rhs = -e - mu * (o @ self.previous)
        chol, info = torch.linalg.cholesky_ex(t)
        x = torch.cholesky_solve(rhs.unsqueeze(-1), chol).squeeze(-1)  # [n_walkers]
        phi = o.T @ x + mu * self.previous  # [n_params]
        lr = learning_rate(self.lr, self.iteration, self.decay)
        if self.max_norm > 0:  # trust region: lr^2 |O phi|^2 <= max_norm
            fisher = (o @ phi).square().sum()
            scale = torch.clamp(torch.sqrt(self.max_norm / (lr**2 * fisher + 1e-30)), max=1.0)
            phi = phi * scale
        # a failed factorisation (info > 0, never seen with damping > 0) leaves parameters alone
        phi = torch.where(info == 0, phi, torch.zeros_like(phi))
        self.previous = phi
        offset = 0
        for p in self.params:
            k = p.numel()
            p.add_(phi[offset:offset + k].view_as(p).to(p.dtype), alpha=lr)
            offset += k
        self.iteration += 1

    def state_dict(self) -> dict:
        return {"previous": self.previous, "iteration": self.iteration}

    def load_state_dict(self, state: dict) -> None:
        previous = state["previous"].to(self.previous.device, torch.float64)
        if previous.shape != self.previous.shape:
            raise ValueError(f"checkpointed SR state has {previous.numel()} parameters, the model "
                             f"{self.previous.numel()}")
        self.previous, self.iteration = previous, int(state["iteration"])

