"""`equivar md CHECKPOINT STRUCTURE`: runs run_md from the command line, errors exit with 2."""

from ase.build import molecule
from ase.io import read, write

from equivar.cli import main

from .conftest import tiny_potential
from .test_checkpoint import save_checkpoint


def test_md_command_writes_a_trajectory(tmp_path, capsys):
    checkpoint = save_checkpoint(tiny_potential(), tmp_path / "model.pt")
    structure = tmp_path / "ethanol.xyz"
    write(structure, molecule("CH3CH2OH"))
    out = tmp_path / "traj.extxyz"
    status = main(["md", str(checkpoint), str(structure), "--ensemble", "nve", "--steps", "12",
                   "--dt", "0.5", "--temperature", "300", "--out", str(out), "--log-interval",
                   "4", "--no-progress"])  # fmt: skip
    text = capsys.readouterr().out
    assert status == 0, text
    assert "12 steps" in text and "steps/s" in text and "drift" in text
    frames = read(out, ":")
    assert [f.info["md_step"] for f in frames] == [0, 4, 8, 12]


def test_md_command_reports_bad_input(tmp_path, capsys):
    structure = tmp_path / "w.xyz"
    write(structure, molecule("H2O"))
    assert main(["md", str(tmp_path / "none.pt"), str(structure), "--no-progress"]) == 2
    assert "none.pt" in capsys.readouterr().err
    checkpoint = save_checkpoint(tiny_potential(), tmp_path / "model.pt")
    assert main(["md", str(checkpoint), str(tmp_path / "none.xyz"), "--no-progress"]) == 2
    assert "none.xyz" in capsys.readouterr().err
    assert main(["md", str(checkpoint), str(structure), "--steps", "-3", "--no-progress"]) == 2
    assert "steps" in capsys.readouterr().err
