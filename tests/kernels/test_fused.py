"""The fused Triton convolution equals the e3nn reference: value, gradient and second derivatives,
float32 and float64, odd sizes, isolated nodes, empty and unsorted edge sets; run in Triton's
interpreter on the CPU (the same kernels compile for CUDA)."""

import pytest
import torch

from equivar.kernels.layout import cached_edge_layout, edge_layout
from equivar.kernels.reference import conv_reference
from equivar.kernels.scatter import scatter_sum
from equivar.kernels.spec import ConvSpec
from tests.kernels.conftest import assert_close as _close
from tests.kernels.conftest import assert_matches_reference, make_tp

SPECS = {
    # the configuration (0e+1o+2e, harmonics to l=3, outputs filtered to 0e/1o/2e)
    "uniform": ("3x0e+3x1o+3x2e", 3, ("0e", "1o", "2e")),
    # mixed multiplicities, an odd-parity scalar, repeated irreps, outputs with 1e and 3o
    "mixed": ("5x0e+2x1o+1x0o+3x1o", 2, ("0e", "0o", "1o", "1e", "2e")),
    # a first layer: scalars in, gate scalars out
    "first_layer": ("6x0e", 3, ("0e", "1o", "2e", "3o")),
}


def _reference(tp, x, y, w, index, n):
    return scatter_sum(tp(x[index[0]], y, w), index[1], n)  # e3nn: [n_edges, out] then sum


def _inputs(tp, n, e, dtype, seed=0, isolated=True, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, tp.irreps_in1.dim, generator=gen, dtype=dtype)
    y = torch.randn(e, tp.irreps_in2.dim, generator=gen, dtype=dtype)
    w = torch.randn(e, tp.weight_numel, generator=gen, dtype=dtype)
    high = n - 1 if isolated else n  # the last node has no edges at all
    index = torch.randint(0, high, (2, e), generator=gen)  # unsorted, with repeats
    return [t.to(device).requires_grad_() for t in (x, y, w)], index.to(device)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_spec_reproduces_e3nn(name):
    irreps, lmax, keep = SPECS[name]
    tp = make_tp(irreps, lmax, keep)
    spec = ConvSpec.from_e3nn(tp)
    (x, y, w), index = _inputs(tp, 6, 15, torch.float64)
    got = conv_reference(spec, x, y, w, index[0], index[1], 6)
    _close(got, _reference(tp, x, y, w, index, 6), torch.float64, "spec vs e3nn")
    assert spec.weight_numel == tp.weight_numel and spec.out_dim == tp.irreps_out.dim


@pytest.mark.parametrize("name", sorted(SPECS))
def test_fused_value_gradient_and_second_derivatives(name, dtype, kernel_device):
    from equivar.kernels.fused import fused_conv

    irreps, lmax, keep = SPECS[name]
    tp = make_tp(irreps, lmax, keep, dtype).to(kernel_device)
    spec = ConvSpec.from_e3nn(tp)
    n, e = 7, 13
    (x, y, w), index = _inputs(tp, n, e, dtype, device=kernel_device)
    layout = edge_layout(index, n)
    got = fused_conv(spec, x, y, w, layout)
    want = _reference(tp, x, y, w, index, n)
    assert torch.all(got[n - 1] == 0), "an isolated node must receive exactly zero"
    # float64 checks the second derivatives tightly; the kernels are dtype-generic
    assert_matches_reference(got, want, (x, y, w), dtype, second_order=dtype == torch.float64)


def test_first_backward_fused_edge_pass_matches_separate_kernels(kernel_device):
    """Without create_graph the y and w gradients come from one pass over the edges."""
    from equivar.kernels.fused import fused_conv

    tp = make_tp(*SPECS["uniform"])
    spec = ConvSpec.from_e3nn(tp)
    (x, y, w), index = _inputs(tp, 5, 12, torch.float64, seed=3, device=kernel_device)
    layout = edge_layout(index, 5)
    fused = torch.autograd.grad(fused_conv(spec, x, y, w, layout).square().sum(), (x, y, w))
    out = fused_conv(spec, x, y, w, layout)
    separate = torch.autograd.grad(out.square().sum(), (x, y, w), create_graph=True)
    for a, b in zip(fused, separate, strict=True):
        _close(a, b.detach(), torch.float64, "fused edge pass")


def test_empty_edge_set_and_no_nodes(kernel_device):
    from equivar.kernels.fused import fused_conv

    tp = make_tp(*SPECS["uniform"])
    spec = ConvSpec.from_e3nn(tp)
    kw = {"dtype": torch.float64, "device": kernel_device, "requires_grad": True}
    x = torch.randn(4, tp.irreps_in1.dim, **kw)
    y = torch.zeros(0, tp.irreps_in2.dim, **kw)
    w = torch.zeros(0, tp.weight_numel, **kw)
    empty = torch.zeros(2, 0, dtype=torch.long, device=kernel_device)
    out = fused_conv(spec, x, y, w, edge_layout(empty, 4))
    assert out.shape == (4, spec.out_dim) and torch.all(out == 0)
    (gx,) = torch.autograd.grad(out.sum(), x)
    assert torch.all(gx == 0)


def test_edge_order_does_not_matter(kernel_device):
    from equivar.kernels.fused import fused_conv

    tp = make_tp(*SPECS["mixed"])
    spec = ConvSpec.from_e3nn(tp)
    (x, y, w), index = _inputs(tp, 6, 20, torch.float64, seed=5, isolated=False,
                               device=kernel_device)
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(2)).to(kernel_device)
    a = fused_conv(spec, x, y, w, edge_layout(index, 6))
    b = fused_conv(spec, x, y[perm], w[perm], edge_layout(index[:, perm], 6))
    _close(a, b, torch.float64, "permuted edges")


def test_layout_csr_and_errors():
    index = torch.tensor([[2, 0, 1, 0], [1, 1, 0, 2]])
    layout = edge_layout(index, 4)
    rowptr, eid, senders = layout.by_receiver
    assert rowptr.tolist() == [0, 1, 3, 4, 4]  # node 3 has no incoming edge
    assert eid.tolist() == [2, 0, 1, 3] and senders.tolist() == [1, 2, 0, 0]
    rowptr, eid, receivers = layout.by_sender
    assert rowptr.tolist() == [0, 2, 3, 4, 4] and receivers[eid.argsort()].tolist() == [1, 1, 0, 2]
    with pytest.raises(ValueError, match="receiver >= n_nodes"):
        edge_layout(torch.tensor([[0], [5]]), 3)
    with pytest.raises(ValueError, match="negative"):
        edge_layout(torch.tensor([[0], [-1]]), 3)
    with pytest.raises(ValueError, match=r"\[2, n_edges\]"):
        edge_layout(torch.zeros(3, 4, dtype=torch.long), 3)


def test_layout_cache_follows_the_tensor_and_in_place_edits():
    index = torch.tensor([[0, 1], [1, 0]])
    first = cached_edge_layout(index, 2)
    assert cached_edge_layout(index, 2) is first  # the layers of one forward share it
    assert cached_edge_layout(index, 3) is not first
    index[1, 0] = 2  # an in-place edit bumps the version counter
    assert cached_edge_layout(index, 3).by_receiver[0].tolist() == [0, 1, 1, 2]


def test_spec_rejects_other_tensor_products():
    from e3nn import o3

    shared = o3.FullyConnectedTensorProduct("2x0e", "1x0e", "2x0e")
    with pytest.raises(ValueError, match="per-edge weights"):
        ConvSpec.from_e3nn(shared)
