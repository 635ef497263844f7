"""Parity plots and learning curves written as PNG next to the checkpoint."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curves(log_csv: Path, out_png: Path) -> None:
    """Training and validation loss (log scale) and learning rate against epoch."""
    with open(log_csv) as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return
    plt = _pyplot()
    epoch = [float(r["epoch"]) for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    for key in ("train_loss", "valid_loss"):
        ax1.semilogy(epoch, [float(r[key]) for r in rows], label=key)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend()
    ax2.semilogy(epoch, [float(r["lr"]) for r in rows])
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("learning rate")
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)


def parity(predictions: dict[str, np.ndarray], out_png: Path) -> None:
    """Predicted against reference for energy per atom and force components (test set)."""
    panels = []
    if "energy_pred" in predictions:
        n = predictions.get("n_atoms", np.ones_like(predictions["energy_pred"]))
        panels.append(("energy per atom (eV)", predictions["energy_true"] / n,
                       predictions["energy_pred"] / n))
    for name in sorted(k[:-5] for k in predictions if k.endswith("_pred")):
        if name != "energy":
            panels.append((name, predictions[f"{name}_true"].ravel(),
                           predictions[f"{name}_pred"].ravel()))
    if not panels:
        return
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.6), squeeze=False)
    for ax, (title, true, pred) in zip(axes[0], panels, strict=True):
        ax.scatter(true, pred, s=4, alpha=0.6)
        lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        mae = float(np.abs(pred - true).mean())
        ax.set_title(f"{title}\nMAE {mae:.3g}")
        ax.set_xlabel("reference")
        ax.set_ylabel("predicted")
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
