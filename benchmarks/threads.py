"""Training-step time against the number of CPU threads, under the load the machine has now.

On a machine shared with other jobs, more threads than free cores make every parallel region
wait for a thread the scheduler parked (RESULTS.md, "Threads on a busy machine"). This times one
training step (energy + forces, Adam) of a preset-S potential on a batch of ethanol molecules,
float32, for each thread count, each in a fresh process (OpenMP reads its settings once), with
OpenMP's wait policy as the environment sets it or as ``--wait-policy`` asks.

    python benchmarks/threads.py                                   # 1 and 2 threads
    python benchmarks/threads.py --threads 1 2 --wait-policy ACTIVE PASSIVE --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, standard_parser, write_json  # noqa: E402

#: one measurement, run in a child process: prints {"median_ms", "p90_ms", "backend"} as JSON
CHILD = """
import json, sys, time, torch
from ase.build import molecule
from torch_geometric.data import Batch
from equivar.data import from_ase
from equivar.models import build
threads, batch_size, steps = (int(a) for a in sys.argv[1:4])
torch.set_num_threads(threads)
torch.manual_seed(0)
model = build("potential", preset="S", species=[1, 6, 8], cutoff=5.0)
batch = Batch.from_data_list([from_ase(molecule("CH3CH2OH"), cutoff=5.0)] * batch_size)
opt = torch.optim.Adam(model.parameters())
def step():
    out = model(batch)
    loss = out["energy"].square().mean() + out["forces"].square().mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
for _ in range(5):
    step()
times = []
for _ in range(steps):
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
times.sort()
print(json.dumps({"median_ms": 1e3 * times[len(times) // 2],
                  "p90_ms": 1e3 * times[int(0.9 * len(times))],
                  "backend": model.backbone.blocks[0].conv.resolved_backend()}))
"""


def measure(threads: int, policy: str | None, batch_size: int, steps: int) -> dict:
    """One child process's step times with ``threads`` threads and OpenMP ``policy``."""
    env = dict(os.environ)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run([sys.executable, "-c", CHILD, str(threads), str(batch_size), str(steps)],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     parents=[standard_parser()])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--wait-policy", nargs="+", default=[""],
                        help="OMP_WAIT_POLICY values to compare ('' keeps the environment's)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=1, help="child processes per setting")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.batch_size = 5, 2
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = []
    for policy in args.wait_policy:
        for threads in args.threads:
            runs = [measure(threads, policy or None, args.batch_size, args.steps)
                    for _ in range(args.repeats)]
            rows.append({
                "threads": threads,
                "OMP_WAIT_POLICY": policy or os.environ.get("OMP_WAIT_POLICY", "(unset)"),
                "median ms": statistics.median(r["median_ms"] for r in runs),
                "p90 ms": statistics.median(r["p90_ms"] for r in runs),
                "runs": " / ".join(f"{r['median_ms']:.0f}" for r in runs),
                "backend": runs[0]["backend"],
                "load before": round(load, 2),
            })
    if args.json:
        write_json(args.json, "threads", rows)
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
