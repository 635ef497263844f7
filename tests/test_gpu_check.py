"""``benchmarks/gpu_check.py``: its dry run (toy sizes on the CPU) records every step with rows
or a reason, installs carried wheels as on the GPU, keeps to its time limit, and goes on after a
step that overruns its cap."""

import importlib.util
import json
import sys
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("bench_gpu_check",
                                                  ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _wheel(folder: Path, name: str, version: str) -> Path:
    """A minimal pure-Python wheel of one module ``name`` (what pip --target installs)."""
    dist = f"{name}-{version}.dist-info"
    files = {f"{name}/__init__.py": "VALUE = 1\n",
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                              "Tag: py3-none-any\n"}  # fmt: skip
    files[f"{dist}/RECORD"] = "".join(f"{n},,\n" for n in [*files, f"{dist}/RECORD"])
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for member, text in files.items():
            z.writestr(member, text)
    return path


def _carried(folder: Path, gpu_check) -> Path:
    """What ``prepare`` leaves: a wheel, a packed one (xz tar) and a manifest naming a wheel
    that could not be fetched."""
    folder.mkdir()
    _wheel(folder, "gpucheck_probe", "0.1")
    packed = _wheel(folder.parent, "gpucheck_packed", "0.2")
    gpu_check.pack_wheels([packed], folder / gpu_check.PACKED)
    manifest = {"packed": {gpu_check.PACKED: [packed.name]},
                "failed": {"mace-torch==0.3.16": "mace: no matching distribution"}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def _steps(path: Path) -> dict:
    record = json.loads(path.read_text())
    assert record["benchmark"].startswith("gpu_check (dry run")
    assert record["hardware"] and record["versions"]["torch"]
    return {rec["step"]: rec for rec in record["rows"]}


def test_dry_run_records_every_step(tmp_path, capsys):
    """Every step holds rows or a skip reason; the benchmarks' rows come through with their
    ratios; carried wheels are installed into the site folder, the missing one is named."""
    gpu_check = _module()
    out = tmp_path / "out" / "gpu_check.json"
    wheels = _carried(tmp_path / "whl", gpu_check)
    code = gpu_check.main(["run", "--dry-run", "--json", str(out), "--wheels", str(wheels),
                           "--site", str(tmp_path / "site"), "--time-limit", "400"])
    steps = _steps(out)
    assert list(steps) == list(gpu_check.STEPS)
    for rec in steps.values():
        assert rec["rows"] or (rec["status"] == "skipped" and rec["reason"]), rec
        assert rec["status"] in ("ok", "skipped"), rec
    assert code == 0
    for name in ("install", "pytest", "env", "conv", "train", "md"):
        assert steps[name]["status"] == "ok" and steps[name]["seconds"] > 0, name
    install = {(r["package"], r["version"], r["from"]) for r in steps["install"]["rows"]}
    assert install == {("gpucheck_probe", "0.1", "wheel"),
                       ("gpucheck_packed", "0.2", gpu_check.PACKED)}
    assert (tmp_path / "site" / "gpucheck_packed" / "__init__.py").exists()
    assert any("mace-torch==0.3.16" in n for n in steps["install"]["notes"])
    assert steps["pytest"]["rows"][0]["exit"] == 0  # the GPU tests skip on a CPU
    conv = steps["conv"]["rows"]
    assert {r["mul"] for r in conv} == {32, 64, 128}
    assert {"e3nn", "fused_cpu"} <= {r["backend"] for r in conv}
    assert all(r["fwd_ms"] > 0 and r["fwd_bwd_x_e3nn"] > 0 for r in conv)
    train = steps["train"]["rows"]
    assert {(r["system"], r["variant"]) for r in train} >= {
        ("aspirin", "ours"), ("aspirin", "e3nn"), ("emt", "ours"), ("emt", "e3nn")}
    assert all(r["ms_per_step"] > 0 and "ms_x_ours" in r for r in train)
    assert {r["atoms"] for r in steps["md"]["rows"]} == {8, 64}
    assert all(r["steps_per_s"] > 0 for r in steps["md"]["rows"])
    printed = capsys.readouterr().out
    assert "gpu_check on cpu (dry run)" in printed and "fwd/fwd+bwd: mul 32" in printed
    assert "md" in out.with_suffix(".log").read_text()


def test_time_limit_is_kept(tmp_path):
    """With 6 s, pytest (capped at 1 s) is stopped, the child steps run out of time, and the run
    ends within its limit with every step recorded."""
    gpu_check = _module()
    out = tmp_path / "gpu_check.json"
    start = time.monotonic()
    gpu_check.main(["run", "--dry-run", "--json", str(out), "--wheels", str(tmp_path / "none"),
                    "--time-limit", "6", "--cap", "pytest=1"])
    assert time.monotonic() - start < 6 + 3
    steps = _steps(out)
    assert steps["install"]["status"] == "skipped" and "prepare" in steps["install"]["reason"]
    assert steps["pytest"]["status"] == "timeout"
    for name in ("env", "conv", "train", "md"):
        assert steps[name]["status"] in ("ok", "timeout", "skipped"), steps[name]
    for name in ("train", "md"):
        assert steps[name]["status"] == "skipped" and "time limit" in steps[name]["reason"]


def test_a_step_over_its_cap_is_stopped_and_the_next_runs(tmp_path):
    """A child step that overruns its cap is stopped and recorded; a new child runs the next."""
    gpu_check = _module()
    out = tmp_path / "gpu_check.json"
    gpu_check.main(["run", "--dry-run", "--json", str(out), "--steps", "env", "md",
                    "--cap", "env=1", "--debug-sleep", "env=60", "--time-limit", "120"])
    steps = _steps(out)
    assert steps["env"]["status"] == "timeout" and "cap" in steps["env"]["reason"]
    assert steps["md"]["status"] == "ok" and steps["md"]["rows"]
    assert steps["conv"]["reason"] == "skipped: not in --steps"


def test_pytest_counts_and_gpu_test_paths():
    gpu_check = _module()
    counts = gpu_check._pytest_counts(["..", "FAILED tests/x.py::t - boom",
                                       "3 failed, 12 passed, 31 skipped, 2 errors in 9.1s"])
    assert counts == {"passed": 12, "failed": 3, "skipped": 31, "error": 2}
    stopped = gpu_check._pytest_counts(["..s.F", "ss. [ 40%]", "some other line"])
    assert stopped == {"passed": 4, "failed": 1, "skipped": 3, "error": 0}
    paths = gpu_check.gpu_test_paths()
    assert "tests/kernels" in paths and "tests/models/test_gpu.py" in paths
    assert not any(p.startswith("tests/kernels/") for p in paths)


def test_run_refuses_unknown_caps():
    gpu_check = _module()
    with pytest.raises(SystemExit):
        gpu_check.main(["run", "--dry-run", "--cap", "kernels=10"])
