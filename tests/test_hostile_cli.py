"""Careless and hostile command lines (issue 21), one table: every case exits 2 (or argparse's
usage error) with one line that names the problem, no traceback, and leaves no half-written
output behind.

Each row is ``(id, argv, needle)``: ``argv`` may use ``{ckpt}`` (a trained checkpoint),
``{data}`` (a 3-frame extxyz file), ``{tmp}`` (the test's folder) and ``{cfg}`` (a valid tiny
training config); ``needle`` is a regular expression the error line must match.
"""

import re
from pathlib import Path

import numpy as np
import pytest
from ase.io import read as ase_read
from ase.io import write

from equivar.cli import main

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "datasets" / "ethanol_xtb.extxyz"

CONFIG = """\
data: {{train: {data}, cutoff: 3.0, batch_size: 2, valid_fraction: 0.34, test_fraction: 0.34}}
model: {{name: potential, options: {{preset: S, num_channels: 4, num_layers: 1, lmax: 0,
  sh_lmax: 1, radial_hidden: [4]}}}}
epochs: 1
precision: float64
output: {out}
progress: false
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A 3-frame data file, a tiny config, and a checkpoint trained for one epoch on them."""
    from equivar.train import fit
    from equivar.train.config import load_config

    base = tmp_path_factory.mktemp("hostile_cli")
    data = base / "three.extxyz"
    write(data, ase_read(DATA, index=":6"))
    cfg = base / "tiny.yaml"
    cfg.write_text(CONFIG.format(data=data, out=base / "run"))
    fit(load_config(cfg))
    return {"data": str(data), "cfg": str(cfg), "ckpt": str(base / "run" / "best.pt")}


def _nan_frames(path: Path) -> str:
    atoms = ase_read(DATA, index=0)
    atoms.positions[1] = np.nan
    write(path, atoms)
    return str(path)


def _unknown_element(path: Path) -> str:
    path.write_text("2\nProperties=species:S:1:pos:R:3\nC 0 0 0\nXx 1 0 0\n")
    return str(path)


def _text(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


# --- the table --------------------------------------------------------------------------------

CASES = [
    # train: config files
    ("train-missing-config", ["train", "{tmp}/none.yaml"], r"none\.yaml"),
    ("train-config-is-a-folder", ["train", "{tmp}"], r"folder|directory|not a file"),
    ("train-config-is-a-list", ["train", "@list.yaml"], r"mapping"),
    ("train-config-bad-yaml", ["train", "@badyaml.yaml"], r"line \d+"),
    ("train-unknown-override", ["train", "{cfg}", "epochz=3"],
     r"unknown config key 'epochz'; did you mean 'epochs'"),
    ("train-negative-epochs", ["train", "{cfg}", "epochs=-1"], r"epochs"),
    ("train-text-epochs", ["train", "{cfg}", "epochs=abc"], r"epochs.*number"),
    ("train-zero-cutoff", ["train", "{cfg}", "data.cutoff=0"], r"cutoff"),
    ("train-zero-batch", ["train", "{cfg}", "data.batch_size=0"], r"batch_size"),
    ("train-nan-lr", ["train", "{cfg}", "optim.lr=.nan"], r"optim\.lr.*finite"),
    ("train-missing-data", ["train", "{cfg}", "data.train={tmp}/absent.extxyz",
                            "output={tmp}/o"], r"absent"),
    ("train-bad-precision", ["train", "{cfg}", "precision=float16"], r"precision"),
    ("train-unknown-model", ["train", "{cfg}", "model.name=potentail", "output={tmp}/o"],
     r"potential"),
    ("train-unknown-preset", ["train", "{cfg}", "model.options.preset=XL", "output={tmp}/o"],
     r"preset"),
    ("train-fraction-over-one", ["train", "{cfg}", "data.valid_fraction=1.5"],
     r"valid_fraction"),
    ("train-resume-nothing", ["train", "{cfg}", "--resume", "output={tmp}/fresh"],
     r"nothing to resume"),
    ("train-output-is-a-file", ["train", "{cfg}", "output={data}"], r"output|exists|file"),
    # evaluate
    ("evaluate-missing-checkpoint", ["evaluate", "{tmp}/none.pt", "{data}"], r"none\.pt"),
    ("evaluate-text-checkpoint", ["evaluate", "@text.pt", "{data}"],
     r"truncated or corrupt|not a PyTorch"),
    ("evaluate-missing-data", ["evaluate", "{ckpt}", "{tmp}/none.extxyz"], r"none\.extxyz"),
    ("evaluate-nan-positions", ["evaluate", "{ckpt}", "@nan.extxyz"], r"NaN|finite"),
    ("evaluate-unknown-element", ["evaluate", "{ckpt}", "@xx.extxyz"], r"Xx"),
    ("evaluate-empty-file", ["evaluate", "{ckpt}", "@empty.extxyz"], r"empty|no struct"),
    ("evaluate-zero-batch", ["evaluate", "{ckpt}", "{data}", "--batch-size", "0"],
     r"batch.size"),
    ("evaluate-out-is-a-folder", ["evaluate", "{ckpt}", "{data}", "--out", "{tmp}"],
     r"folder|directory"),
    # md
    ("md-negative-steps", ["md", "{ckpt}", "{data}", "--steps", "-5", "--out", "{tmp}/t.xyz"],
     r"steps"),
    ("md-zero-dt", ["md", "{ckpt}", "{data}", "--dt", "0", "--out", "{tmp}/t.xyz"], r"dt"),
    ("md-nan-dt", ["md", "{ckpt}", "{data}", "--dt", "nan", "--out", "{tmp}/t.xyz"], r"dt"),
    ("md-negative-temperature", ["md", "{ckpt}", "{data}", "--temperature", "-1", "--out",
                                 "{tmp}/t.xyz"], r"temperature"),
    ("md-index-out-of-range", ["md", "{ckpt}", "{data}", "--index", "999", "--out",
                               "{tmp}/t.xyz"], r"999|index|range"),
    ("md-missing-structure", ["md", "{ckpt}", "{tmp}/none.xyz", "--out", "{tmp}/t.xyz"],
     r"none\.xyz"),
    # export
    ("export-missing-checkpoint", ["export", "{tmp}/none.pt", "-o", "{tmp}/m.pt2"],
     r"none\.pt"),
    ("export-out-is-a-folder", ["export", "{ckpt}", "-o", "{tmp}"], r"folder|directory"),
    ("export-text-checkpoint", ["export", "@text.pt", "-o", "{tmp}/m.pt2"],
     r"truncated or corrupt|not a PyTorch"),
    # convert
    ("convert-missing-input", ["convert", "{tmp}/none.extxyz", "-o", "{tmp}/shards"],
     r"none\.extxyz"),
    ("convert-zero-shard-size", ["convert", "{data}", "-o", "{tmp}/shards", "--shard-size", "0"],
     r"shard.size"),
    ("convert-nan-positions", ["convert", "@nan.extxyz", "-o", "{tmp}/shards"], r"NaN|finite"),
    # vmc
    ("vmc-zero-walkers", ["vmc", "--system", "He", "--walkers", "0", "--output", "{tmp}/v"],
     r"walkers"),
    ("vmc-negative-iterations", ["vmc", "--system", "He", "--iterations", "-1", "--output",
                                 "{tmp}/v"], r"iterations"),
    ("vmc-empty-system", ["vmc", "--system", "", "--output", "{tmp}/v"], r"system"),
    ("vmc-inf-lr", ["vmc", "--system", "He", "--lr", "inf", "--output", "{tmp}/v"], r"lr"),
    # check
    ("check-unknown-element", ["check", "@xx.extxyz"], r"Xx"),
    ("check-missing-file", ["check", "{tmp}/none.extxyz"], r"none\.extxyz"),
]  # fmt: skip

_MAKERS = {
    "@list.yaml": lambda p: _text(p / "list.yaml", "- a\n- b\n"),
    "@badyaml.yaml": lambda p: _text(p / "bad.yaml", "epochs: [1, 2\nseed: 3\n"),
    "@text.pt": lambda p: _text(p / "text.pt", "not a checkpoint\n"),
    "@nan.extxyz": lambda p: _nan_frames(p / "nan.extxyz"),
    "@xx.extxyz": lambda p: _unknown_element(p / "xx.extxyz"),
    "@empty.extxyz": lambda p: _text(p / "empty.extxyz", "\n\n\n"),
}


@pytest.mark.parametrize("case,argv,needle", CASES, ids=[c[0] for c in CASES])
def test_a_careless_command_line_gets_one_clear_line(case, argv, needle, files, tmp_path,
                                                     capsys):  # fmt: skip
    values = {**files, "tmp": str(tmp_path)}
    args = [_MAKERS[a](tmp_path) if a in _MAKERS else a.format(**values) for a in argv]
    before = sorted(p.name for p in tmp_path.iterdir())
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own usage error
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, (case, code, err)
    assert "Traceback" not in err, err
    assert re.search(needle, err, flags=re.IGNORECASE), (case, err)
    after = sorted(p.name for p in tmp_path.iterdir())
    leftovers = [n for n in after if n not in before and n.endswith(".tmp")]
    assert not leftovers, leftovers  # no half-written file
