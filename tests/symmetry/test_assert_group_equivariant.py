"""``equivar.testing.assert_group_equivariant`` checks every element, reports per-element errors
and names the failing elements; the symmetry package's docstring examples run."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch
from torch import nn

from equivar.symmetry import cyclic, dihedral, equivarify, octahedral, symmetric
from equivar.testing import SymmetryAssertionError, assert_group_equivariant

F64 = torch.float64


def test_passes_on_equivariant_functions_and_reports_every_element():
    o = octahedral()
    x = torch.randn(3, 5, 3, dtype=F64)
    report = assert_group_equivariant(lambda p: 2.0 * p, o, x)  # points -> points
    assert report["n_group"] == 24 and len(report["errors"]) == 24
    assert report["max_error"] < 1e-14
    report = assert_group_equivariant(lambda p: p.norm(dim=-1), o, x, out_action="trivial")
    assert report["max_error"] < 1e-14
    s3 = symmetric(3)
    sorted_norms = assert_group_equivariant(lambda p: p.norm(dim=-1).sort(-1).values, s3,
                                            torch.randn(2, 3, 3, dtype=F64), out_action="trivial")
    assert sorted_norms["max_error"] < 1e-14


def test_names_the_failing_elements():
    c4 = cyclic(4)
    x = torch.randn(2, 1, 5, 5, dtype=F64)
    top_row = lambda img: img[..., 0, :].sum(-1)  # noqa: E731 - not rotation invariant
    with pytest.raises(SymmetryAssertionError) as info:
        assert_group_equivariant(top_row, c4, x, in_action="image", out_action="trivial")
    message = str(info.value)
    assert "3 of 4 elements of C4" in message and "rotation 90 deg" in message
    assert info.value.errors["errors"][0] < 1e-14  # the identity passes
    assert [f[1].split(":")[0] for f in info.value.failures] == ["1", "2", "3"]


def test_reads_actions_from_lifted_modules_and_supports_unbatched_functions(dtype):
    d4 = dihedral(4)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 9, 3)).to(dtype)
    lifted = equivarify(net, d4, action="image")
    x = torch.randn(2, 1, 5, 5, dtype=dtype)
    batched = assert_group_equivariant(lifted, d4, x)
    looped = assert_group_equivariant(lifted, d4, x, batched=False)
    # both modes measure the same errors; a lift permutes outputs, so they are rounding-level
    # (exactly 0 on some CPUs, ~1e-7 in float32 on others: never compared exactly)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert batched["max_error"] < tol and looped["max_error"] < tol
    assert batched["max_error"] == pytest.approx(looped["max_error"], abs=tol)


def test_bad_input():
    with pytest.raises(TypeError, match="FiniteGroup"):
        assert_group_equivariant(lambda p: p, "O", torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"\[batch, \.\.\., 3\]"):
        assert_group_equivariant(lambda p: p, octahedral(), torch.randn(2, 4))
    with pytest.raises(TypeError, match="must be a Tensor"):
        assert_group_equivariant(lambda p: p.tolist(), octahedral(), torch.randn(2, 3))


MODULES = ["groups", "point_groups", "permutation_groups", "wigner", "base_action", "actions",
           "regular", "images", "orbits", "lift", "layerwise", "frames"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(f"equivar.symmetry.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_assertion_docstring_example_runs():
    for name in ("groups", "equivariance", "measurement"):
        module = importlib.import_module(f"equivar.testing.{name}")
        assert doctest.testmod(module).failed == 0, name
