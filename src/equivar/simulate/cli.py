"""``equivar md CHECKPOINT STRUCTURE ...``: argument parsing only; the work is :func:`run_md`."""

from __future__ import annotations

import argparse


def _md(args: argparse.Namespace) -> int:
    from pathlib import Path

    import ase.io

    from equivar.simulate.md import run_md

    structure = Path(args.structure)
    if args.out is None:  # beside the checkpoint it runs, not in the working folder
        home = Path(args.checkpoint)
        args.out = str((home.parent if home.is_file() else Path("runs")) / "md.extxyz")
    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; name the trajectory file to write")
    if out.exists() and not args.overwrite:  # checked before any work: nothing is lost
        raise ValueError(f"--out {out} exists: pass --overwrite to replace it, or choose another "
                         "--out")
    # Ctrl-C (equivar.cli.main): frames are written whole, one write each
    args.interrupt_note = lambda: (f"the trajectory so far is in {args.out}"
                                   if Path(args.out).is_file() else None)
    if not structure.is_file():
        raise FileNotFoundError(f"structure {str(structure)!r} does not exist or is not a file")
    try:
        atoms = ase.io.read(structure, index=args.index)
    except (ValueError, IndexError, KeyError) as err:  # unknown format, bad index, bad content
        raise ValueError(f"structure {str(structure)!r} (index {args.index}): {err}") from err
    except StopIteration:  # ASE's answer to an index past the last frame
        raise ValueError(f"structure {str(structure)!r} has no frame at index {args.index} "
                         "(--index counts from 0; -1 is the last)") from None
    model = args.checkpoint
    if args.aoti:  # the .pt2's compiled build: machine code, so only when asked for
        if Path(args.checkpoint).suffix != ".pt2":
            raise ValueError(f"--aoti runs the AOTInductor build of a .pt2 export, not "
                             f"{args.checkpoint!r}")
        from equivar.models.exported import load_exported

        model = load_exported(args.checkpoint, backend="aoti")
    result = run_md(
        model,
        atoms,
        ensemble=args.ensemble,
        steps=args.steps,
        dt_fs=args.dt,
        temperature_K=args.temperature,
        pressure_GPa=args.pressure,
        friction_per_fs=args.friction,
        trajectory=args.out,
        trajectory_interval=args.traj_interval,
        log_interval=args.log_interval,
        logfile=args.logfile,
        progress=not args.no_progress,
        seed=args.seed,
        device=args.device,
        dtype=args.dtype,
        skin=args.skin,
        max_temperature_K=args.max_temperature,
    )
    calc = result.atoms.calc
    ps = args.steps * args.dt / 1000
    print(
        f"equivar md: {args.ensemble.upper()}, {len(atoms)} atoms, {args.steps} steps of "
        f"{args.dt:g} fs ({ps:g} ps) in {result.seconds:.1f} s ({result.steps_per_second:.1f} "
        f"steps/s) on {calc.device}, {str(calc.dtype).removeprefix('torch.')}"
    )
    for line in _summary(result, args):
        print("  " + line)
    print(f"  trajectory: {args.out} ({len(result.time_fs)} logged steps)")
    return 0


def _after_start(values):
    """The logged values after step 0 (which only repeats the initial state), if any."""
    return values[1:] if len(values) > 1 else values


def _summary(result, args: argparse.Namespace) -> list[str]:
    """What says whether the run went well: the energy drift for NVE (a conserved total
    energy), the temperature against its target for NVT and NPT, and the volume and pressure
    for NPT (a thermostat exchanges energy on purpose, so a drift there means nothing)."""
    temperature = result.temperature_K
    if args.ensemble == "nve":
        return [f"temperature {temperature.mean():.1f} K mean (last {temperature[-1]:.1f} K); "
                f"total energy {result.total_energy[0]:.6f} -> {result.total_energy[-1]:.6f} "
                f"eV; drift {result.energy_drift():.3g} eV/atom/ps"]
    thermostat = (f"Langevin, friction {args.friction:g}/fs" if args.ensemble == "nvt"
                  else "MTK Nose-Hoover chains")
    lines = [f"temperature {_after_start(temperature).mean():.1f} K mean against the target "
             f"{args.temperature:g} K (last {temperature[-1]:.1f} K; {thermostat})"]
    if args.ensemble == "npt":
        volume = result.volume
        lines.append(f"volume {_after_start(volume).mean():.2f} A^3 mean (start {volume[0]:.2f}, "
                     f"last {volume[-1]:.2f} A^3)")
        if result.pressure_GPa is not None and len(result.pressure_GPa):
            pressure = result.pressure_GPa
            lines.append(f"pressure {_after_start(pressure).mean():.3g} GPa mean against the "
                         f"target {args.pressure:g} GPa (last {pressure[-1]:.3g} GPa)")
    return lines


def add_commands(subparsers) -> None:
    """Add ``md`` to the ``equivar`` command line."""
    md = subparsers.add_parser(
        "md",
        help="molecular dynamics with a trained potential",
        description="Run NVE (velocity Verlet), NVT (Langevin) or NPT (isotropic MTK barostat) "
        "molecular dynamics of STRUCTURE with the potential in CHECKPOINT and write an extxyz "
        "trajectory with energies, forces and momenta. Atoms at rest start from Maxwell-Boltzmann "
        "velocities at --temperature; a frame with momenta (e.g. from an earlier run) continues.",
    )
    md.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint written by training")
    md.add_argument("structure", metavar="STRUCTURE", help="any file ase.io.read understands")
    md.add_argument("--index", default="-1", help="frame of STRUCTURE (default -1: the last)")
    md.add_argument("--ensemble", default="nve", choices=["nve", "nvt", "npt"])
    md.add_argument("--steps", type=int, default=1000, help="MD steps (default 1000)")
    md.add_argument("--dt", type=float, default=0.5, help="time step in fs (default 0.5)")
    md.add_argument("--temperature", type=float, default=300.0, help="K (default 300)")
    md.add_argument("--max-temperature", type=float, default=None, metavar="K",
                    help="stop with an error when the temperature exceeds it, a blow-up "
                    "(default: 10x --temperature, at least 2000 K)")
    md.add_argument("--pressure", type=float, default=0.0, help="NPT pressure in GPa (default 0)")
    md.add_argument("--friction", type=float, default=0.01, help="Langevin, 1/fs (default 0.01)")
    md.add_argument("--out", default=None,
                    help="trajectory (default: md.extxyz beside the checkpoint)")
    md.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    md.add_argument("--aoti", action="store_true",
                    help="run a .pt2 export's AOTInductor build (compiled machine code: only for "
                    "files you built yourself; default: its exported program)")
    md.add_argument(
        "--traj-interval",
        type=int,
        default=None,
        help="steps between frames (default: --log-interval)",
    )
    md.add_argument("--log-interval", type=int, default=10, help="steps between logs (default 10)")
    md.add_argument("--logfile", default=None, help="ASE MD log ('-' for stdout)")
    md.add_argument("--seed", type=int, default=0, help="initial velocities and Langevin noise")
    md.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1 ...")
    md.add_argument(
        "--dtype", default=None, choices=["float32", "float64"], help="default: the checkpoint's"
    )
    md.add_argument(
        "--skin",
        type=float,
        default=0.0,
        help="neighbour-list skin, Angstrom (default 0: rebuild every step)",
    )
    md.add_argument("--no-progress", action="store_true", help="no progress bar")
    md.set_defaults(func=_md)
