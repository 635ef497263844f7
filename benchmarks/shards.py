"""Structures per second through ``equivar.data.loader``: HDF5 shards (lazy) against in memory.

Ethanol frames of ``datasets/md17_xtb/ethanol.npz`` (9 atoms, 1,500 frames) repeated to
``--frames`` structures (default 20,000), cutoff 5 Angstrom, float32 graphs, batches of 32,
shuffled, one epoch. Every case runs in a fresh Python process so that its peak resident memory
(``ru_maxrss``) is its own:

* ``convert``: ``write_shards`` of a generator of frames (streamed) into shards of
  ``--shard-size``; the disk size is that of all shards.
* ``memory``: ``AtomsDataset`` of the frames (every graph built up front), then one epoch;
  ``build_s`` is the construction, ``epoch_s`` the loop, and ``structs_per_s`` counts both
  (``epoch_only_per_s`` the loop alone: later epochs).
* ``shards wN``: ``read(shard_dir)`` (lazy) then one epoch with N DataLoader workers; each
  structure is read and its graph built on access, every epoch. ``worker_rss_MiB`` is the
  largest worker's peak.

``cpu_us_per_struct`` is the CPU time (user + system, workers included) per structure, which
shared machines disturb less than wall time. ``rss_start_MiB`` is the resident memory after the
imports (torch, ase, PyG, vesin, h5py), before any data; ``peak_rss_MiB`` the process's peak.

Usage:
    nice -n 10 python benchmarks/shards.py [--quick] [--json PATH] [--frames N] [--workers 0 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/common.py
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "src"))  # equivar, uninstalled

from common import print_table, standard_parser, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "datasets" / "md17_xtb" / "ethanol.npz"
CUTOFF, BATCH = 5.0, 32


def _rss_mib(who: int | None = None) -> float:
    """Peak resident memory in MiB of this process (or of its largest waited-for child)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF if who is None else who)
    return usage.ru_maxrss / 1024  # Linux reports KiB


def _current_rss_mib() -> float:
    """Resident memory now, in MiB (Linux)."""
    with open("/proc/self/statm", encoding="utf-8") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _cpu_s() -> float:
    """User + system CPU seconds of this process and its finished children (the workers)."""
    import resource

    own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def frames(n: int):
    """``n`` ethanol frames: the 1,500 of the source file, repeated, generated one at a time."""
    from equivar.data import iread

    made = 0
    while made < n:
        for atoms in iread(SOURCE):
            if made == n:
                return
            yield atoms
            made += 1


def _epoch(dataset, workers: int) -> tuple[float, int]:
    import torch

    from equivar.data import loader

    batches = loader(dataset, BATCH, shuffle=True, num_workers=workers,
                     generator=torch.Generator().manual_seed(0))
    t0, n = time.perf_counter(), 0
    for batch in batches:
        n += batch.num_graphs
    return time.perf_counter() - t0, n


def case(mode: str, n: int, shard_dir: str, shard_size: int) -> dict:
    """One measurement, in this process; returns its row."""
    import resource

    import torch

    from equivar.data import AtomsDataset, read, write_shards

    torch.set_default_dtype(torch.float32)
    # import what every case uses before the clock and the memory baseline start
    import ase.io  # noqa: F401
    import h5py  # noqa: F401
    import torch_geometric.loader  # noqa: F401
    import vesin  # noqa: F401
    from ase.build import molecule

    AtomsDataset([molecule("H2O")], CUTOFF)  # first-call costs of the graph code
    start, cpu0 = _current_rss_mib(), _cpu_s()
    row: dict = {"case": mode, "structures": n}
    if mode == "convert":
        t0 = time.perf_counter()
        write_shards(frames(n), shard_dir, shard_size=shard_size)
        elapsed = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in Path(shard_dir).glob("shard-*.h5"))
        row.update(seconds=elapsed, structs_per_s=n / elapsed, disk_MiB=size / 2**20)
    elif mode == "memory":
        t0 = time.perf_counter()
        dataset = AtomsDataset(frames(n), CUTOFF)
        build = time.perf_counter() - t0
        epoch, seen = _epoch(dataset, 0)
        assert seen == n
        row.update(seconds=build + epoch, structs_per_s=n / (build + epoch),
                   build_s=build, epoch_s=epoch, epoch_only_per_s=n / epoch)
    else:
        workers = int(mode.removeprefix("shards w"))
        dataset = read(shard_dir, CUTOFF)
        epoch, seen = _epoch(dataset, workers)
        assert seen == n
        row.update(seconds=epoch, structs_per_s=n / epoch, build_s=0.0, epoch_s=epoch,
                   epoch_only_per_s=n / epoch)
        if workers:
            row["worker_rss_MiB"] = _rss_mib(resource.RUSAGE_CHILDREN)
    row.update(cpu_us_per_struct=1e6 * (_cpu_s() - cpu0) / n, rss_start_MiB=start,
               peak_rss_MiB=_rss_mib())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     parents=[standard_parser()])
    parser.add_argument("--frames", type=int, default=None, help="default 20000 (quick: 2000)")
    parser.add_argument("--shard-size", type=int, default=5000)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: one case, JSON out
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    n = args.frames or (2000 if args.quick else 20_000)
    if args.case:
        print(json.dumps(case(args.case, n, args.dir, args.shard_size)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        shard_dir = str(Path(tmp) / "shards")
        for mode in ["convert", "memory", *(f"shards w{w}" for w in args.workers)]:
            out = subprocess.run(
                [sys.executable, __file__, "--case", mode, "--frames", str(n), "--dir",
                 shard_dir, "--shard-size", str(args.shard_size)],
                check=True, capture_output=True, text=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"done {mode}", file=sys.stderr, flush=True)
    columns = ["case", "structures", "seconds", "structs_per_s", "epoch_only_per_s", "build_s",
               "cpu_us_per_struct", "disk_MiB", "rss_start_MiB", "peak_rss_MiB", "worker_rss_MiB"]
    table = [{c: row.get(c, "") for c in columns} for row in rows]
    print_table(table)
    if args.json:
        write_json(args.json, "shards", rows)


if __name__ == "__main__":
    main()
