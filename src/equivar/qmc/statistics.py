"""Honest error bars for correlated Monte Carlo series: blocking and autocorrelation time.

Successive VMC energies are correlated (walkers move a little between evaluations), so the naive
``std / sqrt(n)`` underestimates the error of their mean. :func:`blocking` averages neighbours
pairwise, level after level, until the block means are uncorrelated, and reports the standard
error at that level; :func:`autocorrelation_time` estimates the integrated autocorrelation time
``tau`` with Sokal's self-consistent window, so ``error = std * sqrt(tau / n)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["EnergyEstimate", "autocorrelation_time", "blocking", "estimate"]


def _chi2_quantile_99(df: int) -> float:
    """0.99 quantile of chi-squared with ``df`` degrees of freedom (Wilson-Hilferty, ~0.5%)."""
    z = 2.3263478740408408  # standard normal 0.99 quantile
    return df * (1.0 - 2.0 / (9 * df) + z * math.sqrt(2.0 / (9 * df))) ** 3


def blocking(x: Sequence[float] | np.ndarray) -> tuple[float, int]:
    """Standard error of the mean of a correlated series by automated blocking.

    At level k the series is averaged in pairs k times (an odd leftover sample is dropped from
    the front). If the block means of levels ``j, j+1, ...`` are uncorrelated, each
    ``n_k (gamma_k / s2_k)^2`` (``gamma_k`` the lag-one autocovariance, ``s2_k`` the variance,
    ``n_k`` the length at level ``k``) is approximately chi-squared with one degree of freedom;
    the chosen level is the first ``j`` whose sum over ``k >= j`` is below the 0.99 quantile of
    chi-squared with as many degrees of freedom. That test has little power just below the
    plateau, so the level then rises while the next one (with at least 16 blocks) gives an error
    larger by more than this level's own uncertainty ``err / sqrt(2 (n_j - 1))``. The error is
    ``sqrt(s2_j / (n_j - 1))`` at the chosen level.

    Args:
        x: the series, e.g. the mean local energy of every iteration (at least 4 values).

    Returns:
        ``(standard_error, level)``.

    Raises:
        ValueError: fewer than 4 values, or non-finite values.

    References:
        Flyvbjerg, Petersen, J. Chem. Phys. 91, 461 (1989); Jonsson, Phys. Rev. E 98, 043304
        (2018), the automated choice of the level.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    if x.size < 4:
        raise ValueError(f"blocking needs at least 4 values, got {x.size}")
    if not np.isfinite(x).all():
        raise ValueError("blocking: the series contains NaN or inf")
    stats = []  # (n_k, s2_k, gamma_k) per level
    while x.size >= 2:
        d = x - x.mean()
        s2 = float(np.mean(d * d))
        gamma = float(np.mean(d[:-1] * d[1:])) * (x.size - 1) / x.size
        stats.append((x.size, s2, gamma))
        x = x[x.size % 2:]
        x = 0.5 * (x[0::2] + x[1::2])
    if stats[0][1] == 0.0:
        return 0.0, 0
    terms = [n * (g / s2) ** 2 if s2 > 0 else 0.0 for n, s2, g in stats]
    level = len(stats) - 1
    for j in range(len(stats)):
        if sum(terms[j:]) < _chi2_quantile_99(len(stats) - j):
            level = j
            break
    errors = [math.sqrt(s2 / (n - 1)) for n, s2, _ in stats]
    # the test has little power near the plateau: go on while the next level (still with >= 16
    # blocks) rises by more than the uncertainty of this one, sqrt(1 / (2 (n - 1))) relative
    while (level + 1 < len(stats) and stats[level + 1][0] >= 16
           and errors[level + 1] - errors[level] > errors[level] / math.sqrt(
               2 * (stats[level][0] - 1))):
        level += 1
    return errors[level], level


def autocorrelation_time(x: Sequence[float] | np.ndarray, c: float = 5.0) -> float:
    """Integrated autocorrelation time ``tau = 1 + 2 sum_t rho(t)`` (in samples).

    The sum runs to the smallest window ``M >= c tau(M)`` (Sokal's automatic windowing); the
    autocorrelation ``rho`` comes from an FFT.

    Args:
        x: the series (at least 4 values).
        c: window constant (default 5).

    Returns:
        ``tau >= ~1``; 1 for an uncorrelated series.

    References:
        Sokal, "Monte Carlo methods in statistical mechanics" (1997 lecture notes), sec. 3.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    if x.size < 4:
        raise ValueError(f"autocorrelation_time needs at least 4 values, got {x.size}")
    d = x - x.mean()
    n = x.size
    f = np.fft.rfft(d, n=2 * n)
    acf = np.fft.irfft(f * np.conj(f))[:n]
    if acf[0] == 0.0:
        return 1.0
    rho = acf / acf[0]
    taus = 2.0 * np.cumsum(rho) - 1.0
    window = np.arange(n) >= c * taus
    m = int(np.argmax(window)) if window.any() else n - 1
    return float(max(taus[m], 1e-12))


@dataclass(frozen=True)
class EnergyEstimate:
    """Mean of a correlated series with its error bar.

    Attributes:
        mean: the mean (hartree).
        error: standard error from :func:`blocking`.
        tau: integrated autocorrelation time (samples).
        std: standard deviation of the series.
        n: number of values.
    """

    mean: float
    error: float
    tau: float
    std: float
    n: int

    def __str__(self) -> str:
        return format_value(self.mean, self.error)


def format_value(mean: float, error: float) -> str:
    """``-2.90372(12)``-style: the error in units of the last two shown digits."""
    if not (error > 0 and math.isfinite(error)):
        return f"{mean:.6f}"
    digits = max(0, 1 - int(math.floor(math.log10(error))))
    return f"{mean:.{digits}f}({round(error * 10**digits):d})"


def estimate(x: Sequence[float] | np.ndarray) -> EnergyEstimate:
    """:class:`EnergyEstimate` of a series: mean, blocking error, autocorrelation time."""
    arr = np.asarray(x, dtype=np.float64).ravel()
    error, _ = blocking(arr)
    return EnergyEstimate(float(arr.mean()), error, autocorrelation_time(arr),
                          float(arr.std()), int(arr.size))
