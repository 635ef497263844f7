"""Error bars: blocking equals std/sqrt(n) for independent data and stays honest for correlated
data; the autocorrelation time of an AR(1) process is (1 + phi)/(1 - phi)."""

import numpy as np
import pytest

from equivar.qmc import autocorrelation_time, blocking, estimate
from equivar.qmc.statistics import format_value


def _ar1(phi, n, rng):
    x = np.empty(n)
    x[0] = rng.normal() / np.sqrt(1 - phi**2)
    noise = rng.normal(size=n)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + noise[i]
    return x


def test_blocking_of_independent_data_is_the_naive_error():
    x = np.random.default_rng(0).normal(size=4096)
    err, level = blocking(x)
    assert err == pytest.approx(x.std(ddof=1) / np.sqrt(x.size), rel=0.1)
    assert level <= 2


@pytest.mark.parametrize("phi", [0.5, 0.9])
def test_blocking_covers_correlated_data(phi):
    rng = np.random.default_rng(1)
    n = 4096
    true = np.sqrt((1 + phi) / (1 - phi) / (1 - phi**2) / n)  # sqrt(tau var / n)
    errors = [blocking(_ar1(phi, n, rng))[0] for _ in range(40)]
    assert 0.8 * true < np.mean(errors) < 1.2 * true
    naive = np.sqrt(1 / (1 - phi**2) / n)
    assert np.mean(errors) > 1.5 * naive


def test_autocorrelation_time_of_ar1():
    rng = np.random.default_rng(2)
    taus = [autocorrelation_time(_ar1(0.8, 8192, rng)) for _ in range(10)]
    assert np.mean(taus) == pytest.approx(9.0, rel=0.2)
    assert autocorrelation_time(rng.normal(size=4096)) == pytest.approx(1.0, abs=0.3)


def test_estimate_and_formatting():
    est = estimate([-2.9, -2.91, -2.89, -2.9, -2.905, -2.895, -2.9, -2.9])
    assert est.mean == pytest.approx(-2.9) and est.n == 8 and est.error > 0
    assert format_value(-2.903724, 0.00012) == "-2.90372(12)"
    assert format_value(-7.47, 0.012) == "-7.470(12)"


@pytest.mark.parametrize("bad", [[1.0, 2.0], [1.0, np.nan, 2.0, 3.0]])
def test_blocking_rejects_short_or_nan_series(bad):
    with pytest.raises(ValueError):
        blocking(bad)
