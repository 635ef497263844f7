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
def private_cache(tmp_path, monkeypatch):
    """``EQUIVAR_CACHE`` in the test's own folder: nothing read from or left in the user's cache
    (the equivariant-basis solver writes there)."""
    monkeypatch.setenv("EQUIVAR_CACHE", str(tmp_path))
    return tmp_path


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


# CI sets EQUIVAR_REQUIRE_ALL_TESTS=1 (.ci/run): then a skip for any reason but a missing GPU
# fails, so a package missing from the `test` extra cannot hide a test that a CPU can run.
_REQUIRE_ALL = os.environ.get("EQUIVAR_REQUIRE_ALL_TESTS") == "1"


def _gpu_reason(report) -> bool:
    text = str(report.longrepr).lower()
    return "cuda" in text or "gpu" in text


def _fail_skip(report) -> None:
    if _REQUIRE_ALL and report.skipped and not _gpu_reason(report):
        report.outcome = "failed"
        report.longrepr = (f"skipped, but EQUIVAR_REQUIRE_ALL_TESTS=1 requires every CPU test to "
                           f"run (install `.[test]`): {report.longrepr}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_skip(outcome.get_result())
