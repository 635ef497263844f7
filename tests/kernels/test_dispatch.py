"""Backend choice (never a silent fallback) and full potentials on every backend: the same
energies and forces as the e3nn reference, equivariant, and conservative."""

import warnings

import pytest
import torch

from equivar.kernels import dispatch
from equivar.models import build
from equivar.testing import assert_conservative, assert_equivariant
from equivar.testing.fixtures import random_molecule_batch
from tests.kernels.conftest import assert_same_parameter_gradients

TINY = {"species": [1, 6, 7, 8], "cutoff": 3.5, "num_channels": 3, "lmax": 1, "sh_lmax": 2,
        "num_layers": 2, "radial_hidden": (8,), "avg_num_neighbors": 3.0}


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch):
    monkeypatch.setattr(dispatch, "_warned", set())


def test_explicit_backend_shows_in_the_repr():
    explicit = build("potential", **TINY, backend="e3nn", dtype="float64")
    assert "backend=e3nn)" in repr(explicit.backbone.blocks[0].conv)


def test_unknown_backend_is_an_error_naming_the_choices():
    with pytest.raises(ValueError, match=r"unknown convolution backend 'cuda'.*triton"):
        build("potential", **TINY, backend="cuda")


def test_triton_on_cpu_without_interpreter_warns_once_and_uses_e3nn(monkeypatch):
    from equivar.kernels import triton_conv

    monkeypatch.setattr(triton_conv, "interpreting", lambda: False)
    with pytest.warns(dispatch.BackendFallbackWarning, match="needs a CUDA device"):
        assert dispatch.resolve("triton", torch.device("cpu")) == "e3nn"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second time is silent: warned once per reason
        assert dispatch.resolve("triton", torch.device("cpu")) == "e3nn"


def test_missing_package_warns_with_the_reason(monkeypatch):
    from equivar.kernels import triton_conv

    monkeypatch.setattr(triton_conv, "available", lambda: (False, "triton cannot be imported"))
    with pytest.warns(dispatch.BackendFallbackWarning, match="triton cannot be imported"):
        assert dispatch.resolve("triton", torch.device("cpu")) == "e3nn"
    monkeypatch.setattr(dispatch, "_cueq_available",
                        lambda: (False, "cuequivariance_ops_torch is missing"))
    with pytest.warns(dispatch.BackendFallbackWarning, match="cuequivariance_ops_torch"):
        assert dispatch.resolve("cuequivariance", torch.device("cpu")) == "e3nn"


def test_a_kernel_failing_its_self_check_is_not_used(monkeypatch):
    """A compiled kernel is trusted only after agreeing with the reference once per device."""
    import equivar.kernels.fused as fused

    monkeypatch.setattr(dispatch, "_self_checked", {})
    from equivar.kernels.reference import conv_reference

    def wrong(spec, x, y, w, layout):  # a kernel that is off by a factor of two
        sender, receiver = layout.sender.long(), layout.receiver.long()
        return 2 * conv_reference(spec, x, y, w, sender, receiver, layout.n_nodes)

    monkeypatch.setattr(fused, "fused_conv", wrong)
    from equivar.kernels import triton_conv

    monkeypatch.setattr(triton_conv, "interpreting", lambda: False)  # as if compiled
    e3nn_model = build("potential", **TINY, backend="e3nn", dtype="float64")
    model = build("potential", **TINY, backend="triton", dtype="float64")
    model.load_state_dict(e3nn_model.state_dict())
    conv = model.backbone.blocks[0].conv
    monkeypatch.setattr(dispatch, "resolve", lambda requested, device: "triton")
    batch = random_molecule_batch(n_graphs=1, n_atoms=4, cutoff=TINY["cutoff"])
    h = torch.randn(batch.num_nodes, conv.irreps_in.dim, dtype=torch.float64)
    sh = torch.randn(batch.edge_index.shape[1], conv.irreps_sh.dim, dtype=torch.float64)
    radial = torch.randn(batch.edge_index.shape[1], 8, dtype=torch.float64)
    with pytest.warns(dispatch.BackendFallbackWarning, match="failed its self-check.*value"):
        got = conv(h, sh, radial, batch.edge_index)
    conv.backend = "e3nn"
    monkeypatch.undo()
    assert torch.allclose(got, conv(h, sh, radial, batch.edge_index), atol=1e-12)


def _backend_models(backend, device):
    if backend == "cuequivariance":
        pytest.importorskip("cuequivariance_torch")
        if not dispatch.availability()["cuequivariance"][0]:
            pytest.skip(dispatch.availability()["cuequivariance"][1])
    reference = build("potential", **TINY, backend="e3nn", dtype="float64").to(device)
    model = build("potential", **TINY, backend=backend, dtype="float64").to(device)
    model.load_state_dict(reference.state_dict())
    assert model.backbone.blocks[0].conv.resolved_backend() == backend
    return reference, model


@pytest.mark.parametrize("backend", ["triton", "cuequivariance"])
def test_potential_on_each_backend_matches_e3nn_and_is_equivariant(backend, kernel_device):
    reference, model = _backend_models(backend, kernel_device)
    batch = random_molecule_batch(n_graphs=2, n_atoms=(3, 4), cutoff=TINY["cutoff"], seed=1)
    batch = batch.to(kernel_device)
    want, got = reference(batch), model(batch)
    for key in ("energy", "forces"):
        err = (got[key] - want[key]).abs().max() / want[key].abs().max()
        assert err < 1e-12, f"{backend} {key} differs from e3nn by {err:.1e}"
    assert_equivariant(model, batch, n_rotations=1, edge_shuffle=False)


@pytest.mark.slow  # ~30 s in Triton's CPU interpreter; seconds compiled (-m gpu)
@pytest.mark.parametrize("backend", ["triton", "cuequivariance"])
def test_potential_on_each_backend_is_conservative(backend, kernel_device):
    _, model = _backend_models(backend, kernel_device)
    batch = random_molecule_batch(n_graphs=1, n_atoms=4, cutoff=TINY["cutoff"], seed=1)
    assert_conservative(model, batch.to(kernel_device), n_checks=2, loop_points=8,
                        check_stress=False)


def test_training_step_with_forces_in_the_loss_matches_e3nn(kernel_device):
    """Forces in the loss differentiate the convolution twice: the parameter gradients of the
    fused path equal the reference's."""
    reference, model = _backend_models("triton", kernel_device)
    batch = random_molecule_batch(n_graphs=1, n_atoms=3, cutoff=TINY["cutoff"], seed=2)
    assert_same_parameter_gradients(reference, model, batch.to(kernel_device))
