"""Tests for assert_conservative: the good toy potential passes; each broken one fails exactly the
checks that should catch it."""

from __future__ import annotations

import pytest
import torch

from equivar.keys import POSITIONS
from equivar.testing import SymmetryAssertionError, assert_conservative

from .toy_models import (
    CurlForceModel,
    MorsePotential,
    ScaledForcesModel,
    WrongStressSignModel,
    mixed_batch,
    molecule_batch,
)

FORCE_CHECKS = {"forces_fd", "forces_fd_directional"}
CURL_CHECKS = {"hessian_symmetry", "loop_work"}


def failed_checks(excinfo) -> set[str]:
    return {name for name, _, _, _ in excinfo.value.failures}


@pytest.mark.parametrize("make_batch", [molecule_batch, mixed_batch])
def test_conservative_model_passes_float64(make_batch):
    errors = assert_conservative(MorsePotential(), make_batch(torch.float64))
    expected = FORCE_CHECKS | CURL_CHECKS | ({"stress_fd"} if make_batch is mixed_batch else set())
    assert set(errors) == expected
    # float64 finite differences with a fourth-order stencil are far inside the 1e-6 default
    assert max(errors.values()) < 1e-8, errors


def test_conservative_model_passes_float32():
    errors = assert_conservative(MorsePotential(), mixed_batch(torch.float32))
    assert max(errors.values()) <= 1e-2, errors


def test_scaled_forces_fail_finite_differences_only():
    # 1.01 * F is still a gradient field (of 1.01 E): symmetric Hessian, zero loop work
    with pytest.raises(SymmetryAssertionError, match="forces_fd") as excinfo:
        assert_conservative(ScaledForcesModel(), mixed_batch(), check_stress=False)
    assert failed_checks(excinfo) == FORCE_CHECKS
    assert excinfo.value.errors["forces_fd"] == pytest.approx(0.01, rel=0.05)


def test_curl_that_vanishes_at_the_point_fails_hessian_and_loop_only():
    batch = molecule_batch()
    model = CurlForceModel(anchor=batch[POSITIONS].clone())
    with pytest.raises(SymmetryAssertionError, match="loop") as excinfo:
        assert_conservative(model, batch)
    assert failed_checks(excinfo) == CURL_CHECKS
    assert excinfo.value.errors["forces_fd"] < 1e-8  # F = -dE/dx holds at the test point


def test_curl_everywhere_fails_every_force_check():
    with pytest.raises(SymmetryAssertionError) as excinfo:
        assert_conservative(CurlForceModel(), molecule_batch())
    assert failed_checks(excinfo) == FORCE_CHECKS | CURL_CHECKS


def test_wrong_stress_sign_fails_stress_only():
    with pytest.raises(SymmetryAssertionError, match="stress_fd") as excinfo:
        assert_conservative(WrongStressSignModel(), mixed_batch())
    assert failed_checks(excinfo) == {"stress_fd"}
    assert excinfo.value.errors["stress_fd"] == pytest.approx(2.0, rel=1e-3)
    errors = assert_conservative(WrongStressSignModel(), mixed_batch(), check_stress=False)
    assert "stress_fd" not in errors


def test_float32_defaults_still_catch_a_curl():
    batch = molecule_batch(torch.float32)
    with pytest.raises(SymmetryAssertionError) as excinfo:
        assert_conservative(CurlForceModel(anchor=batch[POSITIONS].clone()), batch)
    assert failed_checks(excinfo) == CURL_CHECKS


def test_missing_energy_is_a_clear_error_and_batch_is_untouched():
    batch = molecule_batch()
    before = batch[POSITIONS].clone()
    with pytest.raises(ValueError, match="'total_energy'"):
        assert_conservative(MorsePotential(), batch, energy_key="total_energy")
    assert_conservative(MorsePotential(), batch, n_checks=2, loop_points=16)
    assert torch.equal(batch[POSITIONS], before) and not batch[POSITIONS].requires_grad
