"""N-body tests run on graphs of 5 particles: one torch thread is faster than several (intra-op
threads only add synchronisation, and spin-wait badly on a shared machine)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
