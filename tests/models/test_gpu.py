"""The models on a CUDA device: same numbers as on the CPU, same symmetry (run: pytest -m gpu)."""

import pytest
import torch

from equivar import keys
from equivar.models import build
from equivar.testing import assert_equivariant, random_crystal_batch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_potential_on_gpu_matches_cpu_and_is_equivariant(dtype):
    model = build("potential", preset="S", species=[6, 29], cutoff=3.5, dtype=dtype)
    batch = random_crystal_batch(n_graphs=3, species=(6, 29), cutoff=3.5, dtype=dtype, seed=0)
    ref = model(batch)
    model_gpu, batch_gpu = model.to("cuda"), batch.to("cuda")
    out = model_gpu(batch_gpu)
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    for key in (keys.ENERGY, keys.FORCES, keys.STRESS):
        scale = ref[key].abs().max()
        assert ((out[key].cpu() - ref[key]).abs().max() / scale) < tol, key
    assert_equivariant(model_gpu, batch_gpu)


def test_training_step_on_gpu():
    model = build("potential", preset="S", species=[6, 29], cutoff=3.5).to("cuda").train()
    batch = random_crystal_batch(n_graphs=2, species=(6, 29), cutoff=3.5, dtype=torch.float32,
                                 seed=1).to("cuda")
    out = model(batch)
    (out[keys.ENERGY].pow(2).mean() + out[keys.FORCES].pow(2).mean()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
