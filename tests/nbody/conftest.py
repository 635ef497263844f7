"""N-body tests run on graphs of 5 particles: single-threaded (see tests/conftest.py)."""

import pytest


@pytest.fixture(autouse=True)
def _single_threaded(one_thread):
    """Tiny tensors: see tests/conftest.py::one_thread."""
