"""Hostile and careless files (issue 21): every malformed input is a ValueError that names the
file and the problem - never a parser's traceback, a silent truncation or "0 structures, ok" -
and a property-based fuzz of the readers and the config loader finds no other exception."""

import os
import string
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from equivar.data import read
from equivar.train import load_config

ROOT = Path(__file__).resolve().parents[2]
ETHANOL = (ROOT / "datasets" / "ethanol_xtb.extxyz").read_text().splitlines()
N = int(ETHANOL[0])
FRAME = ETHANOL[: N + 2]  # the first frame: count line, comment line, N atom lines


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def _frame(**edits) -> list[str]:
    lines = list(FRAME)
    for k, text in edits.items():
        lines[int(k[1:])] = text
    return lines


EMT = ROOT / "datasets" / "emt_metals.npz"
NAN_ENERGY = FRAME[1].replace("energy=", "energy=nan x=")
INF_FORCE = " ".join(FRAME[3].split()[:4] + ["inf", "0", "0"])


def _npz(z):
    return lambda p: np.savez(p, z=np.array(z), pos=np.eye(len(z), 3), n_atoms=np.array([len(z)]))


CASES = {
    "blank.extxyz": (lambda p: p.write_text("\n\n\n"), r"holds no structures .*empty or blank"),
    "empty.extxyz": (lambda p: p.write_text(""), r"holds no structures"),
    "truncated.extxyz": (lambda p: _write(p, FRAME[:-3]), r"frame 0: malformed or truncated"),
    "count.extxyz": (lambda p: _write(p, _frame(l0=str(N + 2))),
                     r"frame 0: malformed or truncated .*expected 11"),
    "element.extxyz": (lambda p: _write(p, _frame(l2="Xx" + FRAME[2][1:])),
                       r"frame 0: unknown element symbol 'Xx'"),
    "nan_energy.extxyz": (lambda p: _write(p, _frame(l1=NAN_ENERGY)),
                          r"structure 0: target 'energy' has 1 non-finite"),
    "inf_force.extxyz": (lambda p: _write(p, _frame(l3=INF_FORCE)),
                         r"target 'forces' has 1 non-finite"),
    "text.npz": (lambda p: p.write_text("hello"), r"is not an .npz file"),
    "truncated.npz": (lambda p: p.write_bytes(EMT.read_bytes()[:300]),
                      r"corrupt or truncated .npz"),
    "fractional_z.npz": (_npz([6.5, 1.0]), r"z\[0\] = 6.5 is not a whole atomic number"),
    "z_zero.npz": (_npz([0, 1]), r"z\[0\] = 0 is not an element"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_file_is_a_named_error(tmp_path, name):
    make, match = CASES[name]
    path = tmp_path / name
    make(path)
    with pytest.raises(ValueError, match=match) as info:
        read(path, cutoff=4.0)
    assert str(path) in str(info.value) or name in str(info.value)


@pytest.mark.parametrize("name", ["blank.extxyz", "element.extxyz", "text.npz",
                                  "nan_energy.extxyz"])
def test_the_cli_names_the_file_with_exit_2_and_no_traceback(tmp_path, capsys, name):
    from equivar.cli import main

    make, match = CASES[name]
    path = tmp_path / name
    make(path)
    assert main(["check", str(path), "--fd-structures", "0", "--max-structures", "1"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and name in err and "error:" in err


# --- property-based fuzz: no exception but the package's clear ones -----------------------------
ALLOWED = (ValueError, FileNotFoundError, TypeError)


def _mutate(lines: list[str], data) -> list[str]:
    lines = list(lines)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(lines) - 1))
        op = data.draw(st.sampled_from(["drop", "dup", "garble", "token", "cut"]))
        if op == "drop":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "garble":
            lines[i] = data.draw(st.text(string.printable, max_size=40))
        elif op == "token":  # replace one whitespace-separated token
            tokens = lines[i].split() or [""]
            j = data.draw(st.integers(0, len(tokens) - 1))
            tokens[j] = data.draw(st.sampled_from(["nan", "inf", "-1e400", "1e308", "Xx", "", "?",
                                                   "0", "-7", "3.5", "energy=", '"']))
            lines[i] = " ".join(tokens)
        else:
            lines = lines[: i + 1]
        if not lines:
            break
    return lines


# derandomize: the same examples on every run, so CI never meets a new one by chance;
# EQUIVAR_FUZZ_EXPLORE=1 draws new ones (then run it a few times, as after a reader change)
FUZZ = dict(deadline=None, derandomize=os.environ.get("EQUIVAR_FUZZ_EXPLORE") != "1",
            suppress_health_check=[HealthCheck.function_scoped_fixture])


@settings(max_examples=60, **FUZZ)
@given(data=st.data())
def test_fuzzed_extxyz_reads_or_fails_clearly(tmp_path, data):
    path = tmp_path / "fuzz.extxyz"
    _write(path, _mutate(ETHANOL[: 2 * (N + 2)], data))
    try:
        dataset = read(path, cutoff=4.0)
    except ALLOWED as err:
        assert str(err), "an error must say something"
        return
    assert len(dataset) >= 1  # what reads is a real dataset


@settings(max_examples=40, **FUZZ)
@given(payload=st.binary(max_size=400))
def test_fuzzed_npz_bytes_fail_clearly(tmp_path, payload):
    path = tmp_path / "fuzz.npz"
    path.write_bytes(payload)
    with pytest.raises(ALLOWED):
        read(path, cutoff=4.0)


CONFIG = """data: {train: x.extxyz, cutoff: 4.0, batch_size: 8}
model: {name: potential, options: {preset: S}}
loss: {energy: 1.0, forces: 10.0}
optim: {lr: 0.01, schedule: cosine}
epochs: 10
"""


@settings(max_examples=80, **FUZZ)
@given(data=st.data())
def test_fuzzed_configs_load_or_fail_clearly(tmp_path, data):
    lines = CONFIG.splitlines()
    i = data.draw(st.integers(0, len(lines) - 1))
    lines[i] = data.draw(st.one_of(
        st.text(string.printable, max_size=50),
        st.builds(lambda a, b: lines[i].replace(a, b),
                  st.sampled_from(["4.0", "8", "1.0", "10", "cosine", "S", "{", ":", "0.01"]),
                  st.sampled_from([".nan", "-.inf", "-3", "[", "}", "''", "1e999", "yes", "~",
                                   "!!python/object:os.system", "*a", "&a x"])),
    ))  # fmt: skip
    path = tmp_path / "c.yaml"
    path.write_text("\n".join(lines) + "\n")
    try:
        load_config(path)
    except ValueError as err:
        assert str(err)
