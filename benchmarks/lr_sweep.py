"""Learning-rate sweep of the trainer: test errors of `equivar train` on a config for several
learning rates and seeds (the evidence behind the default `optim.lr`).

Each run is `equivar.train.fit(config)` with `optim.lr` and `seed` overridden, everything else as
the config says (default: examples/configs/ethanol.yaml, README command 1: preset S, 200 ethanol
GFN2-xTB frames, 60 epochs, cosine schedule with warm-up, gradient clipping at 10, EMA).
Test energy MAE is per atom; a run that diverges shows as large errors (it is not stopped).

    python benchmarks/lr_sweep.py                                  # 7 rates x 2 seeds, ~10 CPU-min
    python benchmarks/lr_sweep.py --lrs 0.01 0.05 --seeds 0 --config my.yaml
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware, print_table, standard_parser, write_json  # noqa: E402

from equivar.train import fit  # noqa: E402
from equivar.train.config import load_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     parents=[standard_parser()])
    parser.add_argument("--config", default=str(ROOT / "examples" / "configs" / "ethanol.yaml"))
    parser.add_argument("--lrs", nargs="+", type=float,
                        default=[0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("overrides", nargs="*", help="more config overrides, key=value")
    args = parser.parse_args(argv)
    if args.quick:
        args.lrs, args.seeds, args.overrides = [0.01, 0.1], [0], [*args.overrides, "epochs=2"]
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for lr in args.lrs:
            runs = []
            for seed in args.seeds:
                config = load_config(args.config, [*args.overrides, f"optim.lr={lr}",
                                                   f"seed={seed}", "progress=false",
                                                   f"output={tmp}/lr{lr}_s{seed}"])
                start = time.perf_counter()
                result = fit(config)
                test = result["test"]
                runs.append({"energy": test.get("energy_mae", float("nan")),
                             "forces": test.get("forces_mae", float("nan")),
                             "seconds": time.perf_counter() - start})
                print(f"lr {lr:g} seed {seed}: test energy MAE {runs[-1]['energy']:.4g} eV/atom, "
                      f"forces MAE {runs[-1]['forces']:.4g} eV/A", flush=True)
            rows.append({
                "lr": lr,
                "seeds": len(runs),
                "energy_mae_eV_atom": statistics.fmean(r["energy"] for r in runs),
                "forces_mae_eV_A": statistics.fmean(r["forces"] for r in runs),
                "forces_per_seed": " / ".join(f"{r['forces']:.4f}" for r in runs),
                "seconds_per_run": statistics.fmean(r["seconds"] for r in runs),
            })
    print(f"\nconfig {args.config} {' '.join(args.overrides)}; hardware: {hardware()}\n")
    print_table(rows)
    if args.json:
        write_json(args.json, "lr_sweep", rows)
    return rows


if __name__ == "__main__":
    main()
