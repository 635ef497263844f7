"""Periodic radius graph: equivar.data.radius_graph (vesin) against ase.neighborlist.

Rattled fcc Cu supercells of the primitive (triclinic) cell with exactly 10^3, 10^4 and 10^5
atoms, cutoff 5 Angstrom, fully periodic. Reports the median wall time over a few repeats (after
one warm-up call), the edge count (checked equal between the two) and microseconds per atom.
``radius_graph`` includes the conversion to torch and the (receiver, sender, shift) sort;
``vesin raw`` is the bare ``vesin.NeighborList.compute`` call, for reference.

Usage:
    python benchmarks/neighbors.py [--quick] [--json PATH] [--repeats N]
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/common.py
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "src"))  # equivar, uninstalled

from common import hardware, median_time, print_table, standard_parser, versions, write_json  # noqa: E402

CUTOFF = 5.0
#: repeats of the 1-atom primitive fcc cell giving exactly 10^3, 10^4, 10^5 atoms
SUPERCELLS = {1_000: (10, 10, 10), 10_000: (25, 20, 20), 100_000: (50, 50, 40)}


def structure(n_atoms: int, seed: int = 0):
    """Rattled fcc Cu supercell (triclinic primitive cell repeated) with ``n_atoms`` atoms."""
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.61).repeat(SUPERCELLS[n_atoms])
    atoms.rattle(stdev=0.05, seed=seed)
    return atoms


def run(sizes: list[int], repeats: int) -> list[dict]:
    import torch
    import vesin
    from ase.neighborlist import neighbor_list

    from equivar.data import radius_graph

    rows = []
    for n in sizes:
        atoms = structure(n)
        pos = torch.tensor(atoms.positions)
        cell = torch.tensor(atoms.cell.array)
        pbc = torch.tensor(atoms.pbc)
        calc = vesin.NeighborList(cutoff=CUTOFF, full_list=True)
        t_ours, (edge_index, _) = median_time(
            partial(radius_graph, pos, CUTOFF, cell, pbc), repeats
        )
        t_raw, raw = median_time(
            partial(calc.compute, atoms.positions, atoms.cell.array, True, "ijS"), repeats
        )
        t_ase, (i, _, _) = median_time(partial(neighbor_list, "ijS", atoms, CUTOFF), repeats)
        n_edges = int(edge_index.shape[1])
        if not n_edges == len(i) == len(raw[0]):
            raise RuntimeError(
                f"edge counts differ: ours {n_edges}, ase {len(i)}, vesin {len(raw[0])}"
            )
        rows.append(
            {
                "n_atoms": n,
                "n_edges": n_edges,
                "radius_graph_ms": 1e3 * t_ours,
                "vesin_raw_ms": 1e3 * t_raw,
                "ase_ms": 1e3 * t_ase,
                "radius_graph_us_per_atom": 1e6 * t_ours / n,
                "ase_us_per_atom": 1e6 * t_ase / n,
                "speedup_vs_ase": t_ase / t_ours,
            }
        )
        print(f"done n_atoms={n}", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], parents=[standard_parser()])
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per size (median)")
    args = ap.parse_args(argv)
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    rows = run(sizes, args.repeats)
    print(f"# hardware: {hardware()}")
    print(f"# versions: {versions()}")
    print(
        f"# cutoff {CUTOFF} Angstrom, fcc Cu (triclinic primitive cell), median of {args.repeats}"
    )
    print_table(rows)
    if args.json:
        write_json(args.json, "neighbors", rows)


if __name__ == "__main__":
    main()
