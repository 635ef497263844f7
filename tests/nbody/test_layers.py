"""EGNN layer and SE(3)-Transformer block keep their symmetries in float64 (1e-10) and float32
(1e-5): rotations, reflections, translations, node relabellings and edge reorderings."""

import pytest
import torch
from e3nn import o3

from equivar.data.datasets.nbody import complete_graph
from equivar.dtypes import default_dtype
from equivar.nn import EdgeSphericalHarmonics, EGNNLayer, SE3TransformerBlock
from equivar.nn.attention import segment_softmax
from equivar.testing import random_rotation
from equivar.testing.wigner import wigner_D
from tests.conftest import tolerance


def _float64_built(factory):
    """Construct in float64 so e3nn bakes exact coefficients (as build() does), then cast."""
    with default_dtype(torch.float64):
        return factory()


def _rotations(dtype):
    g = torch.Generator().manual_seed(3)
    return [random_rotation(dtype, g, inversion=inv) for inv in (False, False, True, True)]


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp(min=1e-12)).item()


def _graph(dtype, n_graphs=2, n=5):
    g = torch.Generator().manual_seed(0)
    edge_index = complete_graph(n_graphs, n)
    pos = torch.randn(n_graphs * n, 3, generator=g, dtype=torch.float64).to(dtype)
    vel = torch.randn(n_graphs * n, 3, generator=g, dtype=torch.float64).to(dtype)
    perm = torch.cat([torch.randperm(n, generator=g) + k * n for k in range(n_graphs)])
    return pos, vel, edge_index, perm


def _relabel(edge_index, perm):
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    return inv[edge_index]


@pytest.mark.parametrize("aggregation,normalize", [("mean", False), ("sum", True)])
def test_egnn_layer_is_e3_and_permutation_equivariant(aggregation, normalize, dtype):
    layer = EGNNLayer(8, num_edge_attrs=2, aggregation=aggregation, normalize=normalize,
                      coord_init_scale=1.0).to(dtype)
    pos, vel, edge_index, perm = _graph(dtype)
    h = torch.randn(pos.shape[0], 8, dtype=dtype)
    attr = torch.randn(edge_index.shape[1], 2, dtype=dtype)
    h_out, x_out = layer(h, pos, edge_index, vel, attr)
    tol = tolerance(dtype)
    for R in _rotations(dtype):
        t = torch.randn(3, dtype=dtype)
        h_r, x_r = layer(h, pos @ R.T + t, edge_index, vel @ R.T, attr)
        assert _rel(h_r, h_out) < tol  # invariant features
        assert _rel(x_r, x_out @ R.T + t) < tol  # positions rotate, reflect and translate
    h_p, x_p = layer(h[perm], pos[perm], _relabel(edge_index, perm), vel[perm], attr)
    assert _rel(h_p, h_out[perm]) < tol and _rel(x_p, x_out[perm]) < tol
    order = torch.randperm(edge_index.shape[1])
    h_e, x_e = layer(h, pos, edge_index[:, order], vel, attr[order])
    assert _rel(h_e, h_out) < tol and _rel(x_e, x_out) < tol


def test_egnn_layer_declares_and_checks_inputs():
    layer = EGNNLayer(16, num_edge_attrs=1)
    assert layer.irreps_in == layer.irreps_out == o3.Irreps("16x0e")
    assert "16x0e -> 16x0e" in repr(layer) and "vel: 1o" in repr(layer)
    pos, vel, edge_index, _ = _graph(torch.float32, 1)
    with pytest.raises(ValueError, match="needs vel"):
        layer(torch.randn(5, 16), pos, edge_index, None, torch.randn(20, 1))
    with pytest.raises(ValueError, match="edge_attr"):
        layer(torch.randn(5, 16), pos, edge_index, vel, torch.randn(20, 3))
    no_vel = EGNNLayer(16, velocity=False)
    h, x = no_vel(torch.randn(5, 16), pos, edge_index)
    assert x.shape == (5, 3)
    with pytest.raises(ValueError, match="aggregation"):
        EGNNLayer(4, aggregation="max")


def test_segment_softmax_normalises_per_receiver():
    logits = torch.randn(12, 3, dtype=torch.float64) * 30  # large: tests the max shift
    index = torch.tensor([0, 0, 1, 1, 1, 3, 3, 3, 3, 0, 1, 3])
    w = segment_softmax(logits, index, 5)
    sums = torch.zeros(5, 3, dtype=torch.float64).index_add_(0, index, w)
    torch.testing.assert_close(sums[[0, 1, 3]], torch.ones(3, 3, dtype=torch.float64))
    assert torch.isfinite(w).all()
    order = torch.randperm(12)
    torch.testing.assert_close(segment_softmax(logits[order], index[order], 5), w[order])
    expected = torch.softmax(logits[index == 1], dim=0)
    torch.testing.assert_close(w[index == 1], expected)


def _attention_block(dtype, irreps="8x0e+4x1o+4x2e", sh_lmax=2, heads=2):
    sh = EdgeSphericalHarmonics(sh_lmax).to(dtype)
    block = _float64_built(
        lambda: SE3TransformerBlock(irreps, irreps, sh.irreps_out, 4, num_heads=heads,
                                    radial_hidden=(8,))
    ).to(dtype)
    return sh, block


def test_se3_transformer_block_is_equivariant(dtype):
    sh, block = _attention_block(dtype)
    pos, _, edge_index, perm = _graph(dtype)
    feats = block.irreps_in.randn(pos.shape[0], -1, dtype=dtype)
    radial = torch.randn(edge_index.shape[1], 4, dtype=dtype)  # any invariant edge features

    def run(x, p, ei, rad):
        vec = p[ei[0]] - p[ei[1]]
        return block(x, sh(vec), rad, ei)

    out = run(feats, pos, edge_index, radial)
    tol = tolerance(dtype)
    for R in _rotations(dtype):
        d_in, d_out = wigner_D(block.irreps_in, R), wigner_D(block.irreps_out, R)
        rotated = run(feats @ d_in.T, pos @ R.T + 1.5, edge_index, radial)
        assert _rel(rotated, out @ d_out.T) < tol
    moved = run(feats[perm], pos[perm], _relabel(edge_index, perm), radial)
    assert _rel(moved, out[perm]) < tol
    order = torch.randperm(edge_index.shape[1])
    assert _rel(run(feats, pos, edge_index[:, order], radial[order]), out) < tol


def test_se3_transformer_block_attends():
    sh, block = _attention_block(torch.float64)
    assert block.irreps_in == block.irreps_out and block.residual
    assert "heads=2" in repr(block) and "->" in repr(block)
    assert block.key_pool.shape == (block.irreps_key.dim, 2)
    pos, _, edge_index, _ = _graph(torch.float64, 1)
    feats = block.irreps_in.randn(5, -1, dtype=torch.float64)
    radial = torch.randn(20, 4, dtype=torch.float64)
    edge_sh = sh(pos[edge_index[0]] - pos[edge_index[1]])
    before = block(feats, edge_sh, radial, edge_index)
    with torch.no_grad():  # other queries -> other weights over the neighbours -> other outputs
        for p in block.query.parameters():
            p.mul_(5.0)
    assert (block(feats, edge_sh, radial, edge_index) - before).abs().max() > 1e-6
    with pytest.raises(ValueError, match="divisible by num_heads=3"):
        SE3TransformerBlock("8x0e+4x1o", "8x0e+4x1o", "1x0e+1x1o", 4, num_heads=3)
