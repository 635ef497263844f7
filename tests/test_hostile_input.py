"""Hostile and careless input (issue 21): files from strangers run none of their code, and
absurd structures get a message instead of killing the process.

A. Code execution from a stranger's file: tampered ``.pt2`` exports and malicious ``.pt``
   checkpoints are refused as unsafe, by every way equivar opens them, and their payload (it
   creates a marker file) never runs.
B. Process killed or memory exhausted in the neighbour list: a far atom (SIGFPE in vesin) and a
   huge cutoff on a small periodic cell (memory) give ``ValueError``; shapes on which vesin's
   cell grid collapses still get the right graph. Whatever could kill the interpreter runs in
   a subprocess, under a memory limit.
"""

import io
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from equivar.cli import main
from equivar.data import from_ase, radius_graph
from equivar.models import build
from equivar.simulate import EquivarCalculator
from equivar.train import load_checkpoint, save_checkpoint
from equivar.train.audit import check_program
from equivar.train.config import config_from_dict
from equivar.train.export import export_model, load_exported

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(preset="S", species=["H", "O"], cutoff=3.0, num_channels=4, lmax=0, sh_lmax=1,
            num_layers=1, radial_hidden=[4], dtype="float64")  # fmt: skip


@pytest.fixture(autouse=True)
def _single_threaded(one_thread):
    """Tiny tensors: see tests/conftest.py::one_thread."""


def _potential():
    torch.manual_seed(0)
    return build("potential", **TINY)


class _WritesMarker:
    """Unpickling this calls ``open(path, "w")``: the file appearing means code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _torch_save(obj, **kwargs) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, **kwargs)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------
# A. code execution from a stranger's file
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """A real export of a tiny potential (and its checkpoint), made once."""
    folder = tmp_path_factory.mktemp("export")
    model = _potential()
    save_checkpoint(folder / "best.pt", model)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return export_model(model, folder / "model.pt2")
    finally:
        torch.set_num_threads(previous)


def _tamper(source: Path, target: Path, edit) -> Path:
    """Copy the archive, passing each entry through ``edit(name, bytes, added) -> bytes | None``
    (``added``: a dict of entries to append)."""
    added = {}
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        root = zin.namelist()[0].split("/")[0]
        for name in zin.namelist():
            data = edit(name.removeprefix(root + "/"), zin.read(name), added)
            if data is not None:
                zout.writestr(name, data)
        for name, data in added.items():
            zout.writestr(f"{root}/{name}", data)
    return target


def _pickled_weight(marker):
    """The issue's file: one weight re-marked as pickled, a payload stored in its place."""

    def edit(name, data, added):
        if name == "data/weights/weight_0":
            return _torch_save(_WritesMarker(marker))
        if name == "data/weights/model_weights_config.json":
            config = json.loads(data)
            entry = next(v for v in config["config"].values() if v["path_name"] == "weight_0")
            entry["use_pickle"] = True
            return json.dumps(config).encode()
        return data

    return edit


def _legacy_weights(marker):
    """A legacy whole-file weights entry (torch falls back to weights_only=False for it)."""

    def edit(name, data, added):
        added["data/weights/model.pt"] = _torch_save({"w": _WritesMarker(marker)})
        return data

    return edit


def _sample_inputs(marker):
    """The program's sample inputs (the same fallback)."""

    def edit(name, data, added):
        return _torch_save((_WritesMarker(marker),)) if name.startswith("data/sample_inputs/") \
            else data  # fmt: skip

    return edit


def _opaque_constant(marker):
    """An opaque constant: torch reads it with a plain pickle.loads."""
    import pickle

    def edit(name, data, added):
        if name == "data/constants/model_constants_config.json":
            added["data/constants/opaque_obj_0"] = pickle.dumps(_WritesMarker(marker))
            meta = {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": True,
                    "tensor_meta": None}  # fmt: skip
            return json.dumps({"config": {"evil": meta}}).encode()
        return data

    return edit


def _sympy_expression(marker):
    """A symbolic size that sympy.sympify (eval) would run."""

    def edit(name, data, added):
        if name == "models/model.json":
            text = data.decode()
            old = next(s for s in json.loads(text)["range_constraints"])  # a symbol, e.g. s10
            needle = f"\"Symbol('{old}', positive=True, integer=True)\""
            assert needle in text
            evil = (f"Symbol('{old}', positive=True, integer=True)"
                    f" + 0*len(str(open('{marker}', 'w')))")
            return text.replace(needle, json.dumps(evil), 1).encode()
        return data

    return edit


TAMPERINGS = {"pickled weight": _pickled_weight, "legacy weights": _legacy_weights,
              "sample inputs": _sample_inputs, "opaque constant": _opaque_constant,
              "sympy expression": _sympy_expression}  # fmt: skip
#: what the refusal names for each
NAMED = {"pickled weight": "entry 'data/weights/weight_0' is a pickle that imports 'io.open'",
         "legacy weights": "entry 'data/weights/model.pt' is a pickle that imports 'io.open'",
         "sample inputs": "entry 'data/sample_inputs/model.pt' is a pickle that imports",
         "opaque constant": "constant 'evil' (entry 'data/constants/opaque_obj_0') is a pickled",
         "sympy expression": "calls 'len'"}  # fmt: skip


@pytest.mark.parametrize("kind", list(TAMPERINGS))
def test_a_tampered_export_is_refused_as_unsafe_and_runs_nothing(export, tmp_path, kind):
    marker = tmp_path / "marker"
    bad = _tamper(export, tmp_path / "bad.pt2", TAMPERINGS[kind](marker))
    with pytest.raises(ValueError, match="unsafe") as info:
        load_exported(bad)
    assert NAMED[kind] in str(info.value)
    assert "equivar exports never contain one" in str(info.value)
    assert not marker.exists()
    with pytest.raises(ValueError, match="unsafe"):
        load_exported(bad, backend="export")
    assert not marker.exists()


def test_the_calculator_and_equivar_md_refuse_a_tampered_export(export, tmp_path, capsys):
    marker = tmp_path / "marker"
    bad = _tamper(export, tmp_path / "bad.pt2", _pickled_weight(marker))
    with pytest.raises(ValueError, match="unsafe: entry 'data/weights/weight_0'"):
        EquivarCalculator(bad)
    assert not marker.exists()
    write(tmp_path / "water.extxyz", molecule("H2O"))
    code = main(["md", str(bad), str(tmp_path / "water.extxyz"), "--steps", "1", "--no-progress",
                 "--out", str(tmp_path / "md.extxyz")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "refusing to load" in err and "unsafe" in err and "io.open" in err
    assert not marker.exists()


def test_guard_code_stored_in_an_export_never_runs(export, tmp_path):
    """torch exec()s the stored guards when it builds the program's module; equivar does not
    build them (the same input checks run from the range constraints)."""
    marker = tmp_path / "marker"

    def edit(name, data, added):
        if name == "models/model.json":
            program = json.loads(data)
            program["guards_code"].append(f"open({str(marker)!r}, 'w') is not None")
            return json.dumps(program).encode()
        return data

    potential = load_exported(_tamper(export, tmp_path / "guards.pt2", edit))
    energy = potential(from_ase(molecule("H2O"), 3.0, dtype=torch.float64))["energy"]
    assert energy.shape == (1,) and torch.isfinite(energy).all()
    assert not marker.exists()


def test_the_untampered_export_still_loads_and_checks_its_inputs(export):
    potential = load_exported(export)
    data = from_ase(molecule("H2O"), 3.0, dtype=torch.float64)
    reference = _potential().eval()(data)["energy"]
    torch.testing.assert_close(potential(data)["energy"], reference, rtol=0, atol=1e-10)
    broken = {**data.to_dict(), "batch": torch.zeros(2, dtype=torch.long)}  # 3 atoms
    with pytest.raises(RuntimeError):
        potential(broken)


def test_a_graph_calling_anything_but_aten_is_refused():
    """The check after loading (torch resolves any ``torch.``-prefixed target a file names)."""
    graph = torch.fx.Graph()
    x = graph.placeholder("x")
    graph.call_function(os.getcwd, ())
    graph.output(x)
    program = type("Program", (), {"graph_module": torch.fx.GraphModule(torch.nn.Module(),
                                                                          graph)})()
    with pytest.raises(ValueError, match=r"unsafe: graph node 'getcwd' .* calls '(posix|nt)\."):
        check_program(program, "x.pt2")


def _malicious_checkpoint(path, marker, protocol=4):
    """A file shaped like a checkpoint with a payload inside (protocol 4 by default: the pickle
    torch's weights-only unpickler stops at an unknown opcode, once called "corrupt")."""
    payload = {"state_dict": {}, "config": {"name": "potential"}, "evil": _WritesMarker(marker)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_torch_save(payload, pickle_protocol=protocol))
    return path


UNSAFE_CHECKPOINT = "unsafe to unpickle: it is a pickle that imports 'io.open'"


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")  # torch's, while refusing it
@pytest.mark.parametrize("protocol", [2, 4], ids=["GLOBAL", "STACK_GLOBAL"])
def test_a_malicious_checkpoint_is_called_unsafe_not_corrupt(tmp_path, protocol):
    """Protocol 4 (STACK_GLOBAL, FRAME) was called 'truncated or corrupt' before."""
    marker = tmp_path / "marker"
    path = _malicious_checkpoint(tmp_path / "evil.pt", marker, protocol)
    with pytest.raises(ValueError, match=UNSAFE_CHECKPOINT) as info:
        load_checkpoint(path)
    assert "corrupt" not in str(info.value)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:`torch.jit.save` is deprecated")
def test_a_torchscript_checkpoint_is_called_unsafe(tmp_path):
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), tmp_path / "script.pt")
    with pytest.raises(ValueError, match="TorchScript archive: it holds code, which is unsafe"):
        load_checkpoint(tmp_path / "script.pt")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")
def test_equivar_evaluate_and_a_committee_folder_refuse_a_malicious_checkpoint(tmp_path, capsys):
    marker = tmp_path / "marker"
    bad = _malicious_checkpoint(tmp_path / "run" / "member_0" / "best.pt", marker)
    water = molecule("H2O")
    water.calc = SinglePointCalculator(water, energy=0.0, forces=np.zeros((3, 3)))
    write(tmp_path / "data.extxyz", water)
    assert main(["evaluate", str(bad), str(tmp_path / "data.extxyz")]) == 2
    assert UNSAFE_CHECKPOINT in capsys.readouterr().err
    with pytest.raises(ValueError, match=UNSAFE_CHECKPOINT):
        EquivarCalculator(tmp_path / "run")  # a committee folder
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")
def test_vmc_resume_refuses_a_malicious_checkpoint(tmp_path, capsys):
    marker = tmp_path / "marker"
    out = tmp_path / "he"
    _malicious_checkpoint(out / "checkpoint.pt", marker)
    fast = ["--walkers", "8", "--iterations", "2", "--eval-iterations", "4", "--burn-in", "2",
            "--no-progress"]  # fmt: skip
    assert main(["vmc", "--system", "He", "--output", str(out), "--resume", *fast]) == 2
    assert UNSAFE_CHECKPOINT in capsys.readouterr().err
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")
def test_fine_tuning_refuses_a_malicious_init_from(tmp_path):
    from equivar.train import fit

    marker = tmp_path / "marker"
    bad = _malicious_checkpoint(tmp_path / "pre.pt", marker)
    options = {k: v for k, v in TINY.items() if k not in ("cutoff", "dtype", "species")}
    config = config_from_dict({
        "data": {"train": str(ROOT / "datasets" / "ethanol_xtb.extxyz"), "max_structures": 8,
                 "cutoff": 3.0, "batch_size": 4, "valid_fraction": 0.25, "test_fraction": 0.25},
        "model": {"name": "potential", "options": options}, "init_from": str(bad),
        "epochs": 1, "precision": "float64", "output": str(tmp_path / "run"), "progress": False,
    })  # fmt: skip
    with pytest.raises(ValueError, match=UNSAFE_CHECKPOINT):
        fit(config)
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------
# B. process killed or memory exhausted in the neighbour list
# ------------------------------------------------------------------------------------------------

#: a subprocess that may hit vesin's SIGFPE or a runaway allocation: 6 GB of address space
_PRELUDE = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
import numpy as np, torch
torch.set_num_threads(1)
"""


def _subprocess(code: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    script = _PRELUDE + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)  # fmt: skip


def _refused(result: subprocess.CompletedProcess, *needles: str) -> None:
    """The script caught ValueError (exit 3), was not killed by a signal, and said why."""
    assert result.returncode == 3, (result.returncode, result.stderr[-2000:])
    for needle in needles:
        assert needle in result.stdout, result.stdout


FAR_ATOM = """
from ase import Atoms
from equivar.data import from_ase, radius_graph
pos = torch.tensor([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [1e6, 0.0, 0.0]], dtype=torch.float64)
for call in (lambda: radius_graph(pos, 5.0),
             lambda: from_ase(Atoms("OHH", positions=pos.numpy()), 5.0)):
    try:
        call()
    except ValueError as err:
        print(err)
    else:
        sys.exit(0)
sys.exit(3)
"""


def test_an_atom_1e6_angstrom_away_is_a_value_error_not_sigfpe():
    _refused(_subprocess(FAR_ATOM), "absurd coordinate for atom 2", "1000000.0",
             "beyond 100000 Angstrom")


HUGE_CUTOFF = """
from ase.build import bulk
from equivar.data import from_ase, radius_graph
copper = bulk("Cu", "fcc", a=3.0, cubic=True)  # 4 atoms in a 3 Angstrom cell
cell = torch.tensor(copper.cell.array)
for call in (lambda: radius_graph(torch.tensor(copper.positions), 1000.0, cell),
             lambda: from_ase(copper, 1000.0)):
    try:
        call()
    except ValueError as err:
        print(err)
    else:
        sys.exit(0)
sys.exit(3)
"""


def test_a_1000_angstrom_cutoff_on_a_3_angstrom_cell_is_refused_before_allocating():
    result = _subprocess(HUGE_CUTOFF)
    _refused(result, "the neighbour list would hold about", "4 atoms, cutoff 1000 Angstrom",
             "periodic cell of volume 27 Angstrom^3", "EQUIVAR_MAX_EDGES")
    estimate = float(result.stdout.split("about ")[1].split(" edges")[0])
    assert estimate == pytest.approx(16 * 4 / 3 * np.pi * 1000.0**3 / 27.0, rel=1e-2)  # 3 digits


CALCULATOR = """
from ase import Atoms
from ase.build import bulk
from equivar.models import build
from equivar.simulate import EquivarCalculator
options = dict(preset="S", species=["H", "O"], num_channels=4, lmax=0, sh_lmax=1, num_layers=1,
               radial_hidden=[4], dtype="float64")
far = Atoms("OHH", positions=[[0, 0, 0], [0.96, 0, 0], [1e6, 0, 0]])
dense = Atoms("OH", positions=[[0, 0, 0], [1.5, 1.5, 1.5]], cell=[3, 3, 3], pbc=True)
for cutoff, atoms in ((3.0, far), (1000.0, dense)):
    try:
        EquivarCalculator(build("potential", cutoff=cutoff, **options)).get_potential_energy(atoms)
    except ValueError as err:
        print(err)
    else:
        sys.exit(0)
sys.exit(3)
"""


def test_the_calculator_refuses_a_far_atom_and_a_huge_cutoff_in_a_live_process():
    _refused(_subprocess(CALCULATOR), "absurd coordinate for atom 2",
             "the neighbour list would hold about")


def test_equivar_evaluate_exits_2_on_a_far_atom(tmp_path):
    save_checkpoint(tmp_path / "best.pt", _potential())
    far = Atoms("OHH", positions=[[0, 0, 0], [0.96, 0, 0], [1e6, 0, 0]])
    far.calc = SinglePointCalculator(far, energy=0.0, forces=np.zeros((3, 3)))
    write(tmp_path / "far.extxyz", far)
    result = subprocess.run([sys.executable, "-m", "equivar", "evaluate", str(tmp_path / "best.pt"),
                             str(tmp_path / "far.extxyz")], capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "absurd coordinate for atom 2" in result.stderr


COLLAPSING = """
import json
from equivar.data import radius_graph
from equivar.data.validation import validate_structure
case = json.loads(sys.argv[1])
pos, cell, pbc = np.array(case["pos"]), np.array(case["cell"]), case["pbc"]
edge_index, shifts = radius_graph(torch.tensor(pos), case["cutoff"], torch.tensor(cell),
                                  torch.tensor(pbc))
if not any(pbc):
    validate_structure(pos, [1] * len(pos))  # the distance check's own search (1 Angstrom)
print(json.dumps([edge_index.T.tolist(), shifts.long().tolist()]))
"""


def _brute_force(pos, cell, pbc, cutoff, reach=2):
    """Every (sender, receiver, shift) closer than ``cutoff``, images within ``reach`` cells."""
    ranges = [range(-reach, reach + 1) if p else range(1) for p in pbc]
    shifts = np.array(np.meshgrid(*ranges, indexing="ij")).reshape(3, -1).T  # [n_images, 3]
    vec = pos[None, :, None] - pos[:, None, None] + (shifts @ cell)[None, None]  # [i, j, s, 3]
    close = np.argwhere(np.linalg.norm(vec, axis=-1) < cutoff)
    return sorted((int(j), int(i), tuple(int(v) for v in shifts[s])) for i, j, s in close
                  if (i != j or shifts[s].any()))  # fmt: skip


def _collapsing_cases():
    rng = np.random.default_rng(0)
    flat = np.zeros((60, 3))  # 400 x 400 Angstrom, one plane: vesin's grid has 0 cells in z
    flat[:, :2] = rng.uniform(0, 400, (60, 2))
    flat[:20, :2] = rng.uniform(0, 4, (20, 2))
    line = np.zeros((30, 3))  # 198000 Angstrom long (within the coordinate limit), cutoff 1.5
    line[:, 0] = np.concatenate([np.arange(20) * 0.9, rng.uniform(-9e4, 9e4, 8), [-99e3, 99e3]])
    slab = np.diag([2000.0, 1800.0, 3.0])  # a thin periodic cell
    layer = rng.uniform(0, 1, (30, 3)) @ slab
    layer[:15] = rng.uniform(0, 4, (15, 3))
    zero = np.zeros((3, 3))
    return {"planar, cutoff 1": (flat, zero, [False] * 3, 1.0),
            "planar, cutoff 0.5": (flat, zero, [False] * 3, 0.5),
            "line": (line, zero, [False] * 3, 1.5),
            "thin periodic cell": (layer, slab, [True] * 3, 3.0),
            "thin slab, z open": (layer, slab, [True, True, False], 3.0)}  # fmt: skip


@pytest.mark.parametrize("case", list(_collapsing_cases()))
def test_shapes_that_collapse_vesins_cell_grid_get_the_right_graph(case):
    """vesin 0.6 dies of SIGFPE on these shapes (its grid truncates to 0 cells); the search
    radius is widened and the graph is still exact."""
    pos, cell, pbc, cutoff = _collapsing_cases()[case]
    argument = json.dumps({"pos": pos.tolist(), "cell": cell.tolist(), "pbc": pbc,
                           "cutoff": cutoff})  # fmt: skip
    result = _subprocess(COLLAPSING, argument)
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    edges, shifts = json.loads(result.stdout)
    got = sorted((j, i, tuple(s)) for (j, i), s in zip(edges, shifts, strict=True))
    expected = _brute_force(pos, cell, pbc, cutoff)
    assert got == expected and len(got) > 0


def test_normal_systems_search_at_the_cutoff_and_are_estimated_well():
    from equivar.data.limits import plan_search

    copper = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)
    ethanol = molecule("CH3CH2OH")
    for atoms, cutoff in ((copper, 5.0), (copper, 12.0), (ethanol, 5.0)):
        radius, estimate = plan_search(atoms.positions, atoms.cell.array, atoms.pbc, cutoff)
        edges = from_ase(atoms, cutoff).edge_index.shape[1]
        assert radius == cutoff
        assert estimate == pytest.approx(edges, rel=0.5), (atoms, cutoff)


def test_the_edge_limit_can_be_set_by_argument_and_environment(monkeypatch):
    copper = bulk("Cu", "fcc", a=3.6, cubic=True)
    pos, cell = torch.tensor(copper.positions), torch.tensor(copper.cell.array)
    assert radius_graph(pos, 5.0, cell)[0].shape[1] > 100
    with pytest.raises(ValueError, match=r"more than the limit of 100 edges \(max_edges\)"):
        radius_graph(pos, 5.0, cell, max_edges=100)
    monkeypatch.setenv("EQUIVAR_MAX_EDGES", "100")
    with pytest.raises(ValueError, match=r"limit of 100 edges \(\$EQUIVAR_MAX_EDGES\)"):
        from_ase(copper, 5.0)
    assert radius_graph(pos, 5.0, cell, max_edges=10**6)[0].shape[1] > 100  # argument wins
    monkeypatch.setenv("EQUIVAR_MAX_EDGES", "lots")
    with pytest.raises(ValueError, match="EQUIVAR_MAX_EDGES must be a number"):
        from_ase(copper, 5.0)


@pytest.mark.parametrize("model_dtype,batch_dtype", [(torch.float64, torch.float32),
                                                     (torch.float32, torch.float64)])
def test_a_batch_in_another_precision_than_the_model_runs_at_the_models(model_dtype,
                                                                          batch_dtype):
    """A float32 batch through a float64 model (``read`` gives float32) computed in float64,
    not a 'mat1 and mat2 must have the same dtype' from a layer deep inside."""
    from equivar.models import build
    from equivar.testing import random_molecule_batch

    torch.manual_seed(0)
    model = build("potential", preset="S", species=[1, 6, 7, 8], num_channels=4, cutoff=3.5,
                  dtype=model_dtype)
    batch = random_molecule_batch(n_graphs=2, cutoff=3.5, dtype=batch_dtype, seed=1)
    out = model(batch)
    assert out["energy"].dtype == model_dtype and out["forces"].dtype == model_dtype
    same = model(random_molecule_batch(n_graphs=2, cutoff=3.5, dtype=model_dtype, seed=1))
    tol = 1e-5 if torch.float32 in (model_dtype, batch_dtype) else 1e-10
    torch.testing.assert_close(out["energy"], same["energy"], rtol=tol, atol=tol)


@pytest.mark.parametrize("text,refused", [
    ("Mul(Integer(2), Symbol('s0'))", None),
    ("Pow(Symbol('s0'), Integer(2))", None),
    ("Pow(Symbol('s0'), Integer(-1))", None),
    ("Symbol('s0') ** 3", None),
    ("Pow(Integer(10), Integer(1000000000000))", "power"),
    ("Integer(2) ** Integer(2) ** Integer(2) ** Integer(100)", "power"),
    ("Pow(Integer(10), Symbol('s0'))", "power"),
    ("PowByNatural(Integer(7), Integer(99999999))", "power"),
    ("Integer(" + "9" * 40 + ")", "integer beyond"),
    ("Add(" + ", ".join(["Integer(1)"] * 2000) + ")", "characters long"),
])  # fmt: skip
def test_a_symbolic_size_that_would_take_forever_is_refused(text, refused):
    """A ``.pt2`` from a stranger can hold any size expression, which loading evaluates with
    sympy: one that asks for 10**(10**12) would hang the process. Such expressions are refused
    before any of them is evaluated; the ones torch writes still pass."""
    from equivar.models.audit import _sympy_names, expression_problem

    problem = expression_problem(text, _sympy_names())
    if refused is None:
        assert problem is None
    else:
        assert problem is not None and refused in problem


def test_an_old_pickle_trajectory_from_a_stranger_is_refused_unread(tmp_path):
    """ASE's pre-2016 ``.traj`` format is a pickle; ASE refuses to unpickle it unless asked to
    convert, and equivar's reader reports the file as malformed: the payload never runs."""
    import pickle

    from equivar.data import read

    marker = tmp_path / "ran"
    (tmp_path / "old.traj").write_bytes(b"PickleTrajectory" + pickle.dumps(_WritesMarker(marker)))
    with pytest.raises(ValueError, match="old.traj"):
        read(tmp_path / "old.traj", cutoff=3.0)
    assert not marker.exists()


def test_the_export_audit_was_written_for_this_torch():
    """The audit mirrors what torch's ``.pt2`` loader unpickles, evaluates and executes; a new
    torch release may add a path. This fails on any other torch, so an upgrade brings a review
    of ``equivar/models/audit.py`` (then raise ``AUDITED_TORCH``)."""
    from equivar.models.audit import AUDITED_TORCH

    release = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    assert release == AUDITED_TORCH, (
        f"torch {torch.__version__}: review equivar/models/audit.py against this torch's .pt2 "
        f"loader (written for {AUDITED_TORCH}), then set AUDITED_TORCH")
