"""Training throughput of the potential: structures and atoms per second of optimiser steps.

One training step is what ``equivar.train.fit`` runs per batch: the model's energy and forces
(forces by autograd with ``create_graph``), the loss ``1 * MSE(energy per atom) + 10 *
MSE(forces)`` (+ ``10 * MSE(stress)`` on periodic data), its backward pass (which
differentiates the convolution twice), gradient clipping, the AdamW step and the EMA update:
the shared loop of the accuracy benchmarks (``common.budgeted_training``). Each row trains a
fresh model (statistics from the data) for ``--steps`` steps on shuffled batches and reports
the steps after ``--warmup`` skipped ones; on a CPU the clock is the process's CPU time, so a
loaded machine changes little; on CUDA, wall time with synchronisation.

Systems: MD17-style molecules (``datasets/md17_xtb``: ethanol, 9 atoms; aspirin, 21 atoms) and
the periodic EMT metal boxes (``datasets/emt_metals.npz``: 32 atoms, energy, forces and stress).

Peers (``--models mace nequip``, the ``peers`` extra): MACE (mace-torch) and NequIP (nequip) as
``md17.py`` trains them (``peers.py``: same graphs, energy scale and loop; sizes from
``--mace-size`` / ``--nequip-size``), timed by the same step on the molecules (their wrappers
return no stress, so they skip ``emt``). ``vs equivar`` is a row's time per step over that of
equivar's first preset on the same system and batch size, in the same run.

    python benchmarks/train_speed.py --device cpu --threads 1 --json train_speed.json
    python benchmarks/train_speed.py --device cuda --presets S M --batch-sizes 8 32
    python benchmarks/train_speed.py --systems ethanol aspirin --presets S --option lmax=2 \\
        --models equivar mace nequip --threads 1       # equivar S as in md17.py beside its peers
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    budgeted_training,
    hardware,
    key_value,
    print_table,
    standard_parser,
    write_json,
)
from peers import MACE_SIZE, NEQUIP_SIZE, mace_potential, nequip_potential, size_options  # noqa: E402

SYSTEMS = ("ethanol", "aspirin", "emt")
MODELS = ("equivar", "mace", "nequip")


def load(system: str, cutoff: float, dtype: torch.dtype, n: int) -> list:
    """The first ``n`` training structures of ``system`` as graphs."""
    if system == "emt":
        from equivar.data.datasets.emt import load_emt_metals

        frames = list(load_emt_metals(cutoff, dtype=dtype))
    else:
        from equivar.data.datasets.md17 import load_md17

        frames = list(load_md17(system, cutoff, split="train", train_size=1000, dtype=dtype))
    return frames[:n]


def make_model(name: str, preset: str, stats, dtype: torch.dtype, args):
    """The model of a row and its ``options`` text: equivar's potential or a peer."""
    if name == "mace":
        size = size_options(args.mace_size, MACE_SIZE, "--mace-size")
        model = mace_potential(stats, args.cutoff, **size).to(dtype)
    elif name == "nequip":
        size = size_options(args.nequip_size, NEQUIP_SIZE, "--nequip-size")
        model = nequip_potential(stats, args.cutoff, dtype=dtype, **size)
    else:
        from equivar.models import build

        size = dict(args.option)
        model = build("potential", preset=preset, statistics=stats, cutoff=args.cutoff,
                      dtype=dtype, **size)  # fmt: skip
    return model, " ".join(f"{k}={v}" for k, v in size.items()) or "-"


def time_steps(name: str, system: str, preset: str, batch_size: int, args) -> dict:
    """Train ``args.steps`` steps; return throughput over the steps after the warm-up."""
    from equivar.data import compute_statistics
    from equivar.train.config import LossConfig
    from equivar.train.losses import total_loss

    device = torch.device(args.device)
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    frames = load(system, args.cutoff, dtype, max(batch_size * 8, 64))
    stats = compute_statistics(frames)
    torch.manual_seed(0)
    model, options = make_model(name, preset, stats, dtype, args)
    model = model.to(device)
    periodic = system == "emt"
    weights = {"energy": 1.0, "forces": 10.0, **({"stress": 10.0} if periodic else {})}
    config = LossConfig(**weights)

    def loss_fn(model, batch):
        return total_loss(model(batch), batch, weights, config)[0]

    times, last = [], 0.0
    for step, seconds, _, _ in budgeted_training(
        model, frames, loss_fn, lr=1e-3, batch_size=batch_size, warmup=10, seed=0,
        device=device, epochs=10_000,
    ):  # fmt: skip
        if step > args.warmup:
            times.append(seconds - last)
        last = seconds
        if step >= args.warmup + args.steps:
            break
    per_step = statistics.median(times)
    atoms = sum(f.num_nodes for f in frames[:batch_size])
    edges = sum(f.edge_index.shape[1] for f in frames[:batch_size])
    # both peers run e3nn's tensor products (MACE without its cuEquivariance option)
    backend = (model.backbone.blocks[0].conv.resolved_backend(device) if name == "equivar"
               else "e3nn")  # fmt: skip
    return {"model": name, "system": system, "preset": preset if name == "equivar" else "-",
            "options": options, "batch": batch_size, "atoms": atoms, "edges": edges,
            "backend": backend,
            "params": sum(p.numel() for p in model.parameters()),
            "ms_per_step": round(1e3 * per_step, 2),
            "structs_per_s": round(batch_size / per_step, 1),
            "atoms_per_s": round(atoms / per_step)}  # fmt: skip



def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     parents=[standard_parser()])  # fmt: skip
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--presets", nargs="+", default=["S", "M"], choices=["S", "M", "L"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--option", nargs="+", default=[], type=key_value, metavar="KEY=VALUE",
                        help="extra build('potential') options, values in YAML (e.g. lmax=2 "
                        "backend=e3nn)")  # fmt: skip
    parser.add_argument("--models", nargs="+", default=["equivar"], choices=MODELS,
                        help="equivar (one row per preset) and peers (peers.py; molecules only)")
    parser.add_argument("--mace-size", nargs="+", default=[], type=key_value,
                        metavar="KEY=VALUE", help=f"MACE's size, defaults {MACE_SIZE}")
    parser.add_argument("--nequip-size", nargs="+", default=[], type=key_value,
                        metavar="KEY=VALUE", help=f"NequIP's size, defaults {NEQUIP_SIZE}")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=5, help="steps skipped before timing")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--cutoff", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    args = parser.parse_args(argv)
    if args.quick:
        args.systems, args.presets, args.batch_sizes = ["ethanol"], ["S"], [4]
        args.steps, args.warmup = 3, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for system in args.systems:
        for name in args.models:
            if name != "equivar" and system == "emt":
                print(f"{name}: skipped on emt (the peers' wrappers return no stress)")
                continue
            for preset in args.presets if name == "equivar" else args.presets[:1]:
                for batch_size in args.batch_sizes:
                    row = time_steps(name, system, preset, batch_size, args)
                    print(row, flush=True)
                    rows.append(row)
    for row in rows:  # the speed ratio, measured in this run on this machine
        base = next((r for r in rows if r["model"] == "equivar" and r["system"] == row["system"]
                     and r["batch"] == row["batch"]), None)  # fmt: skip
        row["vs equivar"] = round(row["ms_per_step"] / base["ms_per_step"], 2) if base else "-"
    clock = "CPU time" if args.device == "cpu" else "wall time"
    print(f"\ntrain_speed ({args.device}, {args.dtype}, {torch.get_num_threads()} thread(s), "
          f"median {clock} per step over {args.steps} steps) on {hardware()}")
    print_table(rows)
    if args.json:
        write_json(args.json, "train_speed", rows)


if __name__ == "__main__":
    main()
