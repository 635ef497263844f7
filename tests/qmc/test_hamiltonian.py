"""Hamiltonian: the exact Laplacian agrees with finite differences, exact eigenfunctions have
constant local energy, and the Coulomb terms equal a hand calculation."""

import math

import pytest
import torch

from equivar.qmc import (
    Molecule,
    atom,
    kinetic_energy,
    laplacian_logabs,
    local_energy,
    potential_energy,
)
from equivar.qmc.hamiltonian import (
    LAPLACIAN_METHODS,
    electron_electron,
    electron_nucleus,
    nucleus_nucleus,
)
from tests.qmc.conftest import random_walkers, small_wavefunction


def _second_differences(f, r, h):
    """Central second differences of log|psi|, coordinate by coordinate (float64)."""
    base = f(r)
    lap = torch.zeros_like(base)
    flat = r.reshape(len(r), -1)
    for k in range(flat.shape[1]):
        step = torch.zeros_like(flat)
        step[:, k] = h
        plus, minus = f((flat + step).view_as(r)), f((flat - step).view_as(r))
        lap += (plus - 2 * base + minus) / h**2
    return lap


def _finite_difference_laplacian(f, r, h=2e-3):
    """Richardson-extrapolated second differences: error O(h^4) + rounding ~1e-8."""
    return (4 * _second_differences(f, r, h / 2) - _second_differences(f, r, h)) / 3


@pytest.mark.parametrize("method", LAPLACIAN_METHODS)
@pytest.mark.parametrize("system", ["Li", "LiH"])
def test_laplacian_equals_finite_differences(system, method):
    psi = small_wavefunction(system)
    r = random_walkers(system, n_walkers=4)
    lap, grad = laplacian_logabs(psi, r, method=method)
    with torch.no_grad():
        fd = _finite_difference_laplacian(lambda x: psi(x)[1], r)
    torch.testing.assert_close(lap, fd, rtol=1e-6, atol=1e-6)
    x = r.clone().requires_grad_(True)
    expected = torch.autograd.grad(psi(x)[1].sum(), x)[0]
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-12)


def test_laplacian_methods_agree_and_chunking_is_exact():
    psi = small_wavefunction("Be", features="invariant")
    r = random_walkers("Be", n_walkers=5)
    a = laplacian_logabs(psi, r)[0]
    b = laplacian_logabs(psi, r, method="double_backward")[0]
    c = laplacian_logabs(psi, r, chunk_size=5)[0]
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-12)


def test_laplacian_builds_no_graph_to_the_parameters():
    psi = small_wavefunction("He")
    lap, grad = laplacian_logabs(psi, random_walkers("He"))
    assert not lap.requires_grad and not grad.requires_grad
    assert all(p.grad is None for p in psi.parameters())


@pytest.mark.parametrize("method", LAPLACIAN_METHODS)
def test_hydrogen_1s_has_local_energy_minus_half_everywhere(method):
    def hydrogen_1s(r):  # psi = exp(-|r|)
        return torch.ones(len(r), dtype=r.dtype), -r.norm(dim=-1).sum(-1)

    r = random_walkers("H", n_walkers=200, scale=2.0)
    e = local_energy(hydrogen_1s, r, atom("H"), method=method)
    torch.testing.assert_close(e, torch.full_like(e, -0.5), rtol=0, atol=1e-12)
    assert e.var().item() < 1e-24  # zero variance


def test_hydrogenic_ion_and_independent_electrons():
    """psi = exp(-Z |r|) for He+ gives -Z^2/2; exp(-Z(|r1|+|r2|)) for two non-interacting
    electrons gives kinetic -Z^2 + Z(1/|r1| + 1/|r2|) exactly."""
    he_plus = atom("He", charge=1)
    r = random_walkers(he_plus, n_walkers=50)

    def ion(x):
        return torch.ones(len(x), dtype=x.dtype), -2.0 * x.norm(dim=-1).sum(-1)

    torch.testing.assert_close(local_energy(ion, r, he_plus), torch.full((50,), -2.0,
                               dtype=torch.float64), rtol=0, atol=1e-12)
    r2 = random_walkers("He", n_walkers=50)
    kin = kinetic_energy(ion, r2)
    expected = -4.0 + 2.0 * (1 / r2.norm(dim=-1)).sum(-1)
    torch.testing.assert_close(kin, expected, rtol=1e-12, atol=1e-12)


def test_coulomb_terms_equal_a_hand_calculation():
    # H2 at R = 1.4 along z; electron 1 at (0, 0, 0.7) (the bond centre), electron 2 at (1, 0, 0)
    h2 = Molecule([1, 1], [[0, 0, 0], [0, 0, 1.4]])
    r = torch.tensor([[[0.0, 0.0, 0.7], [1.0, 0.0, 0.0]]], dtype=torch.float64)
    charges, nuclei = h2.tensors(dtype=torch.float64)
    v_ee = 1 / math.sqrt(1 + 0.49)
    v_en = -(1 / 0.7 + 1 / 0.7 + 1 / 1.0 + 1 / math.sqrt(1 + 1.96))
    v_nn = 1 / 1.4
    assert electron_electron(r).item() == pytest.approx(v_ee, rel=1e-14)
    assert electron_nucleus(r, charges, nuclei).item() == pytest.approx(v_en, rel=1e-14)
    assert nucleus_nucleus(charges, nuclei).item() == pytest.approx(v_nn, rel=1e-14)
    assert potential_energy(r, h2).item() == pytest.approx(v_ee + v_en + v_nn, rel=1e-14)
    # LiH: Z = 3 and 1 at 3.015 bohr; one electron on the axis between them
    lih = Molecule([3, 1], [[0, 0, 0], [0, 0, 3.015]])
    r = torch.tensor([[[0, 0, 1.0], [0, 0, -1.0], [2, 0, 0], [0, 0, 4.015]]],
                     dtype=torch.float64)
    d = lambda a, b: math.dist(a, b)  # noqa: E731
    pos = [(0, 0, 1.0), (0, 0, -1.0), (2, 0, 0), (0, 0, 4.015)]
    v_ee = sum(1 / d(pos[i], pos[j]) for i in range(4) for j in range(i))
    v_en = -sum(3 / d(p, (0, 0, 0)) + 1 / d(p, (0, 0, 3.015)) for p in pos)
    assert potential_energy(r, lih).item() == pytest.approx(v_ee + v_en + 3 / 3.015, rel=1e-14)


def test_local_energy_components_add_up():
    psi = small_wavefunction("He")
    r = random_walkers("He")
    parts = local_energy(psi, r, atom("He"), components=True)
    torch.testing.assert_close(parts["kinetic"] + parts["potential"], parts["total"])


@pytest.mark.parametrize("bad, message", [
    (torch.randn(4, 2, 3, dtype=torch.float64), r"n_elec=3"),
    (torch.randn(4, 3, dtype=torch.float64), r"n_elec=3"),
    (torch.full((4, 3, 3), float("nan"), dtype=torch.float64), "NaN"),
    (torch.zeros(4, 3, 3, dtype=torch.long), "floating point"),
])
def test_bad_walkers_raise_value_error(bad, message):
    psi = small_wavefunction("Li")
    with pytest.raises(ValueError, match=message):
        local_energy(psi, bad, atom("Li"))


def test_unknown_laplacian_method():
    with pytest.raises(ValueError, match="forward_over_backward"):
        laplacian_logabs(small_wavefunction("He"), random_walkers("He"), method="hutchinson")
