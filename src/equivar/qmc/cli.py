"""``equivar vmc``: argument parsing only; the work is :func:`equivar.qmc.vmc`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _vmc(args: argparse.Namespace) -> int:
    from equivar.configfile import load_yaml_file
    from equivar.qmc.driver import VMCConfig, vmc
    from equivar.qmc.systems import get_system

    system = get_system(args.system)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    options = {}
    if args.config:
        loaded = load_yaml_file(args.config) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{args.config}: expected a mapping of VMC settings")
        options.update(loaded)
    flags = {"iterations": args.iterations, "walkers": args.walkers, "steps": args.steps,
             "optimizer": args.optimizer, "lr": args.lr, "pretrain": args.pretrain,
             "eval_iterations": args.eval_iterations, "device": args.device, "dtype": args.dtype,
             "seed": args.seed, "checkpoint_every": args.checkpoint_every,
             "burn_in": args.burn_in}
    options.update({k: v for k, v in flags.items() if v is not None})
    cfg = VMCConfig.from_dict(options)
    model = {"preset": args.preset, "features": args.features}
    if args.architecture != "ferminet":  # FermiNet configs carry no key (older checkpoints)
        model["architecture"] = args.architecture
    if args.determinants is not None:
        model["n_determinants"] = args.determinants
    out = Path(args.output or f"runs/vmc_{system.name}")
    if out.exists() and not out.is_dir():  # checked before any work, not at the first save
        raise ValueError(f"--output {out} is an existing file; VMC writes a folder (checkpoint, "
                         "energy plot): choose another --output")
    checkpoint = out / "checkpoint.pt"
    if checkpoint.exists() and not args.resume:
        raise ValueError(f"{checkpoint} exists: pass --resume to continue it, or choose another "
                         "--output")
    # Ctrl-C (equivar.cli.main): checkpoints are written atomically, so the last one is whole
    args.interrupt_note = lambda: (
        f"the last checkpoint is {checkpoint} (continue with --resume)" if checkpoint.exists()
        else f"no checkpoint was written yet in {out}")
    plot = None
    if not args.no_plot:
        try:
            import matplotlib  # noqa: F401

            plot = out / "energy.png"
        except ImportError:
            print("matplotlib is not installed: no energy plot (pip install 'equivar[plot]')")
    print(f"equivar vmc: {system}; {cfg.walkers} walkers, {cfg.iterations} iterations, "
          f"optimizer {cfg.optimizer}, preset {args.preset}, {cfg.dtype} on {cfg.device}")
    result = vmc(system, model=model, config=cfg, checkpoint=checkpoint, resume=args.resume,
                 progress=not args.no_progress, plot=plot)
    summary = {"system": system.name, "energy": result.energy, "error": result.error,
               "tau": result.estimate.tau if result.estimate else None,
               "variance": result.variance, "iterations": cfg.iterations,
               "train_time_s": result.train_time, "eval_time_s": result.eval_time,
               "hartree_fock": result.hartree_fock, "config": cfg.to_dict(),
               "model": result.wavefunction.config}
    (out / "result.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(result)
    print(f"training {result.train_time:.1f} s, evaluation {result.eval_time:.1f} s "
          f"({cfg.eval_iterations} sweeps); checkpoint {checkpoint}"
          + (f", plot {plot}" if plot else ""))
    return 0


def add_commands(subparsers) -> None:
    """Add ``vmc`` to the ``equivar`` command line."""
    p = subparsers.add_parser(
        "vmc",
        help="optimise a neural wavefunction by variational Monte Carlo",
        description="Optimise a FermiNet-style wavefunction of an atom or molecule by variational "
        "Monte Carlo (atomic units), then estimate its energy with a blocking error bar. Writes "
        "OUTPUT/checkpoint.pt (resumable), OUTPUT/energy.png and OUTPUT/result.json. Flags "
        "override settings from --config; unset flags keep VMCConfig's defaults.",
    )
    p.add_argument("--system", required=True,
                   help="element symbol (He, Li, Be, ...) or molecule name (H2, LiH)")
    p.add_argument("--iterations", type=int, help="optimisation steps (default 1000)")
    p.add_argument("--walkers", type=int, help="Metropolis walkers (default 1024)")
    p.add_argument("--steps", type=int, help="Metropolis steps per iteration (default 10)")
    p.add_argument("--burn-in", type=int, help="Metropolis steps before training (default 200)")
    p.add_argument("--optimizer", choices=["sr", "kfac", "adam"],
                   help="default sr (minSR + SPRING); kfac: Kronecker-factored natural gradient")
    p.add_argument("--lr", type=float, help="learning rate (default 0.05 sr/kfac, 1e-3 adam)")
    p.add_argument("--pretrain", type=int, help="Hartree-Fock pre-training steps (needs pyscf)")
    p.add_argument("--eval-iterations", type=int, help="sweeps of the final estimate (200)")
    p.add_argument("--preset", default="S", choices=["S", "M", "L"],
                   help="ansatz size (default S; L is FermiNet's)")
    p.add_argument("--determinants", type=int, help="number of determinants (preset's)")
    p.add_argument("--features", default="cartesian", choices=["cartesian", "invariant"])
    p.add_argument("--architecture", default="ferminet", choices=["ferminet", "psiformer"],
                   help="the ansatz: FermiNet-style streams (default) or Psiformer attention")
    p.add_argument("--device", help="cpu (default) or cuda")
    p.add_argument("--dtype", choices=["float32", "float64"], help="default float64")
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int, help="CPU threads (small systems run best on 1)")
    p.add_argument("--checkpoint-every", type=int, help="iterations (default 100)")
    p.add_argument("--output", help="output folder (default runs/vmc_SYSTEM)")
    p.add_argument("--resume", action="store_true", help="continue OUTPUT/checkpoint.pt")
    p.add_argument("--config", help="YAML file of VMCConfig settings")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-plot", action="store_true", help="no energy PNG")
    p.set_defaults(func=_vmc)
