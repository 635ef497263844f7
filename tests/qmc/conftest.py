"""VMC tests run on tiny tensors, where intra-op threads cost more than they save (and, on a
shared machine, spin-wait against other jobs: a 1 ms forward pass took 100 ms with 2 threads).
Run them single-threaded and restore the setting afterwards."""

import pytest
import torch

from equivar.qmc import atom, get_system


@pytest.fixture(autouse=True)
def _single_threaded(one_thread):
    """Tiny tensors: see tests/conftest.py::one_thread."""



def small_wavefunction(system, dtype=torch.float64, **options):
    """A small random-parameter wavefunction (the "S" preset, narrower)."""
    from equivar.models import build

    opts = dict(preset="S", hidden_one=16, hidden_two=4, n_determinants=2)
    opts.update(options)
    return build("wavefunction", system=get_system(system) if isinstance(system, str) else system,
                 dtype=dtype, **opts)


def random_walkers(system, n_walkers=6, dtype=torch.float64, scale=1.5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    system = get_system(system) if isinstance(system, str) else system
    _, nuclei = system.tensors(dtype=dtype)
    centre = nuclei.mean(0)
    return centre + scale * torch.randn(n_walkers, system.n_elec, 3, generator=gen, dtype=dtype)


__all__ = ["atom", "random_walkers", "small_wavefunction"]
