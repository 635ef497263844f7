"""The dense backend (stacked contractions, plain torch) equals the e3nn reference: value,
gradient and second derivatives in float32 and float64, odd sizes, isolated nodes, empty and
unsorted edge sets. A potential on each CPU backend (dense and fused_cpu) equals e3nn, is
equivariant and conservative, and trains with the same gradients."""

import warnings

import pytest
import torch

from equivar.kernels import dispatch
from equivar.kernels.dense import dense_conv
from equivar.kernels.spec import ConvSpec
from equivar.models import build
from equivar.testing import assert_conservative, assert_equivariant
from equivar.testing.fixtures import random_molecule_batch
from tests.kernels.conftest import (
    assert_close,
    assert_matches_reference,
    assert_same_parameter_gradients,
    make_tp,
)
from tests.kernels.test_dispatch import TINY
from tests.kernels.test_fused import SPECS, _inputs, _reference

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.fixture(params=DEVICES)
def device(request):
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    return torch.device(request.param)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_value_gradient_and_second_derivatives(name, dtype, device):
    irreps, lmax, keep = SPECS[name]
    tp = make_tp(irreps, lmax, keep, dtype).to(device)
    spec = ConvSpec.from_e3nn(tp)
    n, e = 7, 13
    (x, y, w), index = _inputs(tp, n, e, dtype, device=device)
    got = dense_conv(spec, x, y, w, index[0], index[1], n)
    want = _reference(tp, x, y, w, index, n)
    assert torch.all(got[n - 1] == 0), "an isolated node must receive exactly zero"
    assert_matches_reference(got, want, (x, y, w), dtype)


def test_empty_edge_set_and_edge_order():
    tp = make_tp(*SPECS["uniform"])
    spec = ConvSpec.from_e3nn(tp)
    kw = {"dtype": torch.float64, "requires_grad": True}
    x = torch.randn(4, tp.irreps_in1.dim, **kw)
    empty = torch.zeros(2, 0, dtype=torch.long)
    out = dense_conv(spec, x, torch.zeros(0, tp.irreps_in2.dim, **kw),
                     torch.zeros(0, tp.weight_numel, **kw), empty[0], empty[1], 4)  # fmt: skip
    assert out.shape == (4, spec.out_dim) and torch.all(out == 0)
    (gx,) = torch.autograd.grad(out.sum(), x)
    assert torch.all(gx == 0)

    tp = make_tp(*SPECS["mixed"])
    spec = ConvSpec.from_e3nn(tp)
    (x, y, w), index = _inputs(tp, 6, 20, torch.float64, seed=5, isolated=False)
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(2))
    a = dense_conv(spec, x, y, w, index[0], index[1], 6)
    b = dense_conv(spec, x, y[perm], w[perm], index[0, perm], index[1, perm], 6)
    assert_close(a, b, torch.float64, "permuted edges")


CPU_BACKENDS = ["dense", "fused_cpu"]


def _models(backend):
    if backend == "fused_cpu" and not dispatch.availability()["fused_cpu"][0]:
        pytest.skip(dispatch.availability()["fused_cpu"][1])
    reference = build("potential", **TINY, backend="e3nn", dtype="float64")
    model = build("potential", **TINY, backend=backend, dtype="float64")
    model.load_state_dict(reference.state_dict())
    assert model.backbone.blocks[0].conv.resolved_backend() == backend
    return reference, model


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_potential_matches_e3nn_is_equivariant_and_conservative(backend):
    reference, model = _models(backend)
    batch = random_molecule_batch(n_graphs=2, n_atoms=(3, 4), cutoff=TINY["cutoff"], seed=1)
    want, got = reference(batch), model(batch)
    for key in ("energy", "forces"):
        err = (got[key] - want[key]).abs().max() / want[key].abs().max()
        assert err < 1e-12, f"{backend} {key} differs from e3nn by {err:.1e}"
    assert_equivariant(model, batch, n_rotations=2)
    one = random_molecule_batch(n_graphs=1, n_atoms=4, cutoff=TINY["cutoff"], seed=1)
    assert_conservative(model, one, n_checks=2, loop_points=8, check_stress=False)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_float32_potential_is_equivariant_without_fallback(backend):
    _models(backend)  # skips when the backend is unavailable
    model = build("potential", **TINY, backend=backend, dtype="float32")
    batch = random_molecule_batch(n_graphs=2, n_atoms=(3, 4), cutoff=TINY["cutoff"], seed=3,
                                  dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", dispatch.BackendFallbackWarning)  # self-check passes
        assert_equivariant(model, batch, n_rotations=2)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_training_step_with_forces_in_the_loss_matches_e3nn(backend):
    reference, model = _models(backend)
    batch = random_molecule_batch(n_graphs=1, n_atoms=3, cutoff=TINY["cutoff"], seed=2)
    assert_same_parameter_gradients(reference, model, batch)
