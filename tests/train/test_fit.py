"""fit(): trains, writes its outputs, never overwrites a run, and resumes exactly after kill -9;
two gloo processes take the same steps as one with the same global batch."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from equivar.train import fit, load_checkpoint
from equivar.train.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "datasets" / "ethanol_xtb.extxyz"


def config(output, **extra):
    cfg = {
        "data": {"train": str(DATA), "max_structures": 30, "cutoff": 3.5, "batch_size": 4,
                 "valid_batch_size": 10, "valid_fraction": 0.2, "test_fraction": 0.2},
        "model": {"name": "potential", "options": {"preset": "S", "num_channels": 8}},
        "optim": {"lr": 5e-3, "schedule": "plateau", "warmup_steps": 3, "ema_decay": 0.9},
        "epochs": 3, "precision": "float64", "output": str(output), "progress": False,
    }  # fmt: skip
    for key, value in extra.items():
        section, _, name = key.rpartition("__")
        (cfg[section] if section else cfg)[name] = value
    return cfg


def test_fit_writes_outputs_and_lowers_the_loss(tmp_path):
    result = fit(config(tmp_path / "run", epochs=4))
    out = tmp_path / "run"
    for name in ("best.pt", "checkpoint_last.pt", "log.csv", "config.yaml",
                 "test_predictions.npz", "learning_curves.png", "parity.png"):
        assert (out / name).is_file(), name
    rows = (out / "log.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert "equivariance_error" in header and len(rows) == 5
    eq = [float(r.split(",")[header.index("equivariance_error")]) for r in rows[1:]]
    assert max(eq) < 1e-10  # float64 training: symmetric to rounding
    valid = [float(r.split(",")[header.index("valid_loss")]) for r in rows[1:]]
    assert valid[-1] < valid[0]
    assert result["test"]["forces_mae"] > 0 and "forces[Z=8]_mae" in result["test"]
    model = load_checkpoint(out / "best.pt")
    assert model.cutoff == 3.5


def test_an_existing_run_is_never_overwritten(tmp_path):
    fit(config(tmp_path / "run", epochs=1))
    with pytest.raises(ValueError, match="already holds a run"):
        fit(config(tmp_path / "run", epochs=1))
    with pytest.raises(ValueError, match="nothing to resume"):
        fit(config(tmp_path / "other", epochs=1), resume=True)


def _final_state(path):
    data = read_checkpoint(path)
    return data["state_dict"], data["train_state"]["ema"]["shadow"]


def _log_rows(path: Path) -> list[dict[str, float]]:
    """log.csv rows without the wall time (the one column a kill may change)."""
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    return [{k: float(v) for k, v in zip(header, line.split(","), strict=True) if k != "time_s"}
            for line in lines[1:]]


#: the killed child: it trains, and once its checkpoint holds ``kill_at`` steps it stops
#: there (sleeps) until the test kills it, so how fast a loaded machine runs cannot move the
#: moment of the kill past the run's end
_KILLED_CHILD = """
import json, sys, time
import equivar.train.trainer as trainer
from equivar.train import fit

config, resume, kill_at = json.loads(sys.argv[1]), sys.argv[2] == "1", int(sys.argv[3])
write = trainer.save_checkpoint

def save_then_wait(path, model, **kwargs):
    write(path, model, **kwargs)
    progress = (kwargs.get("train_state") or {}).get("progress") or {}
    if path.name == "checkpoint_last.pt" and progress.get("step", 0) >= kill_at:
        time.sleep(600)

trainer.save_checkpoint = save_then_wait
fit(config, resume=resume)
"""


def test_resume_after_kill_9_reaches_the_same_state(tmp_path):
    """Killed (SIGKILL) at several moments and resumed each time: the weights, their average,
    the optimiser state and every log row equal those of a run never interrupted."""
    epochs = 5
    reference = tmp_path / "reference"
    fit(config(reference, epochs=epochs))
    killed = tmp_path / "killed"
    last = killed / "checkpoint_last.pt"
    for kill_at, resume in ((4, False), (11, True), (17, True)):
        run_config = json.dumps(config(killed, epochs=epochs, checkpoint_every=1))
        proc = subprocess.Popen([sys.executable, "-c", _KILLED_CHILD, run_config,
                                 "1" if resume else "0", str(kill_at)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        deadline = time.time() + 600
        try:
            while time.time() < deadline:
                if last.exists() and read_checkpoint(last)["train_state"]["progress"][
                        "step"] >= kill_at:
                    break
                if proc.poll() is not None:
                    pytest.fail(f"training ended before it could be killed: "
                                f"{proc.stderr.read().decode()[-2000:]}")  # fmt: skip
                time.sleep(0.01)
            else:
                pytest.fail(f"no checkpoint with {kill_at} steps within 600 s")
            os.kill(proc.pid, signal.SIGKILL)  # no clean-up, no chance to finish a write
        finally:
            proc.kill()
            proc.wait()
            proc.stderr.close()
        step = read_checkpoint(last)["train_state"]["progress"]["step"]
        assert kill_at <= step < epochs * 5
    fit(config(killed, epochs=epochs), resume=True)  # also takes over the killed run's lock
    ref_weights, ref_ema = _final_state(reference / "checkpoint_last.pt")
    weights, ema = _final_state(last)
    for key in ref_weights:
        assert torch.allclose(weights[key], ref_weights[key], rtol=1e-12, atol=1e-14), key
        assert torch.allclose(ema[key], ref_ema[key], rtol=1e-12, atol=1e-14), key
    ref_opt = read_checkpoint(reference / "checkpoint_last.pt")["train_state"]["optimizer"]
    opt = read_checkpoint(last)["train_state"]["optimizer"]
    for k, ref_state in ref_opt["state"].items():
        for name, value in ref_state.items():
            torch.testing.assert_close(opt["state"][k][name], value, rtol=1e-12, atol=1e-14)
    ref_rows, rows = _log_rows(reference / "log.csv"), _log_rows(killed / "log.csv")
    assert [r["epoch"] for r in rows] == [r["epoch"] for r in ref_rows] == [1, 2, 3, 4, 5]
    for got, want in zip(rows, ref_rows, strict=True):
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), (got["epoch"], key)


def test_two_gloo_processes_match_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    extra = {"epochs": 2, "optim__ema_decay": 0.0}
    fit(config(one, **extra))
    cfg = tmp_path / "two.yaml"
    cfg.write_text(json.dumps(config(two, **extra)))  # JSON is YAML
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # a session of its own: on a timeout the whole group goes, no rank is left waiting on a
    # dead peer
    proc = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "equivar", "train", str(cfg)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, output.decode(errors="replace")[-3000:]
    a = read_checkpoint(one / "checkpoint_last.pt")["state_dict"]
    b = read_checkpoint(two / "checkpoint_last.pt")["state_dict"]
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=1e-9, atol=1e-12), key



def test_divergence_stops_with_an_error_naming_the_cure(tmp_path):
    """A learning rate that blows the weights up ends the run with an error naming the step and
    the options to change, not with NaN checkpoints and NaN test metrics."""
    cure = r"diverged at step \d+.*Lower optim.lr \(now 1e\+06"
    with pytest.raises(FloatingPointError, match=cure):
        fit(config(tmp_path / "run", epochs=3, optim__lr=1e6, optim__grad_clip=0.0))
