"""Energy + forces throughput and peak memory of the potential, 10^2 .. 10^5 atoms, periodic.

System: diamond silicon (a = 5.43 Angstrom), rattled by 0.05 Angstrom, cutoff 5 Angstrom (28
neighbours per atom), replicated to each size. Times the model call (energy and forces by
autograd) on a prebuilt graph, median of repeats after warm-up; the neighbour list is timed
separately. Linear scaling shows as a flat cost per atom.

    python benchmarks/potential_speed.py --device cpu --preset S --json out.json
    python benchmarks/potential_speed.py --device cuda --preset M --sizes 100 1000 10000 100000
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch
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


def run(args) -> list[dict]:
    device = torch.device(args.device)
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    model = (
        build(
            "potential",
            preset=args.preset,
            species=[14],
            cutoff=args.cutoff,
            dtype=dtype,
            stress=False,
        )
        .to(device)
        .eval()
    )
    rows = []
    for n in args.sizes:
        atoms = silicon(n)
        t0 = time.perf_counter()
        data = from_ase(atoms, args.cutoff, dtype=dtype)
        t_graph = time.perf_counter() - t0
        batch = Batch.from_data_list([data]).to(device)
        n_atoms, n_edges = len(atoms), batch.edge_index.shape[1]
        row = {"atoms": n_atoms, "edges": n_edges, "graph_ms": round(1e3 * t_graph, 2)}
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        try:
            t, _ = median_time(lambda b=batch: model(b), args.repeats, args.warmup, device)
        except torch.OutOfMemoryError:
            row.update(model_ms="OOM", us_per_atom="-", atoms_per_s="-", peak_mem_MiB="-")
            rows.append(row)
            print(f"{n_atoms} atoms: out of memory", flush=True)
            continue
        if device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(device) / 2**20
        else:  # process-wide high-water mark; sizes run in increasing order
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        row.update(
            model_ms=round(1e3 * t, 3),
            us_per_atom=round(1e6 * t / n_atoms, 3),
            atoms_per_s=round(n_atoms / t),
            peak_mem_MiB=round(peak, 1),
        )
        rows.append(row)
        print(f"{n_atoms} atoms: {row}", flush=True)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__,
        parents=[standard_parser(), model_parser()],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = [100, 1000] if args.quick else [100, 1000, 10_000, 100_000]
    rows = run(args)
    name = f"potential_speed ({args.device}, preset {args.preset}, {args.dtype})"
    print(f"\n{name} on {hardware()}")
    print_table(rows)
    if args.json:
        write_json(args.json, name, rows)


if __name__ == "__main__":
    main()
