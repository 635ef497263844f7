"""The CLI parses, runs the library and reports errors with a non-zero status."""

import subprocess
import sys
from pathlib import Path

import pytest

from equivar.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_check_on_shipped_data_passes(capsys):
    status = main(["check", str(ROOT / "datasets" / "ethanol_xtb.extxyz"), "--max-structures",
                   "3", "--preset", "S", "--cutoff", "4.0"])
    out = capsys.readouterr().out
    assert status == 0
    assert "all symmetry checks passed" in out and "ethanol_xtb.extxyz" in out


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
