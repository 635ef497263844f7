"""``benchmarks/emlp.py`` and ``examples/lorentz_scattering.py``: the synthetic tasks have the
symmetries they claim, the standardisation keeps them, the quick benchmark writes its table and
the example's trained EMLP is Lorentz invariant."""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from equivar.symmetry import Vector, as_rep, matrix_group

ROOT = Path(__file__).resolve().parents[1]
F64 = torch.float64


def _load(path: Path, name: str):
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _load(ROOT / "benchmarks" / "emlp.py", "bench_emlp")


@pytest.fixture(scope="module")
def example():
    return _load(ROOT / "examples" / "lorentz_scattering.py", "example_lorentz_scattering")


@pytest.fixture
def keep_threads():
    """The scripts set torch's thread count; give it back after the test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _act(rep, g, x):
    """``rho(g) x`` for ``g [d, d]`` and ``x [n, rep.size]``."""
    return x @ rep.rho(g).T


@pytest.mark.parametrize("task", ["o5", "inertia", "scattering"])
def test_tasks_have_their_symmetry(bench, task):
    """``f(rho_in(g) x) = rho_out(g) f(x)`` for sampled group elements."""
    group_name, rep_in, rep_out, _ = bench.TASKS[task]
    group = matrix_group(group_name)
    rep_in, rep_out = as_rep(rep_in, group), as_rep(rep_out, group)
    x, y = bench.make_data(task, 64, seed=3)
    assert x.shape == (64, rep_in.size) and y.shape == (64, rep_out.size)
    assert torch.equal(bench.TARGETS[task](x), y)
    for g in group.sample(4, torch.Generator().manual_seed(0), scale=0.5):
        moved = bench.TARGETS[task](_act(rep_in, g, x))  # f(g x)
        expected = _act(rep_out, g, y)  # g f(x)
        assert torch.allclose(moved, expected, rtol=1e-9, atol=1e-9 * expected.abs().max())


def test_scattering_amplitude_is_a_function_of_minkowski_products(bench, example):
    x, y = bench.make_data("scattering", 32, seed=1)
    x2, y2 = example.dataset(32, seed=5)
    # the benchmark and the example compute the same amplitude
    assert torch.allclose(example.amplitude(x.view(-1, 4, 4)), y[:, 0], rtol=1e-12)
    boosts = example.random_lorentz(8, 2.0, torch.Generator().manual_seed(2))
    eta = torch.diag(torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=F64))
    assert torch.allclose(boosts.mT @ eta @ boosts, eta.expand(8, 4, 4), atol=1e-10)
    for mat in boosts:
        moved = x2.view(-1, 4, 4) @ mat.T
        assert torch.allclose(example.amplitude(moved), y2[:, 0], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("task", ["o5", "inertia", "scattering"])
def test_standardisation_keeps_the_symmetry(bench, task):
    group_name, rep_in, rep_out, _ = bench.TASKS[task]
    group = matrix_group(group_name)
    for rep, data in ((as_rep(rep_in, group), 0), (as_rep(rep_out, group), 1)):
        sample = bench.make_data(task, 200, seed=4)[data]
        mean, scale = bench.symmetric_stats(rep, sample)
        assert (scale > 0).all()
        z = (sample - mean) / scale
        assert z.pow(2).mean() == pytest.approx(1.0, rel=0.2)  # standardised overall
        g = group.sample(1, torch.Generator().manual_seed(1), scale=0.5)[0]
        # (g x - mean) / scale == g ((x - mean) / scale)
        assert torch.allclose((_act(rep, g, sample) - mean) / scale, _act(rep, g, z),
                              atol=1e-9 * (1 + z.abs().max()))  # fmt: skip


def test_mlp_matches_a_parameter_count(bench):
    for target in (500, 5000, 100_000):
        net = bench.mlp(16, 9, target)
        assert abs(bench.n_params(net) / target - 1) < 0.1


def test_symmetric_stats_reads_sums_of_copies(bench):
    group = matrix_group("O(3)")
    rep = 2 + 2 * Vector(group)
    x = torch.randn(100, rep.size, dtype=F64) * torch.tensor([1, 2, 3, 3, 3, 5, 5, 5])
    mean, scale = bench.symmetric_stats(rep, x)
    assert mean[2:].abs().max() == 0  # no invariant direction in a vector of O(3)
    assert scale[2] == scale[3] == scale[4] and scale[5] == scale[6] == scale[7]
    assert scale[5] / scale[2] == pytest.approx(5 / 3, rel=0.25)


@pytest.mark.slow
def test_quick_benchmark_writes_its_table(tmp_path):
    out = tmp_path / "emlp.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "emlp.py"), "--quick",
                          "--json", str(out)], capture_output=True, text=True, timeout=600,
                         cwd=ROOT)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "test MSE" in run.stdout and "equivariant-basis solver" in run.stdout
    record = json.loads(out.read_text())
    assert record["benchmark"] == "emlp" and "hardware" in record and "versions" in record
    parts = {}
    for row in record["rows"]:
        parts.setdefault(row["part"], []).append(row)
    assert set(parts) == {"accuracy", "solver", "notes"}
    accuracy = {row["task"]: row for row in parts["accuracy"]}
    assert set(accuracy) == {"o5", "inertia", "scattering"}
    for row in accuracy.values():
        for key in ("emlp_mse", "mlp_mse", "emlp_cpu_s", "mlp_cpu_s"):
            assert math.isfinite(row[key]) and row[key] >= 0, (key, row)
        assert row["n_train"] == 30 and row["published_emlp_mse"] is None
        assert abs(row["mlp_params"] / row["emlp_params"] - 1) < 0.1  # sizes matched
    # O(5) invariance from 30 samples: the EMLP beats the same-size MLP (by >3x on seeds 0-3)
    assert accuracy["o5"]["emlp_mse"] < accuracy["o5"]["mlp_mse"]
    counts = {(row["series"], row["problem"]): row["n_basis"] for row in parts["solver"]}
    assert counts[("SO(3) V**k", "V**2")] == 1 and counts[("SO(3) V**k", "V**4")] == 3
    assert counts[("O(1,3) V**k", "V**4")] == 3  # eta x eta, and its two reorderings
    assert counts[("O(1,3) T(p,p)", "V**1*V.T**1")] == 1  # the identity map
    assert all(row["status"] == "ok" for row in parts["solver"])
    assert parts["notes"][0]["quick"] is True


def test_example_runs_and_is_lorentz_invariant(example, keep_threads, capsys):
    result = example.main(["--quick"])
    out = capsys.readouterr().out
    line = [s for s in out.splitlines() if s.startswith("equivariance error EMLP float64:")]
    assert len(line) == 1
    printed = float(line[0].split(":")[1])
    assert printed < 1e-4 and result["emlp64_error"] < 1e-10  # float64: exact to rounding
    assert result["emlp32_error"] < 1e-4  # float32 as trained
    assert result["mlp_error"] > 1e-3  # the MLP is not invariant
    assert math.isfinite(result["emlp_mse"]) and math.isfinite(result["mlp_mse"])
