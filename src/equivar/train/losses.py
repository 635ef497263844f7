"""Weighted losses over targets and the metrics reported for them."""

from __future__ import annotations

from collections import defaultdict

import torch

from equivar import keys
from equivar.nn.scatter import scatter_sum
from equivar.train.config import LossConfig


def loss_weights(config: LossConfig) -> dict[str, float]:
    """Target name -> weight, for the non-zero weights."""
    weights = {
        keys.ENERGY: config.energy,
        keys.FORCES: config.forces,
        keys.STRESS: config.stress,
        keys.DIPOLE: config.dipole,
        keys.POLARIZABILITY: config.polarizability,
        **{k: float(v) for k, v in config.targets.items()},
    }
    return {k: float(w) for k, w in weights.items() if w}


def residuals(outputs: dict, batch, name: str) -> torch.Tensor:
    """Prediction minus target; energies are per atom (so the loss does not grow with size).

    Shapes:
        -> [n_graphs] (energies, scalars), [n_nodes, 3] (forces), [n_graphs, 3, 3] (tensors), ...
    """
    pred, target = outputs[name], getattr(batch, name)
    diff = pred - target.reshape(pred.shape).to(pred.dtype)
    if name == keys.ENERGY:
        n_atoms = torch.bincount(batch.batch, minlength=pred.shape[0]).to(pred.dtype)
        diff = diff / n_atoms
    return diff


def total_loss(
    outputs: dict,
    batch,
    weights: dict[str, float],
    config: LossConfig,
    counts: dict[str, float] | None = None,
    world: int = 1,
) -> tuple[torch.Tensor, dict[str, float]]:
    """``sum_k w_k * mean(loss(residual_k))`` over the weighted targets present in the batch.

    With ``counts`` (distributed training) each term is the local sum over the global number of
    elements times ``world``, so that DDP's gradient average is the gradient of the global mean.
    """
    total = 0.0
    parts = {}
    for name, weight in weights.items():
        if name not in outputs or getattr(batch, name, None) is None:
            continue
        r = residuals(outputs, batch, name)
        if config.kind == "huber":
            elementwise = torch.nn.functional.huber_loss(
                r, torch.zeros_like(r), delta=config.huber_delta, reduction="none"
            )
        else:
            elementwise = r.pow(2)
        if counts is None:
            term = elementwise.mean()
        else:
            term = elementwise.sum() * (world / counts[name])
        total = total + weight * term
        parts[name] = float(term.detach())
    if not parts:
        raise ValueError(f"no loss term: the batch carries none of the weighted targets "
                         f"{sorted(weights)} that the model predicts ({sorted(outputs)})")
    return total, parts


class MetricAccumulator:
    """Running MAE and RMSE per target (energy per atom; forces also per element)."""

    def __init__(self) -> None:
        self.abs = defaultdict(float)
        self.sq = defaultdict(float)
        self.count = defaultdict(int)

    @torch.no_grad()
    def add(self, outputs: dict, batch, names) -> None:
        for name in names:
            if name not in outputs or getattr(batch, name, None) is None:
                continue
            r = residuals(outputs, batch, name).detach().double()
            self._add(name, r)
            if name == keys.FORCES:
                z = batch.z  # [n_nodes]
                per_atom_abs = r.abs().sum(-1)  # [n_nodes]
                per_atom_sq = r.pow(2).sum(-1)
                species = torch.unique(z)
                idx = torch.searchsorted(species, z)
                abs_e = scatter_sum(per_atom_abs, idx, len(species))
                sq_e = scatter_sum(per_atom_sq, idx, len(species))
                cnt_e = torch.bincount(idx, minlength=len(species)) * 3
                for s, a, q, c in zip(species.tolist(), abs_e.tolist(), sq_e.tolist(),
                                      cnt_e.tolist(), strict=True):
                    key = f"forces[Z={s}]"
                    self.abs[key] += a
                    self.sq[key] += q
                    self.count[key] += c

    def _add(self, name: str, r: torch.Tensor) -> None:
        self.abs[name] += float(r.abs().sum())
        self.sq[name] += float(r.pow(2).sum())
        self.count[name] += r.numel()

    def result(self) -> dict[str, float]:
        out = {}
        for name, n in self.count.items():
            out[f"{name}_mae"] = self.abs[name] / n
            out[f"{name}_rmse"] = (self.sq[name] / n) ** 0.5
        return out
