"""IrrepsLinear and GatedActivation compute exactly e3nn's maps (value, gradients, second
derivatives), keep e3nn's state_dict, and are equivariant."""

import pytest
import torch
from e3nn import o3
from e3nn.nn import Gate

from equivar.dtypes import default_dtype
from equivar.nn import GatedActivation, IrrepsLinear
from equivar.testing.wigner import wigner_D
from tests.conftest import tolerance

CASES = [
    ("8x0e+4x1o+3x2e", "16x0e+2x1o+5x2e", False),
    # repeated irreps in and out, an output irrep (0o) with no input: zeros as in e3nn
    ("8x0e+4x1o+2x0e+3x1o", "3x1o+16x0e+2x1o+1x0o", True),
    ("32x0e", "16x0e", True),
    ("4x0e+4x1o", "4x1o", False),
    ("2x0e+3x1e+0x2e", "4x2e+2x0e+0x1e", False),
    ("5x0e", "3x1o", False),  # nothing connects: all zeros
]


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp(min=1e-12)).item()


@pytest.mark.parametrize("irreps_in, irreps_out, biases", CASES)
def test_linear_equals_e3nn_to_second_order(irreps_in, irreps_out, biases):
    lin = IrrepsLinear(irreps_in, irreps_out, biases=biases).double()
    if lin.bias.numel():
        lin.bias.data.normal_()
    with default_dtype(torch.float64):  # e3nn bakes its path weights in the default dtype
        ref = o3.Linear(irreps_in, irreps_out, biases=biases)
    ref.load_state_dict(lin.state_dict())  # same keys, shapes and meaning
    assert lin.weight_numel == ref.weight_numel
    assert torch.equal(lin.output_mask, ref.output_mask)
    x = torch.randn(2, 5, lin.irreps_in.dim, dtype=torch.float64, requires_grad=True)
    if lin.weight_numel == 0 and not biases:  # nothing connects: zeros, like e3nn
        assert lin(x).shape == (2, 5, lin.irreps_out.dim) and not lin(x).any()
        assert torch.equal(lin(x), ref(x))
        return
    outs = []
    for layer in (lin, ref):
        y = layer(x)
        params = [p for p in layer.parameters()]
        (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
        second = torch.autograd.grad(gx.pow(3).sum(), [x, *params], allow_unused=True)
        outs.append([y, gx, *second])
    for a, b in zip(*outs, strict=True):
        if a is None or b is None:
            assert a is None and b is None or (a if b is None else b).abs().max() == 0
            continue
        assert a.shape == b.shape
        assert (a - b).abs().max() < 1e-12 * max(1.0, b.abs().max().item())


def test_linear_loads_e3nn_checkpoints_and_initialises_like_e3nn():
    ref = o3.Linear("8x0e+4x1o", "6x0e+2x1o")
    lin = IrrepsLinear("8x0e+4x1o", "6x0e+2x1o")
    lin.load_state_dict(ref.state_dict())
    x = torch.randn(3, ref.irreps_in.dim)
    assert torch.allclose(lin(x), ref(x), atol=1e-6)
    # unit-variance outputs from unit-variance inputs (weights ~ N(0, 1), path normalisation)
    torch.manual_seed(0)
    big = IrrepsLinear("64x0e+64x1o", "64x0e+64x1o")
    y = big(torch.randn(4000, big.irreps_in.dim))
    assert 0.8 < y.pow(2).mean().item() < 1.25


def test_linear_equivariant(dtype):
    lin = IrrepsLinear("6x0e+3x1o+2x2e+1x1e", "4x0e+5x1o+3x2e+2x1e").to(dtype)
    x = torch.randn(10, lin.irreps_in.dim, dtype=dtype)
    torch.manual_seed(3)
    for R in (o3.rand_matrix(dtype=torch.float64), -o3.rand_matrix(dtype=torch.float64)):
        R = R.to(dtype)
        d_in, d_out = wigner_D(lin.irreps_in, R), wigner_D(lin.irreps_out, R)
        assert _rel(lin(x @ d_in.T), lin(x) @ d_out.T) < tolerance(dtype)


def test_linear_rejects_wrong_width():
    lin = IrrepsLinear("4x0e+2x1o", "3x0e")
    with pytest.raises(ValueError, match="expected input of size 10"):
        lin(torch.randn(5, 9))
    assert "IrrepsLinear(4x0e+2x1o -> 3x0e | 12 weights)" == repr(lin)


@pytest.mark.parametrize("irreps", ["32x0e+32x1o+32x2e+4x0o", "16x0e", "4x1o+2x2e",
                                    "3x0o+2x0e+5x1e+1x1o"])
def test_gate_equals_e3nn_gate(irreps):
    gate = GatedActivation(irreps).double()
    ref: Gate = gate.gate  # e3nn's module defines the map
    x = torch.randn(6, gate.irreps_in.dim, dtype=torch.float64, requires_grad=True)
    y, y_ref = gate(x), ref(x)
    assert (y - y_ref).abs().max() < 1e-14
    (g,) = torch.autograd.grad(y.sin().sum(), x, create_graph=True)
    (g_ref,) = torch.autograd.grad(y_ref.sin().sum(), x, create_graph=True)
    assert (g - g_ref).abs().max() < 1e-13
    (h,) = torch.autograd.grad(g.square().sum(), x)
    (h_ref,) = torch.autograd.grad(g_ref.square().sum(), x)
    assert (h - h_ref).abs().max() < 1e-12
    assert list(gate.state_dict()) == [f"gate.{k}" for k in ref.state_dict()]
