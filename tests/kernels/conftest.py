"""Kernel tests: the Triton kernels run in Triton's CPU interpreter (``TRITON_INTERPRET=1``),
single-threaded, on graphs of a few nodes; specs are built from e3nn in float64."""

import pytest
import torch
from e3nn import o3

from equivar.dtypes import default_dtype


@pytest.fixture(autouse=True)
def _single_threaded(one_thread):
    """Tiny tensors: see tests/conftest.py::one_thread."""


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def kernel_device(request, monkeypatch, tmp_path_factory):
    """Where the Triton kernels run: the CPU interpreter (set up in tests/conftest.py when there
    is no GPU) and, under ``-m gpu``, compiled for CUDA. Generated sources go to a temporary
    cache folder."""
    pytest.importorskip("triton")
    from equivar.kernels.triton_conv import interpreting

    if request.param == "cpu" and not interpreting():
        pytest.skip("Triton's interpreter is off (TRITON_INTERPRET unset with a GPU present)")
    if request.param == "cuda" and (not torch.cuda.is_available() or interpreting()):
        pytest.skip("needs CUDA with TRITON_INTERPRET unset")
    monkeypatch.setenv("EQUIVAR_CACHE", str(tmp_path_factory.getbasetemp() / "equivar-cache"))
    return torch.device(request.param)


def make_tp(irreps_in: str, sh_lmax: int, keep=("0e", "1o", "2e"), dtype=torch.float64):
    """An e3nn channel-wise TensorProduct as the convolution uses, constructed in float64 (e3nn
    bakes its constants in the default dtype) and cast to ``dtype``."""
    from equivar.nn.conv import channelwise_instructions

    irreps_in = o3.Irreps(irreps_in)
    irreps_sh = o3.Irreps.spherical_harmonics(sh_lmax)
    mid, ins = channelwise_instructions(irreps_in, irreps_sh, [o3.Irrep(k) for k in keep])
    with default_dtype(torch.float64):
        tp = o3.TensorProduct(irreps_in, irreps_sh, mid, ins, shared_weights=False,
                              internal_weights=False)
    return tp.to(dtype)


def assert_close(a, b, dtype, what):
    """Relative (to max(|b|, 1)) agreement: 1e-12 in float64, 2e-5 in float32."""
    scale = b.abs().max().clamp(min=1.0)
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    err = float((a - b).abs().max().detach() / scale.detach())
    assert err < tol, f"{what}: relative error {err:.2e} > {tol:.0e}"


def assert_matches_reference(got, want, inputs, dtype, second_order=True):
    """``got`` equals ``want`` (both functions of ``inputs = (x, y, w)``) in value, in the
    gradient of a random projection, and (``second_order``) in the gradient of that gradient's
    squared norm: the derivatives forces in a loss need."""
    assert_close(got, want, dtype, "value")
    cot = torch.randn(want.shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
    cot = cot.to(want.device)
    g_got = torch.autograd.grad((got * cot).sum(), inputs, create_graph=True)
    g_want = torch.autograd.grad((want * cot).sum(), inputs, create_graph=True)
    for a, b, what in zip(g_got, g_want, ("d/dx", "d/dy", "d/dw"), strict=True):
        assert_close(a, b, dtype, what)
    if not second_order:
        return
    h_got = torch.autograd.grad(sum((a * a).sum() for a in g_got), inputs)
    h_want = torch.autograd.grad(sum((b * b).sum() for b in g_want), inputs)
    for a, b, what in zip(h_got, h_want, ("d2/dx", "d2/dy", "d2/dw"), strict=True):
        assert_close(a, b, dtype, what)


def assert_same_parameter_gradients(reference, model, batch, tol=1e-10):
    """One training step's parameter gradients (energy and forces in the loss, so the
    convolution is differentiated twice) agree between two models with the same weights."""
    grads = []
    for m in (reference, model):
        out = m(batch)
        loss = out["energy"].square().sum() + out["forces"].square().sum()
        grads.append(torch.autograd.grad(loss, list(m.parameters()), allow_unused=True))
    for (name, _), a, b in zip(reference.named_parameters(), *grads, strict=True):
        if a is None:
            assert b is None
            continue
        err = float((a - b).abs().max() / a.abs().max().clamp(min=1e-30))
        assert err < tol, f"gradient of {name} differs by {err:.1e}"
