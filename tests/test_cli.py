"""The CLI parses, runs the library and reports errors with a non-zero status."""

import subprocess
import sys
from pathlib import Path

import pytest

from equivar.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_check_on_shipped_data_passes(capsys, one_thread):
    status = main(["check", str(ROOT / "datasets" / "ethanol_xtb.extxyz"), "--max-structures",
                   "3", "--preset", "S", "--cutoff", "4.0"])
    out = capsys.readouterr().out
    assert status == 0
    assert "all symmetry checks passed" in out and "ethanol_xtb.extxyz" in out


def test_check_runs_finite_differences_on_a_few_structures_and_says_what_it_checked(
        capsys, monkeypatch, one_thread):
    """Finite differences cost ~110 model evaluations: on the first --fd-structures structures
    (default 4), the cheap symmetry checks on all; one CPU thread unless told otherwise."""
    import torch

    from equivar.testing import report

    seen = []
    real = report.assert_conservative

    def counting(model, batch, **kwargs):
        seen.append(batch.num_graphs)
        return real(model, batch, **kwargs)

    monkeypatch.setattr(report, "assert_conservative", counting)
    torch.set_num_threads(2)
    status = main(["check", str(ROOT / "datasets" / "ethanol_xtb.extxyz"), "--max-structures",
                   "6", "--cutoff", "4.0"])
    out = " ".join(capsys.readouterr().out.split())  # the summary is wrapped
    assert status == 0 and seen == [4]
    assert torch.get_num_threads() == 1 and "1 CPU thread" in out
    assert "on the first 4 structure(s) of each file" in out
    assert "3 random rotations" in out and "zero work around a 64-point closed loop" in out
    seen.clear()
    assert main(["check", str(ROOT / "datasets" / "ethanol_xtb.extxyz"), "--max-structures",
                 "2", "--cutoff", "4.0", "--fd-structures", "1"]) == 0
    assert seen == [1]
    assert main(["check", str(ROOT / "datasets" / "ethanol_xtb.extxyz"), "--max-structures",
                 "2", "--fd-structures", "0"]) == 0
    assert seen == [1] and "no finite differences" in " ".join(capsys.readouterr().out.split())
    from equivar.cli import parse

    assert parse(["check", "x.extxyz", "--threads", "0"]).threads == 0  # 0: torch's default


def test_check_reports_a_missing_file(capsys):
    assert main(["check", "no/such/file.extxyz"]) == 2
    assert "no/such/file.extxyz" in capsys.readouterr().err


def test_python_m_equivar_help():
    result = subprocess.run([sys.executable, "-m", "equivar", "check", "--help"],
                            capture_output=True, text=True, check=True)
    assert "rotations" in result.stdout and "--max-structures" in result.stdout


def test_overrides_may_follow_options():
    from equivar.cli import parse

    args = parse(["train", "cfg.yaml", "epochs=5", "--committee", "4", "output=runs/c"])
    assert args.committee == 4 and args.overrides == ["epochs=5", "output=runs/c"]
    with pytest.raises(SystemExit):  # anything else left over is still an error
        parse(["train", "cfg.yaml", "--committee", "4", "--no-such-flag"])


def test_allocator_tuning_applies_on_glibc_and_can_be_turned_off(monkeypatch):
    import platform

    from equivar._allocator import tune_glibc_malloc

    applied = tune_glibc_malloc()
    assert applied == (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
    monkeypatch.setenv("EQUIVAR_MALLOC_TUNING", "0")
    assert tune_glibc_malloc() is False


def test_the_command_lets_waiting_openmp_threads_sleep(monkeypatch):
    """``equivar`` sets ``OMP_WAIT_POLICY=PASSIVE`` before torch loads, unless the user chose."""
    import os

    from equivar.cli import main

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    with pytest.raises(SystemExit):
        main(["--version"])
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    with pytest.raises(SystemExit):
        main(["--version"])
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
