"""Small, fast potentials and structures shared by the simulation tests."""

import pytest
import torch
from ase.build import bulk, molecule

from equivar.models import build

SPECIES = ["H", "C", "N", "O", "Cu"]
#: a deliberately tiny trunk: these tests check the plumbing, not the model
TINY = dict(
    preset="S", species=SPECIES, cutoff=3.5, num_channels=8, lmax=1, sh_lmax=1, num_layers=1,
    radial_hidden=[8], zbl=True,
)  # fmt: skip

@pytest.fixture(autouse=True)
def _single_threaded(one_thread):
    """Tiny tensors: see tests/conftest.py::one_thread."""



def tiny_potential(seed: int = 0, dtype: str = "float64", **options):
    """An untrained, smooth potential (ZBL keeps nuclei apart); deterministic for ``seed``."""
    torch.manual_seed(seed)
    return build("potential", **{**TINY, "dtype": dtype, **options})


@pytest.fixture
def potential():
    return tiny_potential()


@pytest.fixture
def ethanol():
    return molecule("CH3CH2OH")


@pytest.fixture
def copper():
    """A rattled, slightly sheared 32-atom Cu box (periodic, non-zero off-diagonal stress)."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)
    atoms.set_cell(atoms.cell.array @ [[1.0, 0.02, 0.0], [0.0, 1.0, 0.01], [0.0, 0.0, 1.0]],
                   scale_atoms=True)  # fmt: skip
    atoms.rattle(0.05, seed=1)
    return atoms

