r"""KFAC: Kronecker-factored natural gradient for VMC, as FermiNet trains its wavefunctions.

The natural gradient preconditions the energy gradient ``g = 2 E[(E_L - E) s]`` (``s = d log|psi|
/ d theta`` per walker, the *score*) with the Fisher matrix ``F = 2 E[s s^T]`` (FermiNet's
choice: ``log|psi|`` read as the mean of a normal of variance 1/2, so that ``F^{-1} g`` has the
scale of stochastic reconfiguration's ``S^{-1} E[(E_L - E) s]``). KFAC approximates ``F`` by a
block per layer, and each block of a dense layer by a Kronecker product of two small matrices.

For an ``nn.Linear`` applied at ``R`` positions of every walker (once per walker for the orbital
maps, once per electron or electron pair for the stream layers; weight ``W`` [out, in], bias
``b`` [out], together ``W~ = [W | b]`` [out, in + 1]), walker ``n``'s score is
``sum_r g_nr a_nr^T`` with ``a_nr`` the layer's input with a 1 appended and ``g_nr`` the gradient
of ``log|psi_n|`` with respect to the layer's output. Its Fisher block is approximated as

.. math:: F_{W} \approx G \otimes A, \quad A = \frac{1}{NR} \sum_{n,r} a_{nr} a_{nr}^T, \quad
          G = \frac{2}{N} \sum_{n,r} g_{nr} g_{nr}^T

(rows of ``W~`` outermost; for ``R = 1`` and inputs independent of output gradients this is
exact; for ``R > 1`` it is FermiNet's "repeated dense" block, KFAC-expand). The inputs ``a`` come
from forward hooks and the output gradients ``g`` from one ordinary backward pass of
``sum_n log|psi_n|`` (walkers are independent, so that gives each walker's own gradient). The
factors are exponential moving averages (``cov_ema_decay``, the first step takes the batch's),
and the damped block is inverted through the factors' eigendecompositions
``A = U_A diag(a) U_A^T``, ``G = U_G diag(c) U_G^T``:

.. math:: \Delta = U_G \left[ (U_G^T \nabla_{W~} U_A) / D \right] U_A^T, \qquad
          D_{oi} = (c_o + \sqrt\lambda / \pi)(a_i + \pi \sqrt\lambda)
          \quad\text{or}\quad D_{oi} = c_o a_i + \lambda

(``damping_mode="pi"``: factored Tikhonov damping with Martens and Grosse's
``pi = sqrt((tr A / dim A) / (tr G / dim G))``, FermiNet's; ``"exact"``: the inverse of
``G (x) A + lambda I`` itself). Every other trainable parameter (the envelopes, the Jastrow factor,
a linear layer whose forward is never called) gets a diagonal Fisher ``2 E[s^2]`` from per-walker
scores (``torch.func.vmap``), also averaged. The step is ``-lr_t Delta``, scaled down if needed so
that its Fisher norm ``lr_t^2 g^T Delta <= norm_constraint`` (kfac-jax's norm constraint), plus
optional momentum times the previous step.

References:
    Martens, Grosse, "Optimizing neural networks with Kronecker-factored approximate curvature",
    ICML (2015); Pfau, Spencer, Matthews, Foulkes, Phys. Rev. Research 2, 033429 (2020)
    (FermiNet, KFAC for VMC); Eschenhagen et al., "Kronecker-factored approximate curvature for
    modern neural network architectures", NeurIPS (2023) (KFAC-expand for shared weights).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from equivar.qmc.optim import clip_local_energies, learning_rate

__all__ = ["DAMPING_MODES", "KFAC"]

#: how the damping enters a Kronecker block (see the module docstring)
DAMPING_MODES = ("pi", "exact")


def _eigh(matrix: Tensor, what: str, iteration: int) -> tuple[Tensor, Tensor]:
    """Eigenvalues (clamped at 0: the factors are positive semi-definite) and eigenvectors."""
    try:
        values, vectors = torch.linalg.eigh(matrix)
    except RuntimeError as err:  # NaN/inf statistics: the eigensolver does not converge
        raise FloatingPointError(f"KFAC: the curvature factor {what} could not be "
                                 f"diagonalised at iteration {iteration} (non-finite local "
                                 f"energies or scores?); lower lr or raise damping") from err
    return values.clamp_min(0.0), vectors


class KFAC:
    r"""Kronecker-factored natural-gradient descent on the VMC energy (see the module docstring).

    Linear layers are found generically (every ``nn.Linear`` with trainable weights whose
    forward runs when the wavefunction is evaluated); a layer's parameters must be used only
    through its forward. Statistics and linear algebra run in float64.

    Args:
        wavefunction: the model, ``r [n_walkers, n_elec, 3] -> (sign, logabs)`` each
            [n_walkers], walkers independent (vmap-compatible for the diagonal part).
        lr: initial learning rate (default 0.05, FermiNet's); decays as
            :func:`~equivar.qmc.optim.learning_rate`.
        decay: iterations to halve it (default 10000).
        damping: Tikhonov ``lambda`` added to the Fisher (default 1e-3).
        norm_constraint: bound on ``lr_t^2 g^T F^{-1} g`` of one step (default 1e-3; <= 0: none).
        momentum: weight of the previous step (default 0, FermiNet's).
        cov_ema_decay: moving-average weight of the old curvature statistics (default 0.95).
        damping_mode: ``"pi"`` (default) or ``"exact"`` (see the module docstring).
        clip_width: see :func:`~equivar.qmc.optim.clip_local_energies` (default 5).
        chunk_size: walkers per vmap chunk for the diagonal part's scores (default all).

    Shapes:
        step(r [n_walkers, n_elec, 3], e_local [n_walkers]); factors ``A`` [in + 1, in + 1]
        (``in`` without a bias), ``G`` [out, out] per layer; diagonal statistics shaped like
        their parameters.

    Example:
        >>> from equivar.models import build
        >>> from equivar.qmc import atom
        >>> psi = build("wavefunction", system=atom("He"), preset="S", dtype="float64")
        >>> opt = KFAC(psi, lr=0.05)
        >>> opt.step(torch.randn(16, 2, 3, dtype=torch.float64),
        ...          torch.randn(16, dtype=torch.float64))
        >>> sorted(opt.state_dict()["factors"])[:2]
        ['head.orbital_maps.0', 'head.orbital_maps.1']

    References:
        Martens, Grosse, ICML (2015); Pfau et al., Phys. Rev. Research 2, 033429 (2020).
    """

    def __init__(self, wavefunction: nn.Module, *, lr: float = 0.05, decay: float = 1e4,
                 damping: float = 1e-3, norm_constraint: float = 1e-3, momentum: float = 0.0,
                 cov_ema_decay: float = 0.95, damping_mode: str = "pi",
                 clip_width: float = 5.0, chunk_size: int | None = None) -> None:
        if not (math.isfinite(damping) and damping > 0):
            raise ValueError(f"damping must be a finite number > 0, got {damping}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if not 0 <= cov_ema_decay < 1:
            raise ValueError(f"cov_ema_decay must be in [0, 1), got {cov_ema_decay}")
        if damping_mode not in DAMPING_MODES:
            raise ValueError(f"damping_mode must be one of {DAMPING_MODES}, got "
                             f"{damping_mode!r}")
        self.wavefunction = wavefunction
        self.lr, self.decay, self.damping, self.momentum = lr, decay, damping, momentum
        self.norm_constraint, self.cov_ema_decay = norm_constraint, cov_ema_decay
        self.damping_mode, self.clip_width, self.chunk_size = damping_mode, clip_width, chunk_size
        self.params = {k: p for k, p in wavefunction.named_parameters() if p.requires_grad}
        if not self.params:
            raise ValueError("the wavefunction has no trainable parameters")
        # candidate Kronecker layers; the ones whose forward runs are fixed at the first step
        self.linears = {name: m for name, m in wavefunction.named_modules()
                        if isinstance(m, nn.Linear) and m.weight.requires_grad
                        and (m.bias is None or m.bias.requires_grad)}  # fmt: skip
        self.factors: dict[str, dict[str, Tensor]] = {}  # layer -> {"A", "G"} (float64)
        self.diagonal: dict[str, Tensor] = {}  # parameter -> E[2 s^2] (float64)
        self.velocity: dict[str, Tensor] = {}  # parameter -> previous step (float64)
        self.iteration = 0

    # ----------------------------------------------------------------- statistics of a batch
    def _layer_records(self, r: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        """Inputs (with the 1 of the bias) and output gradients of every linear layer that ran.

        Returns:
            ``{layer: (a [n_walkers, R, in + 1], g [n_walkers, R, out])}`` in float64; ``R``
            counts the positions (and calls) at which the layer was applied.
        """
        calls: dict[str, list[tuple[Tensor, Tensor]]] = {name: [] for name in self.linears}

        def hook(name: str):
            def record(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
                calls[name].append((inputs[0].detach(), output))
            return record

        handles = [m.register_forward_hook(hook(name)) for name, m in self.linears.items()]
        try:
            with torch.enable_grad():
                logabs = self.wavefunction(r.detach())[1]  # [n_walkers]
                fired = [(name, x, y) for name, c in calls.items() for x, y in c]
                outputs = [y for _, _, y in fired]
                grads = torch.autograd.grad(logabs.sum(), outputs, allow_unused=True) \
                    if outputs else []  # fmt: skip
        finally:
            for h in handles:
                h.remove()
        n_walkers = r.shape[0]
        pieces: dict[str, list[tuple[Tensor, Tensor]]] = {}
        for (name, x, y), g in zip(fired, grads, strict=True):
            if x.dim() < 2 or x.shape[0] != n_walkers:
                raise ValueError(f"KFAC: layer {name!r} was applied to an input of shape "
                                 f"{list(x.shape)}, not batched over the {n_walkers} walkers")
            g = torch.zeros_like(y) if g is None else g
            a = x.reshape(n_walkers, -1, x.shape[-1]).to(torch.float64)  # [n_w, R, in]
            if self.linears[name].bias is not None:
                a = torch.cat([a, torch.ones_like(a[..., :1])], dim=-1)  # [n_w, R, in + 1]
            g = g.detach().reshape(n_walkers, -1, g.shape[-1]).to(torch.float64)  # [n_w, R, out]
            pieces.setdefault(name, []).append((a, g))
        return {name: (torch.cat([a for a, _ in p], 1), torch.cat([g for _, g in p], 1))
                for name, p in pieces.items()}

    def _diagonal_scores(self, r: Tensor, names: list[str]) -> Tensor:
        """Per-walker scores of the parameters in ``names`` (the non-Kronecker ones).

        Shapes:
            r: [n_walkers, n_elec, 3] -> [n_walkers, sum of their sizes] (float64)
        """
        fixed = {k: p.detach() for k, p in self.wavefunction.named_parameters()}
        buffers = dict(self.wavefunction.named_buffers())
        chosen = {k: fixed.pop(k) for k in names}

        def logabs(p: dict[str, Tensor], x: Tensor) -> Tensor:
            out = functional_call(self.wavefunction, ({**fixed, **p}, buffers), (x.unsqueeze(0),))
            return out[1].squeeze(0)

        scores = vmap(grad(logabs), in_dims=(None, 0), chunk_size=self.chunk_size)(
            chosen, r.detach())
        return torch.cat([scores[k].flatten(1) for k in names], 1).to(torch.float64)

    def _kron_names(self, records: dict) -> list[str]:
        """The Kronecker layers: fixed by the first step (or the loaded state), then checked."""
        if self.factors:
            if set(records) != set(self.factors):
                raise ValueError(f"KFAC: the linear layers that ran ({sorted(records)}) differ "
                                 f"from those of the optimiser state ({sorted(self.factors)})")
            return list(self.factors)
        return sorted(records)

    def _owned(self, layer: str) -> list[str]:
        """Parameter names of a Kronecker layer (weight, then bias)."""
        m = self.linears[layer]
        return [f"{layer}.weight"] + ([f"{layer}.bias"] if m.bias is not None else [])

    # ----------------------------------------------------------------------------- the step
    def _ema(self, old: Tensor | None, new: Tensor) -> Tensor:
        if old is None:  # the first step takes the batch's statistics
            return new
        return self.cov_ema_decay * old + (1.0 - self.cov_ema_decay) * new

    def _precondition(self, grad_w: Tensor, a_mat: Tensor, g_mat: Tensor, layer: str) -> Tensor:
        """The damped Kronecker block's inverse applied to ``grad_w`` [out, in + 1]."""
        a_val, a_vec = _eigh(a_mat, f"A of {layer}", self.iteration)
        g_val, g_vec = _eigh(g_mat, f"G of {layer}", self.iteration)
        lam = self.damping
        if self.damping_mode == "pi":
            scale_a = a_val.sum() / a_val.numel()  # tr A / dim A
            scale_g = g_val.sum() / g_val.numel()
            ok = (scale_a > 0) & (scale_g > 0)
            pi = torch.where(ok, torch.sqrt(scale_a / torch.where(ok, scale_g, 1.0)), 1.0)
            denom = torch.outer(g_val + math.sqrt(lam) / pi, a_val + pi * math.sqrt(lam))
        else:
            denom = torch.outer(g_val, a_val) + lam  # [out, in + 1]
        rotated = g_vec.T @ grad_w @ a_vec  # [out, in + 1] in the eigenbases
        return g_vec @ (rotated / denom) @ a_vec.T

    @torch.no_grad()
    def step(self, r: Tensor, e_local: Tensor) -> None:
        """One update from walkers ``r`` [n_walkers, n_elec, 3] and their local energies
        ``e_local`` [n_walkers]."""
        if r.dim() != 3 or e_local.shape != r.shape[:1]:
            raise ValueError(f"KFAC.step needs r [n_walkers, n_elec, 3] and e_local [n_walkers], "
                             f"got {list(r.shape)} and {list(e_local.shape)}")
        n_walkers = r.shape[0]
        e = clip_local_energies(e_local.detach(), self.clip_width).to(torch.float64)
        weights = (2.0 / n_walkers) * (e - e.mean())  # [n_walkers]: g = sum_n w_n s_n
        records = self._layer_records(r)
        kron = self._kron_names(records)
        owned = {p for layer in kron for p in self._owned(layer)}
        diag = [k for k in self.params if k not in owned]
        grads: dict[str, Tensor] = {}  # parameter -> energy gradient (float64)
        steps: dict[str, Tensor] = {}  # parameter -> preconditioned gradient
        for layer in kron:
            a, g = records[layer]  # [n_w, R, in + 1], [n_w, R, out]
            a_new = torch.einsum("nri,nrj->ij", a, a) / (a.shape[0] * a.shape[1])
            g_new = torch.einsum("nro,nrp->op", g, g) * (2.0 / n_walkers)
            old = self.factors.get(layer, {})
            a_mat, g_mat = self._ema(old.get("A"), a_new), self._ema(old.get("G"), g_new)
            self.factors[layer] = {"A": a_mat, "G": g_mat}
            grad_w = torch.einsum("n,nro,nri->oi", weights, g, a)  # [out, in + 1]
            delta = self._precondition(grad_w, a_mat, g_mat, layer)
            names = self._owned(layer)
            n_in = self.linears[layer].in_features
            grads[names[0]], steps[names[0]] = grad_w[:, :n_in], delta[:, :n_in]
            if len(names) == 2:
                grads[names[1]], steps[names[1]] = grad_w[:, n_in], delta[:, n_in]
        if diag:
            s = self._diagonal_scores(r, diag)  # [n_walkers, n_diag]
            offset = 0
            for k in diag:
                n, shape = self.params[k].numel(), self.params[k].shape
                s_k = s[:, offset:offset + n]  # [n_walkers, numel]
                offset += n
                fisher = self._ema(self.diagonal.get(k), 2.0 * s_k.square().mean(0).view(shape))
                self.diagonal[k] = fisher
                grads[k] = (weights @ s_k).view(shape)
                steps[k] = grads[k] / (fisher + self.damping)
        self._apply(grads, steps)

    def _apply(self, grads: dict[str, Tensor], steps: dict[str, Tensor]) -> None:
        """Norm constraint, momentum, and the parameter update."""
        lr = learning_rate(self.lr, self.iteration, self.decay)
        scale = 1.0
        if self.norm_constraint > 0:  # lr^2 g^T F^-1 g <= norm_constraint
            sq = sum((grads[k] * steps[k]).sum() for k in steps) * lr**2
            scale = torch.clamp(torch.sqrt(self.norm_constraint / (sq + 1e-30)), max=1.0)
        for k, delta in steps.items():
            update = -lr * scale * delta
            if self.momentum > 0 and k in self.velocity:
                update = update + self.momentum * self.velocity[k]
            self.velocity[k] = update
            p = self.params[k]
            p.add_(update.to(p.dtype))
        self.iteration += 1

    # ---------------------------------------------------------------------- checkpointing
    def state_dict(self) -> dict:
        """Plain data and tensors (``torch.load(weights_only=True)`` reads it back)."""
        return {"iteration": self.iteration,
                "factors": {k: dict(v) for k, v in self.factors.items()},
                "diagonal": dict(self.diagonal), "velocity": dict(self.velocity)}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output, checked against this wavefunction.

        Raises:
            ValueError: a layer or parameter the model does not have, or a wrong shape.
        """
        device = next(iter(self.params.values())).device
        factors = {}
        for layer, pair in state["factors"].items():
            m = self.linears.get(layer)
            if m is None:
                raise ValueError(f"KFAC state has factors of layer {layer!r}, which this "
                                 "wavefunction has no trainable nn.Linear named so")
            n_in = m.in_features + (m.bias is not None)
            want = {"A": (n_in, n_in), "G": (m.out_features, m.out_features)}
            for key, shape in want.items():
                if tuple(pair[key].shape) != shape:
                    raise ValueError(f"KFAC state: factor {key} of {layer!r} has shape "
                                     f"{list(pair[key].shape)}, the model needs {list(shape)}")
            factors[layer] = {k: pair[k].to(device, torch.float64) for k in ("A", "G")}
        for what in ("diagonal", "velocity"):
            for k, v in state[what].items():
                if k not in self.params or v.shape != self.params[k].shape:
                    raise ValueError(f"KFAC state: {what} entry {k!r} of shape "
                                     f"{list(v.shape)} matches no parameter of the wavefunction")
        self.factors = factors
        self.diagonal = {k: v.to(device, torch.float64) for k, v in state["diagonal"].items()}
        self.velocity = {k: v.to(device, torch.float64) for k, v in state["velocity"].items()}
        self.iteration = int(state["iteration"])
