"""The VMC driver: lowers the energy of He, resumes exactly from a checkpoint, keeps
checkpoints as plain data, and rejects bad settings with a hint."""

import pytest
import torch

from equivar.qmc import VMCConfig, load_checkpoint, load_wavefunction, vmc

SMALL = {"preset": "S", "hidden_one": 16, "hidden_two": 4, "n_determinants": 2}


def test_short_cpu_run_on_helium_lowers_the_energy():
    result = vmc("He", model={"preset": "S"}, iterations=40, walkers=128, burn_in=100,
                 eval_iterations=16, log_every=5)
    energy = result.history["energy"]
    assert len(energy) == 40 and len(result.eval_energies) == 16
    first, last = sum(energy[:5]) / 5, sum(energy[-5:]) / 5
    assert last < first - 0.2, (first, last)
    assert result.energy < first - 0.2 and result.energy > -2.95  # variational, within noise
    assert 0 < result.error < 0.05 and result.variance > 0
    assert "He: E = " in str(result)


def test_adam_runs_and_lowers_the_energy():
    result = vmc("He", model=SMALL, optimizer="adam", lr=3e-3, iterations=30, walkers=64,
                 burn_in=50, eval_iterations=0)
    energy = result.history["energy"]
    assert sum(energy[-5:]) < sum(energy[:5])
    assert result.estimate is None


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("optimizer", ["sr", "adam"])
def test_resume_continues_exactly(tmp_path, optimizer):
    common = dict(model=SMALL, walkers=32, burn_in=20, eval_iterations=4, steps=3,
                  checkpoint_every=2, optimizer=optimizer)
    full = vmc("Li", iterations=5, checkpoint=tmp_path / "full.pt", **common)
    vmc("Li", iterations=3, checkpoint=tmp_path / "part.pt", **common)
    resumed = vmc("Li", iterations=5, checkpoint=tmp_path / "part.pt", resume=True, **common)
    assert torch.equal(_params(full.wavefunction), _params(resumed.wavefunction))
    assert full.history["energy"] == resumed.history["energy"]
    assert full.eval_energies == resumed.eval_energies
    assert load_checkpoint(tmp_path / "part.pt")["run"]["iteration"] == 5


def test_checkpoint_is_plain_data_and_rebuilds_the_model(tmp_path):
    path = tmp_path / "ckpt.pt"
    result = vmc("Li", model=SMALL, iterations=2, walkers=16, burn_in=10, eval_iterations=0,
                 checkpoint=path)
    record = torch.load(path, weights_only=True)
    assert set(record) == {"state_dict", "config", "versions", "run"}
    assert record["config"]["system"]["charges"] == [3]
    assert record["versions"]["torch"] == torch.__version__
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed away
    model = load_wavefunction(path)
    r = torch.randn(4, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(model(r)[1], result.wavefunction(r)[1], rtol=0, atol=0)


def test_resume_rejects_different_settings(tmp_path):
    path = tmp_path / "ckpt.pt"
    vmc("He", model=SMALL, iterations=1, walkers=16, burn_in=10, eval_iterations=0,
        checkpoint=path)
    with pytest.raises(ValueError, match="walkers"):
        vmc("He", model=SMALL, iterations=2, walkers=32, burn_in=10, eval_iterations=0,
            checkpoint=path, resume=True)
    with pytest.raises(ValueError, match="system"):
        vmc("Li", model=SMALL, iterations=2, walkers=16, burn_in=10, eval_iterations=0,
            checkpoint=path, resume=True)


def test_plot_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    vmc("He", model=SMALL, iterations=3, walkers=16, burn_in=10, eval_iterations=0,
        plot=tmp_path / "energy.png")
    assert (tmp_path / "energy.png").stat().st_size > 1000


@pytest.mark.parametrize("options, message", [
    ({"iteration": 3}, "did you mean 'iterations'"),
    ({"optimizer": "lbfgs"}, "optimizer must be one of"),
    ({"walkers": 0}, "walkers must be >= 1"),
    ({"eval_iterations": 2}, "eval_iterations"),
    ({"laplacian": "fd"}, "laplacian must be one of"),
])
def test_bad_settings_raise_with_a_hint(options, message):
    with pytest.raises(ValueError, match=message):
        VMCConfig.from_dict(options)


def test_bad_model_options_and_systems():
    with pytest.raises(ValueError, match="did you mean 'n_determinants'"):
        vmc("He", model={"n_determinant": 2}, iterations=1)
    with pytest.raises(ValueError, match="unknown system"):
        vmc("Hx", iterations=1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_vmc_runs_on_gpu_and_matches_cpu():
    from equivar.models import build
    from equivar.qmc import atom, local_energy

    li = atom("Li")
    psi = build("wavefunction", system=li, dtype="float64", **SMALL)
    r = torch.randn(64, 3, 3, dtype=torch.float64)
    cpu = local_energy(psi, r, li)
    gpu = local_energy(psi.to("cuda"), r.to("cuda"), li)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-8, atol=1e-8)
    result = vmc("Li", model=SMALL, iterations=5, walkers=256, eval_iterations=8,
                 device="cuda", dtype="float32")
    assert result.wavefunction.nuclei.device.type == "cuda"
    assert all(torch.isfinite(torch.tensor(result.history["energy"])))
