"""``equivar vmc`` parses, runs the library, writes checkpoint/plot/result and resumes."""

import json
import re
import subprocess
import sys

import pytest

from equivar.cli import main

FAST = ["--walkers", "32", "--eval-iterations", "8", "--burn-in", "20", "--no-progress"]


def test_vmc_command_runs_and_resumes(tmp_path, capsys):
    out = tmp_path / "he"
    assert main(["vmc", "--system", "He", "--iterations", "5", "--output", str(out), *FAST]) == 0
    text = capsys.readouterr().out
    assert "He: E = " in text
    assert (out / "checkpoint.pt").is_file() and (out / "result.json").is_file()
    result = json.loads((out / "result.json").read_text())
    assert result["iterations"] == 5 and result["error"] > 0
    # a second run refuses to overwrite, --resume continues to 8 iterations
    assert main(["vmc", "--system", "He", "--iterations", "8", "--output", str(out), *FAST]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["vmc", "--system", "He", "--iterations", "8", "--output", str(out), "--resume",
                 *FAST]) == 0
    assert json.loads((out / "result.json").read_text())["iterations"] == 8


def test_vmc_command_takes_the_psiformer_ansatz(tmp_path, capsys):
    """``--architecture psiformer`` builds the attention ansatz; its checkpoint says so, and a
    resume with the other architecture is refused."""
    import torch

    out = tmp_path / "he"
    args = ["vmc", "--system", "He", "--output", str(out), "--architecture", "psiformer", *FAST]
    assert main([*args, "--iterations", "3"]) == 0
    assert "He: E = " in capsys.readouterr().out
    saved = torch.load(out / "checkpoint.pt", weights_only=False)
    assert saved["config"]["model"]["architecture"] == "psiformer"
    assert main(["vmc", "--system", "He", "--output", str(out), "--iterations", "4", "--resume",
                 *FAST]) == 2  # fmt: skip
    assert "different model options" in capsys.readouterr().err


def test_vmc_command_reports_bad_input(tmp_path, capsys):
    assert main(["vmc", "--system", "Hx", "--output", str(tmp_path / "x"), *FAST]) == 2
    assert "unknown system 'Hx'" in capsys.readouterr().err


def test_vmc_help():
    result = subprocess.run([sys.executable, "-m", "equivar", "vmc", "--help"],
                            capture_output=True, text=True, check=True)
    assert "--system" in result.stdout and "--resume" in result.stdout


@pytest.mark.slow
def test_vmc_command_with_default_settings(tmp_path):
    """The command of the issue, default settings (1024 walkers, 200 evaluation sweeps)."""
    result = subprocess.run([sys.executable, "-m", "equivar", "vmc", "--system", "He",
                             "--iterations", "5", "--no-progress"], cwd=tmp_path,
                            capture_output=True, text=True, check=True)
    assert "He: E = " in result.stdout
    assert (tmp_path / "runs" / "vmc_He" / "energy.png").is_file()


@pytest.mark.parametrize(("flags", "match"), [
    (["--lr", "nan"], "lr must be a finite number > 0"),
    (["--lr", "-1"], "lr must be a finite number > 0"),
])  # fmt: skip
def test_careless_numbers_are_refused_before_any_work(tmp_path, capsys, flags, match):
    assert main(["vmc", "--system", "He", "--output", str(tmp_path / "x"), *FAST, *flags]) == 2
    assert re.search(match, capsys.readouterr().err)
    assert not (tmp_path / "x").exists()


def test_an_output_that_is_a_file_is_refused_before_any_work(tmp_path, capsys):
    taken = tmp_path / "result.txt"
    taken.write_text("keep me")
    assert main(["vmc", "--system", "He", "--output", str(taken), *FAST]) == 2
    assert "is an existing file" in capsys.readouterr().err
    assert taken.read_text() == "keep me"
