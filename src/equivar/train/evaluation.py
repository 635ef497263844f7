"""Evaluation of a trained model: metrics, predictions, and its equivariance error."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch_geometric.data import Batch

from equivar import keys
from equivar.testing.equivariance import equivariance_error as measure_equivariance
from equivar.train.losses import MetricAccumulator

DEFAULT_TARGETS = (keys.ENERGY, keys.FORCES, keys.STRESS, keys.DIPOLE, keys.POLARIZABILITY)


def batches(dataset, batch_size: int, indices: Sequence[int] | None = None):
    """Batches of ``dataset[i]`` in order (no worker processes: graphs are cached in memory)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch size must be a whole number >= 1, got {batch_size!r}")
    indices = list(range(len(dataset))) if indices is None else list(indices)
    for start in range(0, len(indices), batch_size):
        yield Batch.from_data_list([dataset[i] for i in indices[start : start + batch_size]])


def evaluate(
    model: nn.Module,
    dataset,
    *,
    batch_size: int = 32,
    targets: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    keep_predictions: bool = False,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """MAE/RMSE of every target the model predicts and the data carries.

    Args:
        model: any equivar model (``model(batch) -> dict``).
        dataset: an ``AtomsDataset`` (or any sequence of ``Data``).
        batch_size: structures per batch.
        targets: names to score (default: energy, forces, stress, dipole, polarizability and any
            other output the data carries).
        device: where to run (default: the model's device).
        keep_predictions: also return predictions and targets as arrays.

    Returns:
        ``(metrics, predictions)``: ``{"energy_mae": ..., "forces_rmse": ..., "forces[Z=1]_mae":
        ...}`` (energies per atom) and ``{"<name>_pred": array, "<name>_true": array}``.
    """
    device = device or next(model.parameters()).device
    model.eval()
    acc = MetricAccumulator()
    preds: dict[str, list] = {}
    for batch in batches(dataset, batch_size):
        batch = batch.to(device)
        out = model(batch)
        names = targets or [k for k in out if getattr(batch, k, None) is not None]
        acc.add(out, batch, names)
        if keep_predictions:
            for name in names:
                if name in out and getattr(batch, name, None) is not None:
                    preds.setdefault(f"{name}_pred", []).append(out[name].detach().cpu())
                    preds.setdefault(f"{name}_true", []).append(getattr(batch, name).cpu())
            if keys.ENERGY in names and keys.ENERGY in out:
                n = torch.bincount(batch.batch, minlength=batch.num_graphs).cpu()
                preds.setdefault("n_atoms", []).append(n)
    arrays = {k: torch.cat(v).numpy() for k, v in preds.items()}
    return acc.result(), arrays


def equivariance_error(model: nn.Module, batch) -> float:
    """Worst relative error of any output under a random proper and improper rotation.

    Measured in the model's own precision (so float32/TF32/bf16 rounding shows), never raising;
    this is what training logs beside the loss at every validation. It is the measurement
    :func:`equivar.testing.equivariance_error` (one draw of each kind, purely relative errors),
    reduced to its largest number.

    Args:
        model: any equivar model (``model(batch) -> dict``), in ``eval()`` mode.
        batch: a ``Batch`` on the model's device.

    Returns:
        ``max |f(R x) - R f(x)| / max |R f(x)|`` over the outputs and the two rotations
        (0.0 when the model has no outputs).
    """
    deviations = measure_equivariance(model, batch, n_rotations=1, translation=False,
                                      permutation=False, edge_shuffle=False)
    return max((d.error for per in deviations.values() for d in per.values()), default=0.0)


#: Units of the metrics :func:`evaluate` returns (equivar's units, :mod:`equivar.keys`; energies
#: per atom). Other targets are in the units of the data.
METRIC_UNITS: dict[str, str] = {
    keys.ENERGY: "eV/atom", keys.FORCES: "eV/A", keys.STRESS: "eV/A^3", keys.VIRIAL: "eV",
    keys.DIPOLE: "e*A", keys.POLARIZABILITY: "A^3", keys.CHARGES: "e",
}


def metric_unit(name: str) -> str:
    """The unit of a metric's target (``"forces[Z=1]"`` -> ``"eV/A"``; other targets:
    ``"as stored"``, the unit of the data)."""
    return METRIC_UNITS.get(name.split("[", 1)[0], "as stored")


def metric_table(metrics: dict[str, float]) -> str:
    """Plain-text table of MAE/RMSE per target with its unit (energies in eV/atom, forces in
    eV/A; see :data:`METRIC_UNITS`), the numbers as :func:`evaluate` returns them.

    Example:
        >>> print(metric_table({"energy_mae": 0.002, "energy_rmse": 0.003}))
        target  unit               MAE          RMSE
        energy  eV/atom          0.002         0.003
    """
    names = sorted({k.rsplit("_", 1)[0] for k in metrics})
    width = max([len(n) for n in names] + [6])
    lines = [f"{'target':<{width}}  {'unit':<8}  {'MAE':>12}  {'RMSE':>12}"]
    for n in names:
        lines.append(f"{n:<{width}}  {metric_unit(n):<8}  "
                     f"{metrics.get(n + '_mae', float('nan')):>12.6g}  "
                     f"{metrics.get(n + '_rmse', float('nan')):>12.6g}")
    return "\n".join(lines)
