"""Kernel tests: the Triton kernels run in Triton's CPU interpreter (``TRITON_INTERPRET=1``),
single-threaded, on graphs of a few nodes; specs are built from e3nn in float64."""

import pytest
import torch
from e3nn import o3


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
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        tp = o3.TensorProduct(irreps_in, irreps_sh, mid, ins, shared_weights=False,
                              internal_weights=False)
    finally:
        torch.set_default_dtype(previous)
    return tp.to(dtype)
