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


def test_nvt_reports_the_temperature_against_its_target_not_a_drift(tmp_path, capsys):
    """A thermostat exchanges energy on purpose: an energy drift would mean nothing."""
    checkpoint = save_checkpoint(tiny_potential(), tmp_path / "model.pt")
    structure = tmp_path / "ethanol.xyz"
    write(structure, molecule("CH3CH2OH"))
    status = main(["md", str(checkpoint), str(structure), "--ensemble", "nvt", "--steps", "8",
                   "--temperature", "250", "--out", str(tmp_path / "t.extxyz"),
                   "--log-interval", "4", "--no-progress"])  # fmt: skip
    text = capsys.readouterr().out
    assert status == 0, text
    assert "drift" not in text and "total energy" not in text
    assert "K mean against the target 250 K" in text and "Langevin" in text


def test_npt_reports_temperature_volume_and_pressure(tmp_path, capsys, copper):
    checkpoint = save_checkpoint(tiny_potential(), tmp_path / "model.pt")
    structure = tmp_path / "cu.extxyz"
    write(structure, copper)
    status = main(["md", str(checkpoint), str(structure), "--ensemble", "npt", "--steps", "4",
                   "--dt", "1", "--pressure", "0.5", "--out", str(tmp_path / "t.extxyz"),
                   "--log-interval", "2", "--no-progress"])  # fmt: skip
    text = capsys.readouterr().out
    assert status == 0, text
    assert "drift" not in text
    assert "K mean against the target 300 K" in text
    assert "A^3 mean (start" in text and "GPa mean against the target 0.5 GPa" in text


def test_npt_result_logs_a_finite_pressure(potential, copper):
    import numpy as np

    from equivar.simulate.md import run_md

    result = run_md(potential, copper, ensemble="npt", steps=4, dt_fs=1.0, log_interval=2,
                    progress=False)
    assert result.pressure_GPa.shape == (3,) and np.all(np.isfinite(result.pressure_GPa))
    assert result.target_temperature_K == 300.0
    nve = run_md(potential, copper, ensemble="nve", steps=2, log_interval=2, progress=False)
    assert nve.pressure_GPa is None  # not computed where nothing needs the stress


def test_outputs_are_checked_before_any_work(tmp_path, capsys):
    """An existing trajectory is never replaced unasked; a folder where a file is wanted is
    named; the default trajectory goes beside the checkpoint (issues 21 and 26)."""
    checkpoint = save_checkpoint(tiny_potential(), tmp_path / "model.pt")
    structure = tmp_path / "w.xyz"
    write(structure, molecule("H2O"))
    run = ["md", str(checkpoint), str(structure), "--steps", "2", "--no-progress"]
    assert main(run) == 0
    default = tmp_path / "md.extxyz"
    assert default.is_file()
    before = default.read_text()
    assert main(run) == 2
    assert "exists: pass --overwrite" in capsys.readouterr().err
    assert default.read_text() == before
    assert main([*run, "--overwrite", "--seed", "1"]) == 0
    assert main([*run, "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["export", str(checkpoint), "-o", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["evaluate", str(checkpoint), str(structure), "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_aoti_is_asked_for_and_only_for_exports(tmp_path, capsys):
    checkpoint = save_checkpoint(tiny_potential(), tmp_path / "model.pt")
    structure = tmp_path / "w.xyz"
    write(structure, molecule("H2O"))
    assert main(["md", str(checkpoint), str(structure), "--aoti", "--no-progress"]) == 2
    assert "--aoti runs the AOTInductor build of a .pt2 export" in capsys.readouterr().err
