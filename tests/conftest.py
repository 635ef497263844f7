"""Shared fixtures: dtype parametrisation (never set a global dtype at import time)."""

import os

import pytest
import torch

# Without a GPU, the Triton kernels (equivar.kernels) are tested in Triton's CPU interpreter.
# Triton reads the switch when it is first imported, and torch may import it early (inductor),
# so it is set here, before any test module is collected. With a GPU they compile for CUDA.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(params=[torch.float64, torch.float32], ids=["float64", "float32"])
def dtype(request):
    """Run a test in float64 (tight tolerances) and float32 (loose ones)."""
    return request.param


def tolerance(dtype: torch.dtype) -> float:
    """Relative tolerance for an equivariance/identity check in ``dtype``."""
    return 1e-10 if dtype == torch.float64 else 1e-5


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """One torch thread for the test, restored afterwards. Folders of tiny-tensor tests (nbody,
    qmc, simulate) use it for every test: there intra-op threads cost more than they save, and
    on a shared machine they spin-wait against other jobs (a 1 ms forward pass measured 100 ms
    with 2 threads)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
