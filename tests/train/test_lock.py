"""One training run per output folder (issue 21): a second run started on the same folder is
refused with a message naming the first, which keeps every row and checkpoint; a lock left by a
killed process is taken over; the lock is released however a run ends."""

import json
import os
import subprocess
import sys
import time

import pytest
import yaml

from equivar.train import fit
from equivar.train.lock import LOCK_NAME, output_lock

from .test_cli import tiny_config  # the 30-frame run those tests use


def test_two_runs_started_on_one_folder(tmp_path):
    out = tmp_path / "run"
    cfg = tmp_path / "c.yaml"
    # the first trains for 12 s (a time budget): long enough, on any machine, for the second to
    # start and be refused while the first holds the folder
    cfg.write_text(yaml.safe_dump(tiny_config(out, epochs=100_000, time_budget=0.2)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "equivar", "train", str(cfg)]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    deadline = time.time() + 120
    while not (out / LOCK_NAME).exists():  # the first holds the folder
        assert first.poll() is None and time.time() < deadline, first.communicate()
        time.sleep(0.05)
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 2, second.stderr
    assert "is in use by another training run" in second.stderr
    assert f"process {first.pid}" in second.stderr and "Traceback" not in second.stderr
    assert first.wait(timeout=600) == 0, first.communicate()
    rows = (out / "log.csv").read_text().splitlines()
    header = rows[0].split(",")
    epochs = [int(r.split(",")[header.index("epoch")]) for r in rows[1:]]
    assert epochs == list(range(1, len(epochs) + 1))  # the first run's rows only, in order
    assert (out / "best.pt").is_file() and not (out / LOCK_NAME).exists()


def test_a_killed_runs_lock_is_taken_over(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no longer runs, as after kill -9
    (out / LOCK_NAME).write_text(json.dumps({"pid": gone.pid, "host": os.uname().nodename,
                                             "started": time.time()}))
    fit(tiny_config(out))
    assert (out / "best.pt").is_file() and not (out / LOCK_NAME).exists()


def test_the_lock_is_released_when_a_run_fails(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="nothing to resume"):
        fit(tiny_config(out), resume=True)
    assert not (out / LOCK_NAME).exists()
    with output_lock(out, "test") as path:  # held: a second taker is refused, naming us
        assert path.exists()
        with pytest.raises(ValueError, match=rf"in use by another test \(process {os.getpid()}"):
            with output_lock(out, "test"):
                pass
    assert not path.exists()


def test_an_output_that_is_a_file_is_named(tmp_path):
    taken = tmp_path / "notes.txt"
    taken.write_text("keep me")
    with pytest.raises(ValueError, match="is an existing file, not a folder"):
        fit(tiny_config(taken))
    assert taken.read_text() == "keep me"
