"""Every block keeps its declared symmetry: f(D_in(g) x) = D_out(g) f(x) for rotations with and
without inversion, in float64 (1e-10) and float32 (1e-5)."""

import pytest
import torch
from e3nn import o3

from equivar.dtypes import default_dtype
from equivar.nn import (
    EdgeSphericalHarmonics,
    EquivariantRMSNorm,
    GatedActivation,
    InteractionBlock,
    TensorProductConv,
)
from equivar.testing.wigner import wigner_D
from tests.conftest import tolerance


def _random_graph(n_nodes: int, n_edges: int, dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, n_nodes, (2, n_edges), generator=g)
    edge_vec = torch.randn(n_edges, 3, generator=g, dtype=dtype)
    return edge_index, edge_vec


def _rotations(dtype):
    torch.manual_seed(1)
    rs = [o3.rand_matrix(dtype=torch.float64) for _ in range(2)]
    return [r.to(dtype) for r in rs] + [(-r).to(dtype) for r in rs]


def _float64_built(factory):
    """Construct in float64 so e3nn bakes exact coefficients; cast later (as build() does)."""
    with default_dtype(torch.float64):
        return factory()


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp(min=1e-12)).item()


def test_spherical_harmonics_equivariant(dtype):
    sh = EdgeSphericalHarmonics(3)
    vec = torch.randn(20, 3, dtype=dtype)
    for R in _rotations(dtype):
        D = wigner_D(sh.irreps_out, R)
        assert _rel(sh(vec @ R.T), sh(vec) @ D.T) < tolerance(dtype)


@pytest.mark.parametrize("irreps", ["8x0e+4x1o+2x2e", "4x0e+3x0o+2x1e+2x1o"])
def test_gate_and_norm_equivariant(irreps, dtype):
    gate = _float64_built(lambda: GatedActivation(irreps)).to(dtype)
    norm = _float64_built(lambda: EquivariantRMSNorm(irreps)).to(dtype)
    x = gate.irreps_in.randn(10, -1, dtype=dtype)
    y = norm.irreps_in.randn(10, -1, dtype=dtype)
    for R in _rotations(dtype):
        d_in = wigner_D(gate.irreps_in, R)
        d_out = wigner_D(gate.irreps_out, R)
        assert _rel(gate(x @ d_in.T), gate(x) @ d_out.T) < tolerance(dtype)
        d = wigner_D(norm.irreps_in, R)
        assert _rel(norm(y @ d.T), norm(y) @ d.T) < tolerance(dtype)


def test_gate_declares_what_it_needs():
    gate = GatedActivation("4x0e+2x1o+3x2e")
    assert gate.irreps_in.simplify() == o3.Irreps("9x0e+2x1o+3x2e")
    assert gate.irreps_out == o3.Irreps("4x0e+2x1o+3x2e")
    assert "->" in repr(gate)


@pytest.mark.parametrize("block_cls", [TensorProductConv, InteractionBlock])
def test_convolution_equivariant_and_permutation_equivariant(block_cls, dtype):
    irreps_in, irreps_out = o3.Irreps("8x0e+4x1o+4x2e"), o3.Irreps("8x0e+4x1o+4x2e")
    sh = EdgeSphericalHarmonics(3).to(dtype)
    if block_cls is TensorProductConv:
        block = _float64_built(
            lambda: TensorProductConv(irreps_in, sh.irreps_out, irreps_out, 6, (16,), 3.0)
        )
    else:
        block = _float64_built(
            lambda: InteractionBlock(irreps_in, irreps_out, sh.irreps_out, 6, (16,), 3.0)
        )
    block = block.to(dtype)
    n_nodes = 7
    edge_index, edge_vec = _random_graph(n_nodes, 30, dtype)
    radial = torch.randn(30, 6, dtype=dtype)
    x = irreps_in.randn(n_nodes, -1, dtype=dtype)
    ref = block(x, sh(edge_vec), radial, edge_index)
    for R in _rotations(dtype):
        d_in = wigner_D(irreps_in, R)
        d_out = wigner_D(block.irreps_out, R)
        out = block(x @ d_in.T, sh(edge_vec @ R.T), radial, edge_index)
        assert _rel(out, ref @ d_out.T) < tolerance(dtype)
    # relabel nodes: outputs are relabelled the same way
    perm = torch.randperm(n_nodes)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(n_nodes)
    out = block(x[perm], sh(edge_vec), radial, inv[edge_index])
    assert _rel(out, ref[perm]) < tolerance(dtype)
    # the order of edges does not matter
    eperm = torch.randperm(30)
    out = block(x, sh(edge_vec[eperm]), radial[eperm], edge_index[:, eperm])
    assert _rel(out, ref) < tolerance(dtype)


def test_convolution_reads_declared_irreps_and_handles_no_edges():
    conv = TensorProductConv("4x0e+2x1o", "1x0e+1x1o+1x2e", "4x0e+2x1o", 5)
    assert str(conv.irreps_in) == "4x0e+2x1o" and str(conv.irreps_out) == "4x0e+2x1o"
    assert "TensorProductConv(4x0e+2x1o -> 4x0e+2x1o" in repr(conv)
    x = conv.irreps_in.randn(3, -1)
    out = conv(x, torch.zeros(0, 9), torch.zeros(0, 5), torch.zeros(2, 0, dtype=torch.long))
    assert out.shape == (3, conv.irreps_out.dim) and torch.all(out == 0)


def test_convolution_rejects_bad_arguments():
    with pytest.raises(ValueError, match="backend"):
        TensorProductConv("4x0e", "1x0e", "4x0e", 5, backend="cuda-magic")
    with pytest.raises(ValueError, match="avg_num_neighbors"):
        TensorProductConv("4x0e", "1x0e", "4x0e", 5, avg_num_neighbors=0.0)
    with pytest.raises(ValueError, match="no tensor-product path"):
        TensorProductConv("4x0e", "1x0e", "4x1o", 5)
