"""MD speed: steps/s of ASE velocity-Verlet MD driven by EquivarCalculator, 10^2 .. 10^4 atoms.

System: diamond silicon (a = 5.43 Angstrom, 8 atoms per cubic cell, k x k x k cells: 64, 1000,
10648 atoms), rattled by 0.05 Angstrom, periodic, 300 K Maxwell-Boltzmann start, time step 1 fs;
the model is ``build("potential", preset=..., species=[14], cutoff=5.0, stress=False)`` (NVE needs
no stress) in eval mode, as in ``potential_speed.py``. Each size is run with the neighbour list
rebuilt every step (skin 0) and with a skin (graph at cutoff + skin, reused until an atom moves
skin/2). ``model_ms`` is one bare model call on a prebuilt batch, so ``overhead_pct`` is what the
calculator and ASE add on top of the model (graph building, copies, the integrator).

    python benchmarks/md_speed.py --json md_speed.json           # CPU here; CUDA when present
    python benchmarks/md_speed.py --device cuda --sizes 100 1000 10000 100000
    python benchmarks/md_speed.py --quick
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from ase import units
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.md.verlet import VelocityVerlet
from torch_geometric.data import Batch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    hardware,
    median_time,
    model_parser,
    print_table,
    silicon,
    standard_parser,
    write_json,
)

from equivar.data import from_ase  # noqa: E402
from equivar.models import build  # noqa: E402
from equivar.simulate import EquivarCalculator  # noqa: E402


def model_call_ms(model, atoms, dtype, device, repeats: int) -> tuple[float, int]:
    """Median time of a bare model call on a prebuilt batch, and the number of edges."""
    batch = Batch.from_data_list([from_ase(atoms, model.cutoff, dtype=dtype)]).to(device)
    t, _ = median_time(lambda: model(batch), repeats, warmup=1, device=device)
    return 1e3 * t, int(batch.edge_index.shape[1])


def md_steps_per_s(model, atoms, device, skin: float, steps: int, warmup: int, dt_fs: float):
    """Steps/s of velocity Verlet with the calculator, after ``warmup`` untimed steps."""
    atoms = atoms.copy()
    thermalize_momenta(atoms, 300.0, rng=np.random.default_rng(0))
    Stationary(atoms)
    calc = EquivarCalculator(model, device=device, skin=skin)
    atoms.calc = calc
    dyn = VelocityVerlet(atoms, dt_fs * units.fs)
    dyn.run(warmup)  # every step copies forces to the host, so steps end synchronised
    builds = calc.neighbor_list_builds
    t0 = time.perf_counter()
    dyn.run(steps)
    seconds = time.perf_counter() - t0
    return steps / seconds, calc.neighbor_list_builds - builds


def run(args) -> list[dict]:
    device = torch.device(args.device)
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    torch.manual_seed(0)
    model = build("potential", preset=args.preset, species=[14], cutoff=args.cutoff,
                  dtype=dtype, stress=False).to(device).eval()  # fmt: skip
    rows = []
    for n in args.sizes:
        atoms = silicon(n)
        steps = max(args.min_steps, int(args.atom_steps / len(atoms)))
        model_ms, edges = model_call_ms(model, atoms, dtype, device, repeats=max(3, steps // 2))
        for skin in args.skins:
            sps, builds = md_steps_per_s(model, atoms, args.device, skin, steps, args.warmup,
                                         args.dt)  # fmt: skip
            ms = 1e3 / sps
            row = {
                "atoms": len(atoms),
                "edges": edges,
                "skin_A": skin,
                "steps": steps,
                "nl_builds": builds,
                "steps_per_s": round(sps, 3),
                "ms_per_step": round(ms, 2),
                "model_ms": round(model_ms, 2),
                "overhead_pct": round(100 * (ms - model_ms) / model_ms, 1),
                "ns_per_day": round(sps * args.dt * 86400 * 1e-6, 4),
            }
            rows.append(row)
            print(row, flush=True)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__,
        parents=[standard_parser(), model_parser()],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--skins", type=float, nargs="+", default=[0.0, 1.0], help="Angstrom")
    parser.add_argument("--dt", type=float, default=1.0, help="fs")
    parser.add_argument("--atom-steps", type=int, default=20000,
                        help="timed steps x atoms per size (default 20000)")  # fmt: skip
    parser.add_argument("--min-steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.sizes is None:
        args.sizes = [100, 1000] if args.quick else [100, 1000, 10_000]
    if args.quick:
        args.atom_steps = min(args.atom_steps, 5000)
    rows = run(args)
    name = (
        f"md_speed ({args.device}, preset {args.preset}, {args.dtype}, velocity Verlet, "
        f"{torch.get_num_threads()} torch threads)"
    )
    print(f"\n{name} on {hardware()}")
    print_table(rows)
    if args.json:
        write_json(args.json, name, rows)


if __name__ == "__main__":
    main()
