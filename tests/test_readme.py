"""The README's Python tour runs as written and shows what it claims."""

import contextlib
import io
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_tour_runs(monkeypatch):
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python block"
    monkeypatch.chdir(ROOT)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], "README.md", "exec"), {})
    lines = out.getvalue().split()
    energy, energy_rotated, force_error = float(lines[0]), float(lines[1]), float(lines[2])
    assert abs(energy - energy_rotated) < 1e-10 * max(1.0, abs(energy))
    assert force_error < 1e-10
    assert os.path.exists(ROOT / "datasets" / "qm9_100.extxyz")
