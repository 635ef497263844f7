"""``equivar evaluate`` scores the frames training held out, with units; ``equivar train``
stops cleanly on Ctrl-C."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ase.io import read, write

from equivar.cli import main
from equivar.train import fit

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "datasets" / "ethanol_xtb.extxyz"  # 200 frames


def tiny_config(output, **extra):
    """A run on the first 30 frames of DATA, 6 held out for validation and 6 for testing."""
    return {
        "data": {"train": str(DATA), "max_structures": 30, "cutoff": 3.5, "batch_size": 10,
                 "valid_fraction": 0.2, "test_fraction": 0.2},
        "model": {"name": "potential", "options": {
            "preset": "S", "num_channels": 4, "num_layers": 1, "lmax": 1, "sh_lmax": 1,
            "radial_hidden": [8]}},
        "epochs": 1, "precision": "float64", "output": str(output), "progress": False, **extra,
    }  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate") / "run"
    return out, fit(tiny_config(out))


def test_evaluate_on_the_training_file_scores_only_its_test_split(run, capsys, tmp_path):
    out, result = run
    preds = tmp_path / "preds.npz"
    assert main(["evaluate", str(out / "best.pt"), str(DATA), "--out", str(preds)]) == 0
    text = capsys.readouterr().out
    assert "test split: 6 of the first 30 of 200 frames, the ones training held out" in text
    assert "eV/atom" in text and "eV/A" in text  # the table names its units
    energy = next(line for line in text.splitlines() if line.startswith("energy "))
    assert float(energy.split()[2]) == pytest.approx(result["test"]["energy_mae"], rel=1e-4)
    # the very frames fit tested on (same split function), in the same order
    ours, fits = np.load(preds), np.load(out / "test_predictions.npz")
    np.testing.assert_allclose(ours["energy_true"], fits["energy_true"], rtol=1e-12)
    np.testing.assert_allclose(ours["energy_pred"], fits["energy_pred"], rtol=1e-9)


def test_evaluate_all_and_other_files_score_every_frame(run, capsys, tmp_path):
    out, _ = run
    assert main(["evaluate", str(out / "best.pt"), str(DATA), "--all"]) == 0
    assert "all 200 frames (--all) of the training file, 18 of them trained on" in (
        capsys.readouterr().out)
    other = tmp_path / "other.extxyz"
    write(other, read(DATA, "190:"))
    assert main(["evaluate", str(out / "best.pt"), str(other)]) == 0
    assert "all 10 frames (not the training file" in capsys.readouterr().out


def test_evaluate_with_a_separate_validation_file_holds_out_the_same_test_frames(
        tmp_path, capsys):
    valid = tmp_path / "valid.extxyz"
    write(valid, read(DATA, "190:"))
    config = tiny_config(tmp_path / "run")
    config["data"]["valid"] = str(valid)
    fit(config)
    preds = tmp_path / "preds.npz"
    assert main(["evaluate", str(tmp_path / "run" / "best.pt"), str(DATA), "--out",
                 str(preds)]) == 0
    assert "test split: 6 of the first 30 of 200 frames" in capsys.readouterr().out
    np.testing.assert_allclose(np.load(preds)["energy_true"],
                               np.load(tmp_path / "run" / "test_predictions.npz")["energy_true"],
                               rtol=1e-12)
    assert main(["evaluate", str(tmp_path / "run" / "best.pt"), str(valid)]) == 0
    assert "all 10 frames (the run's data.valid file" in capsys.readouterr().out


def test_evaluate_refuses_a_training_file_that_changed(run, tmp_path):
    """Another frame count would split differently: its test frames are unknown then."""
    from equivar.data import read as read_graphs
    from equivar.train.checkpoint import read_checkpoint
    from equivar.train.split import frames_to_score

    out, _ = run
    changed = tmp_path / "changed.extxyz"
    write(changed, read(DATA, ":25"))
    saved = read_checkpoint(out / "best.pt")
    saved["data_files"]["train"] = str(changed)  # as if the run had trained on it
    frames = read_graphs(changed, 3.5)
    with pytest.raises(ValueError, match="changed since training.*--all"):
        frames_to_score(saved, changed, frames)
    assert frames_to_score(saved, changed, frames, all_frames=True).dataset is frames


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"training ended (status {proc.returncode}) before it was interrupted: "
                        f"{proc.stderr.read()}")
        if time.time() > deadline:
            pytest.fail(f"{path} did not appear in {timeout:.0f} s")
        time.sleep(0.05)


def test_ctrl_c_stops_training_with_one_line_and_status_130(tmp_path):
    out = tmp_path / "run"
    cfg = tmp_path / "tiny.yaml"
    # many epochs: still training when interrupted; a progress bar, which must be closed first
    cfg.write_text(json.dumps(tiny_config(out, epochs=10_000, progress=True,
                                          checkpoint_every=1)))  # JSON is YAML
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # SIGINT as a terminal delivers it, even when pytest itself was started in the background
    # by a non-interactive shell (which ignores SIGINT, and children inherit that)
    proc = subprocess.Popen([sys.executable, "-m", "equivar", "train", str(cfg)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        _wait_for(out / "checkpoint_last.pt", proc)
        time.sleep(0.5)  # mid-step, or mid-write of the next checkpoint
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == (f"equivar train: interrupted; the last checkpoint is in {out} "
                                    "(continue with --resume)")
    # nothing half-written: no temporary files, and every file a resume reads is whole
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    from equivar.train.checkpoint import read_checkpoint

    assert read_checkpoint(out / "checkpoint_last.pt")["train_state"]["progress"]["step"] >= 1
    assert json.loads((out / "config.yaml").read_text())["output"] == str(out)


def test_ctrl_c_in_any_command_is_status_130_without_a_traceback(monkeypatch, capsys):
    import equivar.simulate.md as md

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(md, "run_md", interrupted)
    structure = ROOT / "datasets" / "ethanol_xtb.extxyz"
    try:
        status = main(["md", "model.pt", str(structure), "--no-progress"])
    except KeyboardInterrupt:  # would stop the whole test session
        pytest.fail("KeyboardInterrupt escaped equivar.cli.main")
    assert status == 130
    assert capsys.readouterr().err == "equivar md: interrupted\n"  # no trajectory written yet


def test_the_resume_note_says_whether_a_checkpoint_exists(tmp_path):
    from equivar.train.cli import _resume_note

    assert "no checkpoint was written yet" in _resume_note(str(tmp_path))
    (tmp_path / "member_0").mkdir()
    (tmp_path / "member_0" / "checkpoint_last.pt").write_bytes(b"")  # a committee's
    assert "continue with --resume" in _resume_note(str(tmp_path))
