"""Energy-vs-iteration figure of a VMC run (matplotlib, the ``plot`` extra)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["plot_energy"]


def plot_energy(history: Mapping[str, Sequence[float]], path: str | os.PathLike, *,
                title: str = "", reference: float | None = None, window: int = 20) -> Path:
    """Save a PNG: mean local energy per iteration and its running mean (top, zoomed on the last
    80% of the run), the variance of the local energy on a log scale (bottom), and an optional
    reference energy.

    Args:
        history: ``{"energy": [...], "variance": [...]}`` per iteration (hartree, hartree^2).
        path: the PNG to write.
        title: figure title.
        reference: e.g. the exact energy, drawn as a dashed line.
        window: running-mean window (iterations).

    Raises:
        ImportError: matplotlib is not installed (``pip install equivar[plot]``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the energy plot needs matplotlib: pip install 'equivar[plot]'") from err
    energy = np.asarray(history["energy"], dtype=float)
    it = np.arange(1, energy.size + 1)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    top.plot(it, energy, lw=0.6, alpha=0.5, label="E per iteration")
    if energy.size >= window:
        run = np.convolve(energy, np.ones(window) / window, mode="valid")
        top.plot(it[window - 1:], run, lw=1.5, label=f"running mean ({window})")
    if reference is not None:
        top.axhline(reference, color="k", ls="--", lw=1, label=f"reference {reference:.6f}")
    if energy.size >= 10:  # zoom on the converging part: the last 80% of the run
        tail = energy[energy.size // 5:]
        lo, hi = np.percentile(tail, 0.5), np.percentile(tail, 95)
        if reference is not None:
            lo = min(lo, reference)
        pad = 0.1 * (hi - lo) + 1e-4
        top.set_ylim(lo - pad, hi + pad)
    top.set_ylabel("energy (Ha)")
    top.legend(loc="upper right", fontsize=8)
    bottom.semilogy(it, np.asarray(history["variance"], dtype=float), lw=0.8)
    bottom.set_ylabel("var(E_L) (Ha^2)")
    bottom.set_xlabel("iteration")
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
