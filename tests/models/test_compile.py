"""torch.compile works on the models for inference (energy, forces, stress) and agrees with eager.

Training on forces under torch.compile needs double backward, which PyTorch's aot_autograd does
not support (RuntimeError "does not currently support double backward"); train eagerly.
Compiling takes 10-50 s on a CPU, so only the single-molecule case runs by default."""

import pytest
import torch

from equivar import keys
from equivar.models import build
from equivar.testing import random_crystal_batch, random_molecule_batch


def _assert_close(out, ref, names):
    for key in names:
        scale = ref[key].abs().max().clamp(min=1e-6)
        assert ((out[key] - ref[key]).abs().max() / scale) < 1e-5, key


def test_compiled_potential_matches_eager_on_one_molecule():
    """One structure (n_graphs = 1) is what MD runs: it must compile."""
    model = build("potential", preset="S", species=[1, 6, 7, 8], num_channels=8, cutoff=3.5,
                  stress=False).eval()
    batch = random_molecule_batch(n_graphs=1, cutoff=3.5, dtype=torch.float32, seed=0)
    _assert_close(torch.compile(model)(batch), model(batch), (keys.ENERGY, keys.FORCES))


@pytest.mark.slow
def test_compiled_potential_matches_eager_on_crystals_with_stress():
    model = build("potential", preset="S", species=[1, 6, 7, 8, 29], num_channels=8, cutoff=3.5,
                  stress=True).eval()
    compiled = torch.compile(model)
    for n_graphs, seed in ((1, 0), (2, 1), (3, 2)):  # new shapes recompile with dynamic sizes
        batch = random_crystal_batch(n_graphs=n_graphs, species=(6, 29), cutoff=3.5,
                                     dtype=torch.float32, seed=seed)
        _assert_close(compiled(batch), model(batch), (keys.ENERGY, keys.FORCES, keys.STRESS))


@pytest.mark.slow
def test_compiled_property_model_matches_eager():
    model = build("property", preset="S", species=[1, 6, 7, 8], num_channels=8, lmax=2,
                  cutoff=3.5, targets={"U0": "sum", "mu": "dipole", "alpha": "tensor"}).eval()
    batch = random_molecule_batch(n_graphs=2, cutoff=3.5, dtype=torch.float32, seed=2)
    _assert_close(torch.compile(model)(batch), model(batch), ("U0", "mu", "alpha"))
