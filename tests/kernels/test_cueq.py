"""The cuEquivariance convolution equals the plain-torch reference: value, gradients and second
derivatives, float32 and float64, odd sizes, an isolated node, unsorted and empty edge sets, mixed
multiplicities. On CPU it runs cuEquivariance's naive method; the polynomial the CUDA
``uniform_1d`` method gets (``ir_mul`` layout, flattened, channel mode split) is checked here too,
evaluated by the naive method, and on the GPU itself under ``-m gpu``."""

import functools

import pytest
import torch

pytest.importorskip("cuequivariance_torch")

from equivar.kernels import cueq  # noqa: E402
from equivar.kernels.layout import edge_layout  # noqa: E402
from equivar.kernels.reference import conv_reference  # noqa: E402
from equivar.kernels.spec import ConvSpec  # noqa: E402
from tests.kernels.conftest import make_tp  # noqa: E402

ODD = ("3x0e+2x1o+5x2e", 3, ("0e", "1o", "2e"))  # the brief's odd sizes, mixed multiplicities
SMALL_MIXED = ("2x0e+4x1o", 1, ("0e", "1o", "1e"))  # gcd 2: the uniform_1d split is real


@functools.cache
def _spec(irreps, lmax, keep):
    return ConvSpec.from_e3nn(make_tp(irreps, lmax, keep))


def _inputs(spec, n, e, dtype, seed, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, spec.in_dim, generator=gen, dtype=dtype)
    y = torch.randn(e, spec.sh_dim, generator=gen, dtype=dtype)
    w = torch.randn(e, spec.weight_numel, generator=gen, dtype=dtype)
    index = torch.randint(0, n - 1, (2, e), generator=gen)  # unsorted, repeats; node n-1 isolated
    return [t.to(device).requires_grad_() for t in (x, y, w)], index.to(device)


def _close(a, b, dtype, what):
    scale = b.abs().max().clamp(min=1.0)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    err = float((a - b).abs().max().detach() / scale.detach())
    assert err < tol, f"{what}: relative error {err:.2e} > {tol:.0e}"


def _compare(run, spec, n, e, dtype, seed=0, device="cpu"):
    """``run(x, y, w, index)`` against ``conv_reference``: value, d/d(x, y, w) and the second
    derivatives of a loss built from the first (what forces in the loss need)."""
    (x, y, w), index = _inputs(spec, n, e, dtype, seed, device)
    got = run(x, y, w, index)
    want = conv_reference(spec, x, y, w, index[0], index[1], n)
    assert got.shape == (n, spec.out_dim) and got.dtype == dtype
    _close(got, want, dtype, "value")
    assert torch.all(got[n - 1] == 0), "an isolated node must get exactly zero"
    cot = torch.randn(want.shape, generator=torch.Generator().manual_seed(seed + 1),
                      dtype=dtype).to(device)
    g_got = torch.autograd.grad((got * cot).sum(), (x, y, w), create_graph=True)
    g_want = torch.autograd.grad((want * cot).sum(), (x, y, w), create_graph=True)
    for name, a, b in zip("xyw", g_got, g_want, strict=True):
        _close(a, b, dtype, f"d/d{name}")
    h_got = torch.autograd.grad(sum(g.square().sum() for g in g_got), (x, y, w))
    h_want = torch.autograd.grad(sum(g.square().sum() for g in g_want), (x, y, w))
    for name, a, b in zip("xyw", h_got, h_want, strict=True):
        _close(a, b, dtype, f"second derivative d/d{name}")


def test_value_gradients_and_second_derivatives(dtype):
    spec = _spec(*ODD)

    def run(x, y, w, index):
        return cueq.cueq_conv(spec, x, y, w, edge_layout(index, x.shape[0]))

    _compare(run, spec, 7, 23, dtype)


@pytest.mark.parametrize("layout", ["mul_ir", "ir_mul", "ir_mul_uniform"])
def test_mixed_multiplicities_every_layout(layout):
    """The GPU's polynomial ('ir_mul_uniform': coefficients flattened, channels split to the gcd
    2 of 2 and 4, features permuted to ir_mul and back) computes the same, here by the naive
    method."""
    spec = _spec(*SMALL_MIXED)

    def run(x, y, w, index):
        conv = cueq.get_conv(spec, x.device, x.dtype, "naive", layout)
        lay = edge_layout(index, x.shape[0])
        return conv(x, y, w, lay.sender, lay.receiver, lay.n_nodes)

    _compare(run, spec, 5, 11, torch.float64, seed=3)


def test_uniform_1d_polynomial_is_uniform():
    """What cuequivariance_torch's uniform_1d method asserts at construction: after flattening
    and squeezing, scalar coefficients, operands of at most one dimension and one segment extent
    (the gcd of the multiplicities) shared by every 1-d operand."""
    for (irreps, lmax, keep), extent in ((SMALL_MIXED, 2), (("4x0e+4x1o", 2, ("0e", "1o")), 4)):
        spec = _spec(irreps, lmax, keep)
        poly = cueq.build_polynomial(spec, "ir_mul_uniform").flatten_coefficient_modes()
        poly = poly.squeeze_modes()
        assert poly.all_same_segment_shape()
        assert all(stp.coefficient_subscripts == "" for _, stp in poly.operations)
        assert all(o.ndim in (0, 1) for o in poly.operands)
        assert {o.segment_shape for o in poly.operands if o.ndim == 1} == {(extent,)}
        sizes = [o.size for o in poly.operands]
        assert sizes == [spec.weight_numel, spec.in_dim, spec.sh_dim, spec.out_dim]


def test_empty_edge_set(dtype):
    spec = _spec(*ODD)
    (x, y, w), _ = _inputs(spec, 4, 0, dtype, seed=1)
    out = cueq.cueq_conv(spec, x, y, w, edge_layout(torch.zeros(2, 0, dtype=torch.long), 4))
    assert out.shape == (4, spec.out_dim) and out.dtype == dtype and torch.all(out == 0)
    gx, gy, gw = torch.autograd.grad(out.square().sum() + out.sum(), (x, y, w), create_graph=True)
    assert torch.all(gx == 0) and gy.shape == y.shape and gw.shape == w.shape


def test_half_precision_computes_in_float32():
    spec = _spec(*SMALL_MIXED)
    (x, y, w), index = _inputs(spec, 5, 9, torch.float32, seed=2)
    got = cueq.cueq_conv(spec, x.half(), y.half(), w.half(), edge_layout(index, 5))
    want = conv_reference(spec, x.half().float(), y.half().float(), w.half().float(), index[0],
                          index[1], 5)
    assert got.dtype == torch.float16
    assert torch.allclose(got.float(), want, rtol=1e-2, atol=1e-2)


def test_modules_are_cached_per_spec_device_dtype_and_method():
    spec = _spec(*SMALL_MIXED)
    cpu = torch.device("cpu")
    a = cueq.get_conv(spec, cpu, torch.float64, "naive")
    assert cueq.get_conv(spec, "cpu", torch.float64, "naive") is a
    assert cueq.get_conv(spec, cpu, torch.float32, "naive") is not a
    assert cueq.get_conv(spec, cpu, torch.float64, "naive", "ir_mul") is not a


def test_availability_is_reported_precisely():
    ok, why = cueq.available()
    assert ok  # importorskip passed
    ops, ops_why = cueq.cuda_ops_available()
    if ops:
        assert why == "" and ops_why == ""
    else:
        assert "cuequivariance_ops_torch" in ops_why and ops_why in why and "naive" in why


def test_unsupported_combinations_raise_clearly():
    spec = _spec(*SMALL_MIXED)
    (x, y, w), index = _inputs(spec, 5, 9, torch.float64, seed=4)
    lay = edge_layout(index, 5)
    with pytest.raises(cueq.CueqUnsupportedError, match="uniform_1d.*CUDA device"):
        cueq.cueq_conv(spec, x, y, w, lay, method="uniform_1d")
    with pytest.raises(ValueError, match="fused_tp"):
        cueq.get_conv(spec, "cpu", torch.float64, "fused_tp")
    if torch.cuda.is_available() and not cueq.cuda_ops_available()[0]:
        with pytest.raises(cueq.CueqUnsupportedError, match="cuequivariance_ops_torch"):
            cueq.cueq_conv(spec, x.cuda(), y.cuda(), w.cuda(), edge_layout(index.cuda(), 5))


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["odd", "small_mixed", "uniform"])
def test_uniform_1d_on_gpu(name, dtype):
    if not torch.cuda.is_available() or not cueq.cuda_ops_available()[0]:
        pytest.skip(f"needs CUDA and cuequivariance_ops_torch ({cueq.cuda_ops_available()[1]})")
    irreps, lmax, keep = {"odd": ODD, "small_mixed": SMALL_MIXED,
                          "uniform": ("8x0e+8x1o+8x2e", 3, ("0e", "1o", "2e"))}[name]
    spec = _spec(irreps, lmax, keep)
    assert cueq.get_conv(spec, "cuda", dtype, "uniform_1d").module.method == "uniform_1d"

    def run(x, y, w, index):
        return cueq.cueq_conv(spec, x, y, w, edge_layout(index, x.shape[0]))

    _compare(run, spec, 7, 23, dtype, device="cuda")
