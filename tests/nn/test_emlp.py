"""EMLP layers and the EMLP model: equivariant under sampled elements of continuous groups (1e-10
in float64, 1e-5 in float32) and under every element of finite ones; builder and checkpoints."""

import pytest
import torch

from equivar.dtypes import default_dtype
from equivar.models import build
from equivar.models.checkpoint import model_from_checkpoint_data, read_checkpoint, save_checkpoint
from equivar.models.emlp import EMLP
from equivar.nn.emlp import (
    EMLPBlock,
    EquivariantBilinear,
    EquivariantLinear,
    GatedNonlinearity,
    gated,
    hidden_rep,
)
from equivar.symmetry import (
    MatrixGroup,
    RepAction,
    Vector,
    as_rep,
    dihedral,
    equivariant_basis,
    matrix_group,
    special_orthogonal,
    symmetric,
)
from equivar.testing import assert_group_equivariant
from tests.conftest import tolerance

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("private_cache")  # tests.conftest


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _error(fn, rep_in, rep_out, dtype, scale=0.5, batch=4, n=4):
    """max |fn(rho_in(g) x) - rho_out(g) fn(x)| / max |rho_out(g) fn(x)| over sampled g."""
    g = rep_in.group.sample(n, _gen(1), scale=scale)
    x = torch.randn(batch, rep_in.size, generator=_gen(2), dtype=F64).to(dtype)
    r_in, r_out = rep_in.rho(g).to(dtype), rep_out.rho(g).to(dtype)
    with torch.no_grad():
        moved = fn(torch.einsum("nij,bj->nbi", r_in, x))  # [n, batch, size_out]: fn(g.x)
        expected = torch.einsum("nij,bj->nbi", r_out, fn(x))  # g.fn(x)
    return ((moved - expected).abs().max() / expected.abs().max()).item()


LAYER_CASES = [  # group, rep_in, rep_out
    ("SO(3)", "2*V + 1", "V**2 + V + 2"),
    ("O(3)", "V**2 + 1", "V + 3"),
    ("O(1,3)", "2*V", "V*V.T + V + 1"),
    ("SO+(1,3)", "V.T + V", "V**2 + 1"),
    ("Sp(4)", "V + 1", "V**2"),
    ("S(4)xSO(3)", "V[0]*V[1]", "V[1] + V[0]*V[1] + 1"),
]


def _build(cls, dtype, *args, **kwargs):
    with default_dtype(torch.float64):
        module = cls(*args, **kwargs)
    return module.to(dtype).eval()


@pytest.mark.parametrize("group,rep_in,rep_out", LAYER_CASES)
def test_linear_layer_is_equivariant(group, rep_in, rep_out, dtype):
    group = matrix_group(group)
    rep_in, rep_out = as_rep(rep_in, group), as_rep(rep_out, group)
    layer = _build(EquivariantLinear, dtype, rep_in, rep_out)
    with torch.no_grad():
        layer.bias.weights[0].normal_()  # the bias starts at zero: make it count
    assert _error(layer, rep_in, rep_out, dtype) < tolerance(dtype)


@pytest.mark.parametrize("group,rep_in,rep_out", LAYER_CASES[:4])
def test_bilinear_and_gated_blocks_are_equivariant(group, rep_in, rep_out, dtype):
    group = matrix_group(group)
    rep_in, rep_out = as_rep(rep_in, group), as_rep(rep_out, group)
    bilinear = _build(EquivariantBilinear, dtype, rep_in, rep_out)
    assert _error(bilinear, rep_in, rep_out, dtype) < tolerance(dtype)
    low_rank = _build(EquivariantBilinear, dtype, rep_in, rep_out, mid=hidden_rep(group, 12))
    assert _error(low_rank, rep_in, rep_out, dtype) < tolerance(dtype)
    gate = _build(GatedNonlinearity, dtype, rep_out)
    assert _error(gate, gated(rep_out), rep_out, dtype) < tolerance(dtype)
    block = _build(EMLPBlock, dtype, rep_in, rep_out, bilinear=True)
    assert _error(block, rep_in, rep_out, dtype) < tolerance(dtype)


def test_the_linear_layer_spans_the_solved_basis():
    group = special_orthogonal(3)
    V = Vector(group)
    layer = _build(EquivariantLinear, F64, 2 * V + 1, V + V**2, bias=False)
    basis = equivariant_basis(2 * V + 1, V + V**2).reshape(-1, 12 * 7)
    assert layer.weight.n_params == basis.shape[0]
    with torch.no_grad():
        w = layer.weight().reshape(1, -1)
    torch.testing.assert_close((w @ basis.T) @ basis, w)  # W lies in the span
    assert "SO(3): 2*V + 1 -> V + V**2" in repr(layer)


def test_gates_multiply_their_summands():
    V = Vector(special_orthogonal(3))
    gate = GatedNonlinearity(V + 1 + V, activation="relu")
    assert gate.rep_in.size == 7 + 2
    x = torch.tensor([[1.0, 2, 3, -4, 5, 6, 7, 0, 100]])
    out = gate(x)
    torch.testing.assert_close(out[0, :3], torch.tensor([1.0, 2, 3]) * 0.5)  # sigmoid(0)
    assert out[0, 3] == 0  # relu on the scalar
    torch.testing.assert_close(out[0, 4:], torch.tensor([5.0, 6, 7]))  # sigmoid(100) = 1
    with pytest.raises(ValueError, match="activation"):
        GatedNonlinearity(V, activation="swish")


def test_hidden_rep_spreads_channels_over_orders():
    assert str(hidden_rep(special_orthogonal(3), 96)) == "32 + 10*V + 3*V**2"
    assert str(hidden_rep(matrix_group("S(10)"), 30)) == "10 + V"  # V**2 (100) does not fit
    with pytest.raises(ValueError):
        hidden_rep(special_orthogonal(3), 0)


@pytest.mark.parametrize("group,rep_in,rep_out", [
    ("SO(3)", "2*V", "V + 1"),
    ("O(1,3)", "2*V", "1"),
    ("S(4)xSO(3)", "V[0]*V[1]", "V[1]"),
])  # fmt: skip
def test_emlp_model_is_equivariant(group, rep_in, rep_out, dtype):
    model = build("emlp", group=group, rep_in=rep_in, rep_out=rep_out, num_channels=48,
                  num_layers=2, bilinear_channels=16, dtype=dtype).eval()  # fmt: skip
    assert model.config["group"] == group and next(model.parameters()).dtype == dtype
    assert _error(model, model.rep_in, model.rep_out, dtype, scale=0.3) < tolerance(dtype)


def test_the_bilinear_term_forms_lorentz_invariants():
    # no linear map takes four-vectors to scalars: without the bilinear term the output of
    # "2*V -> 1" is its (zero) initial bias whatever the input
    x = torch.randn(5, 8, dtype=F64)
    for bilinear in (False, True):
        model = build("emlp", group="O(1,3)", rep_in="2*V", rep_out="1", preset="S",
                      bilinear=bilinear, dtype="float64")  # fmt: skip
        with torch.no_grad():
            spread = model(x).std().item()
        assert (spread > 1e-3) == bilinear


@pytest.mark.parametrize("finite", [symmetric(4), dihedral(4)], ids=["S4", "D4"])
def test_emlp_on_a_finite_group_passes_on_every_element(finite, dtype):
    group = MatrixGroup.from_finite(finite)
    model = build("emlp", group=group, rep_in="V + 1", rep_out="V**2", num_channels=32,
                  num_layers=2, dtype=dtype).eval()  # fmt: skip
    x = torch.randn(3, model.rep_in.size, dtype=dtype)
    result = assert_group_equivariant(model, finite, x, in_action=RepAction(model.rep_in),
                                      out_action=RepAction(model.rep_out))  # fmt: skip
    assert result["n_group"] == len(finite)


def test_emlp_permutation_convention_matches_the_set_action():
    model = build("emlp", group=symmetric(4), rep_in="V", rep_out="V", num_channels=16,
                  num_layers=1, dtype="float64").eval()  # fmt: skip
    x = torch.randn(2, 4, dtype=F64)
    assert_group_equivariant(model, symmetric(4), x, in_action="set", out_action="set")


def test_checkpoint_rebuilds_the_model(tmp_path):
    model = build("emlp", group="O(1,3)", rep_in="V + V.T", rep_out="V", preset="S",
                  dtype="float64")  # fmt: skip
    path = tmp_path / "emlp.pt"
    save_checkpoint(path, model)
    again = model_from_checkpoint_data(read_checkpoint(path))
    x = torch.randn(3, 8, dtype=F64)
    torch.testing.assert_close(again(x), model(x))
    assert again.config == model.config


def test_builder_errors_are_named():
    with pytest.raises(ValueError, match="needs group"):
        build("emlp", rep_in="V", rep_out="V")
    with pytest.raises(ValueError, match="num_channel"):
        build("emlp", group="SO(3)", rep_in="V", rep_out="V", num_channel=3)
    with pytest.raises(ValueError, match="cannot read the representation"):
        build("emlp", group="SO(3)", rep_in="W", rep_out="V")
    model = EMLP(group="SO(3)", rep_in="V", rep_out="1", num_channels=16, num_layers=1)
    with pytest.raises(ValueError, match="rep_in"):
        model(torch.randn(2, 4))
