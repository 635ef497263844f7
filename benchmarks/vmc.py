"""VMC accuracy: neural-wavefunction energies of He, Li, Be, H2 and LiH against exact and
Hartree-Fock references (BENCHMARKS.md, vmc.py row).

For each system: optimise a wavefunction with ``equivar.qmc.vmc`` (natural gradient by minSR +
SPRING, optional Hartree-Fock pre-training), then evaluate the energy with frozen parameters and a
blocking error bar. Reported: the energy +- error, its distance to the exact non-relativistic
energy (mHa), the percentage of the correlation energy recovered
``(E_HF - E) / (E_HF - E_exact)``, FermiNet's and PauliNet's published energies, and the wall
time.

    python benchmarks/vmc.py --quick                      # He and H2, small, minutes on a CPU
    python benchmarks/vmc.py --device cuda --json out.json  # all five, FermiNet-sized (GPU)
    OMP_NUM_THREADS=1 python benchmarks/vmc.py --systems Be --optimizer kfac --json kfac.json

Each JSON row also holds ``cpu_s`` (the process's CPU seconds, training and evaluation) and
``trace``: ``[iteration, mean E_L]`` of 20 equal windows of training, so optimisers are compared
by energy versus CPU time (one iteration costs the same CPU time throughout a run).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/common.py
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "src"))  # equivar, uninstalled

from common import hardware, print_table, standard_parser, versions, write_json  # noqa: E402

from equivar.qmc import get_system, vmc  # noqa: E402
from equivar.qmc.statistics import format_value  # noqa: E402

#: exact non-relativistic energies (hartree), as listed in BENCHMARKS.md: He -2.903724377,
#: Li -7.47806032 (Puchalski-Pachucki), Be -14.667356 (FermiNet's table 1 rounds it to
#: -14.66736), H2 at R = 1.4 bohr -1.174475714, LiH at R = 3.015 bohr -8.070548
#: (Cencek-Rychlewski; FermiNet's table 2 "exact" column)
EXACT = {"He": -2.903724, "Li": -7.478060, "Be": -14.667356, "H2": -1.174476, "LiH": -8.070548}
#: Hartree-Fock limits (hartree), as listed in BENCHMARKS.md: numerical HF limits for the atoms
#: (-2.861680, -7.432727, -14.573023), H2 at 1.4 bohr -1.133629573 (Sundholm 1988), LiH at
#: 3.015 bohr from FermiNet's table 2 HF/CBS column
HARTREE_FOCK = {"He": -2.86168, "Li": -7.432727, "Be": -14.573023, "H2": -1.13363,
                "LiH": -7.98737}
#: FermiNet (Pfau et al., Phys. Rev. Research 2, 033429 (2020), tables 1 (Li, Be) and 2 (LiH);
#: 2e5 KFAC steps, batch 4096, 16 determinants); error bars 1e-5, 3e-5, 1e-5 Ha
FERMINET = {"Li": -7.47798, "Be": -14.66733, "LiH": -8.07050}
#: PauliNet (Hermann, Schaetzle, Noe, Nat. Chem. 12, 891 (2020)), the full ansatz (multi-
#: determinant Slater-Jastrow with backflow, "MD-SJBF", 6 determinants from a CAS), VMC, from
#: the paper's data repository noegroup/dlqmc-project, data/final/small-systems.csv (commit
#: 334a7602), error bars 1.5e-5, 1.0e-4, 1.4e-4 Ha; He and Li were not among its systems
PAULINET = {"H2": -1.174468, "LiH": -8.070272, "Be": -14.667290}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                parents=[standard_parser()])
    p.add_argument("--systems", nargs="+", default=None, choices=sorted(EXACT),
                   help="default: all five (--quick: He H2)")
    p.add_argument("--iterations", type=int, default=None, help="default 20000 (--quick: 400)")
    p.add_argument("--walkers", type=int, default=None, help="default 4096 (--quick: 256)")
    p.add_argument("--preset", default=None, choices=["S", "M", "L"],
                   help="ansatz size: default L (--quick: S)")
    p.add_argument("--determinants", type=int, default=None,
                   help="number of determinants (default: the preset's)")
    p.add_argument("--features", default="cartesian", choices=["cartesian", "invariant"])
    p.add_argument("--optimizer", default="sr", choices=["sr", "kfac", "adam"])
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--pretrain", type=int, default=None, help="HF pre-training steps "
                   "(default 1000; --quick: 0)")
    p.add_argument("--eval-iterations", type=int, default=None, help="default 2000 (--quick 200)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default=None, choices=["float32", "float64"],
                   help="default float32 on cuda, float64 on cpu")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    quick = args.quick
    defaults = {"systems": ["He", "H2"] if quick else ["He", "Li", "Be", "H2", "LiH"],
                "iterations": 400 if quick else 20000, "walkers": 256 if quick else 4096,
                "preset": "S" if quick else "L", "pretrain": 0 if quick else 1000,
                "eval_iterations": 200 if quick else 2000,
                "dtype": "float32" if args.device.startswith("cuda") else "float64"}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def _display(row: dict) -> dict:
    """Energies as text with all their digits (the table's default shows 4 significant)."""
    return {
        "system": row["system"],
        "E (Ha)": format_value(row["energy"], row["error"]),
        "exact": f"{row['exact']:.6f}",
        "E-exact (mHa)": f"{row['delta_mHa']:.2f}",
        "HF": f"{row['hf']:.6f}",
        "corr %": f"{row['corr_pct']:.1f}",
        "FermiNet": "-" if row["ferminet"] is None else f"{row['ferminet']:.5f}",
        "PauliNet": "-" if row["paulinet"] is None else f"{row['paulinet']:.6f}",
        "var(E_L)": f"{row['variance']:.2g}",
        "tau": f"{row['tau']:.1f}",
        "iters": row["iterations"],
        "walkers": row["walkers"],
        "preset": row["preset"],
        "params": row["params"],
        "train_s": f"{row['train_s']:.0f}",
        "eval_s": f"{row['eval_s']:.0f}",
    }


def main() -> None:
    args = parse_args()
    rows = []
    for name in args.systems:
        system = get_system(name)
        options = {} if args.lr is None else {"lr": args.lr}
        start, cpu_start = time.perf_counter(), time.process_time()
        model = {"preset": args.preset, "features": args.features}
        if args.determinants:
            model["n_determinants"] = args.determinants
        result = vmc(system, model=model,
                     iterations=args.iterations, walkers=args.walkers, optimizer=args.optimizer,
                     pretrain=args.pretrain, eval_iterations=args.eval_iterations,
                     device=args.device, dtype=args.dtype, seed=args.seed,
                     checkpoint_every=max(args.iterations, 1), progress=False, **options)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        energies = result.history["energy"]
        width = max(len(energies) // 20, 1)
        trace = [[i + width, sum(energies[i:i + width]) / width]
                 for i in range(0, len(energies) - width + 1, width)]
        exact, hf = EXACT[name], HARTREE_FOCK[name]
        ferminet = FERMINET.get(name)
        n_params = sum(p.numel() for p in result.wavefunction.parameters())
        rows.append({
            "system": name,
            "energy": result.energy,
            "error": result.error,
            "exact": exact,
            "delta_mHa": 1e3 * (result.energy - exact),
            "hf": hf,
            "corr_pct": 100 * (hf - result.energy) / (hf - exact),
            "ferminet": ferminet,
            "paulinet": PAULINET.get(name),
            "variance": result.variance,
            "tau": result.estimate.tau if result.estimate else math.nan,
            "iterations": args.iterations,
            "walkers": args.walkers,
            "preset": args.preset + (f"/{args.determinants}det" if args.determinants else ""),
            "params": n_params,
            "train_s": result.train_time,
            "eval_s": result.eval_time,
            "total_s": wall,
            "cpu_s": cpu,
            "optimizer": args.optimizer,
            "trace": trace,
        })
        print(f"{result}  ({wall:.0f} s)", flush=True)
    print(f"\nhardware: {hardware()}; device {args.device} ({args.dtype}); optimizer "
          f"{args.optimizer}; features {args.features}; pretrain {args.pretrain}; eval sweeps "
          f"{args.eval_iterations}; torch {versions()['torch']}\n")
    print_table([_display(row) for row in rows])
    if args.json:
        write_json(args.json, "vmc", rows)


if __name__ == "__main__":
    main()
