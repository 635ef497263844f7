"""Command line: ``equivar <command> ...`` (argument parsing only; the work is in the library)."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import textwrap
import time
from collections.abc import Sequence


def _backend_line(model) -> str:
    """Which convolution backend runs here, and why each other one cannot."""
    from equivar.kernels import availability

    conv = model.backbone.blocks[0].conv
    status = availability()
    if status["triton"][0]:
        status["triton"] = (True, "installed (runs on CUDA; on CPU only with TRITON_INTERPRET=1)")
    notes = [f"{name}: {why or ('available' if ok else 'unavailable')}"
             for name, (ok, why) in status.items() if name != "e3nn"]
    return (f"convolution backend: {conv.backend} -> {conv.resolved_backend()} "
            f"({'; '.join(notes)})")


def _check(args: argparse.Namespace) -> int:
    import torch
    from torch_geometric.data import Batch

    from equivar.data import compute_statistics, read
    from equivar.models import build
    from equivar.testing.conservative import DEFAULT_LOOP_POINTS, DEFAULT_N_CHECKS
    from equivar.testing.equivariance import DEFAULT_N_ROTATIONS
    from equivar.testing.report import symmetry_report, worst_by_transform

    if args.max_structures < 1 or args.fd_structures < 0:
        raise ValueError(f"--max-structures must be >= 1 and --fd-structures >= 0, got "
                         f"{args.max_structures} and {args.fd_structures}")
    if args.threads < 0:
        raise ValueError(f"--threads must be >= 0 (0: one per core), got {args.threads}")
    if args.threads:  # small batches: more threads wait on each other more than they help
        torch.set_num_threads(args.threads)
    from equivar.dtypes import DTYPES

    dtype = DTYPES[args.dtype]
    datasets = {path: read(path, args.cutoff, index=f":{args.max_structures}", dtype=dtype)
                for path in args.paths}
    species = sorted({int(z) for ds in datasets.values() for d in ds for z in d.z.tolist()})
    neighbours = [compute_statistics(ds).mean_num_neighbors for ds in datasets.values()]
    torch.manual_seed(args.seed)
    model = build("potential", preset=args.preset, species=species, cutoff=args.cutoff,
                  avg_num_neighbors=sum(neighbours) / len(neighbours), dtype=dtype)
    model.eval()
    print(f"equivar check: untrained potential (preset {args.preset}, cutoff {args.cutoff} A, "
          f"{sum(p.numel() for p in model.parameters())} parameters, {args.dtype}) "
          f"for species {species}; {torch.get_num_threads()} CPU thread(s)")
    print(_backend_line(model) + "\n")
    header = (f"{'file':<28} {'structs':>7} {'atoms':>6} {'ms/struct':>9} {'rotation':>9} "
              f"{'inversion':>9} {'translat.':>9} {'permut.':>9} {'forces-FD':>9} {'loop':>9}")
    print(header)
    print("-" * len(header))
    all_passed = True
    fd_counts = []
    for path, dataset in datasets.items():
        batch = Batch.from_data_list(list(dataset))
        model(batch)  # warm-up: the first call builds caches (kernels, layouts)
        t0 = time.perf_counter()
        model(batch)
        ms = 1e3 * (time.perf_counter() - t0) / len(dataset)
        report = symmetry_report(model, batch, seed=args.seed, conservative=False)
        n_fd = min(args.fd_structures, len(dataset))
        fd_counts.append(n_fd)
        if n_fd:  # finite differences cost ~110 evaluations: on the first few structures only
            fd_batch = Batch.from_data_list(list(dataset)[:n_fd])
            fd = symmetry_report(model, fd_batch, seed=args.seed, equivariance=False)
            report["conservative"] = fd["conservative"]
            report["passed"] &= fd["passed"]
            report["failures"] += fd["failures"]
        worst = worst_by_transform(report["equivariance"])
        cons = report.get("conservative", {})
        name = path if len(path) <= 28 else "..." + path[-25:]
        print(f"{name:<28} {len(dataset):>7} {batch.num_nodes:>6} {ms:>9.2f} "
              f"{worst.get('rotation', 0):>9.1e} {worst.get('improper_rotation', 0):>9.1e} "
              f"{worst.get('translation', 0):>9.1e} {worst.get('permutation', 0):>9.1e} "
              f"{cons.get('forces_fd', float('nan')):>9.1e} "
              f"{cons.get('loop_work', float('nan')):>9.1e}")
        for failure in report["failures"]:
            print(f"  FAILED {failure}")
        all_passed &= report["passed"]
    n = DEFAULT_N_ROTATIONS
    fd_what = (f"on the first {max(fd_counts)} structure(s) of each file: forces against finite "
               f"differences of the energy ({DEFAULT_N_CHECKS} coordinates and {DEFAULT_N_CHECKS} "
               f"directions per structure), Hessian symmetry, and zero work around a "
               f"{DEFAULT_LOOP_POINTS}-point closed loop" if max(fd_counts)
               else "no finite differences (--fd-structures 0)")
    print("\n" + textwrap.fill(
        f"checked: energy and forces of every structure listed, under {n} random rotations, {n} "
        f"rotations with inversion, {n} translations, {n} atom permutations and {n} edge "
        f"reorderings; {fd_what}", width=100, break_on_hyphens=False))
    print("errors are relative (worst over outputs energy, forces, ...); tolerance "
          f"{'1e-10' if dtype == torch.float64 else '1e-5'} for symmetry, "
          f"{'1e-6' if dtype == torch.float64 else '1e-2'} for finite differences")
    print("all symmetry checks passed" if all_passed else "SOME CHECKS FAILED")
    return 0 if all_passed else 1


#: modules that add their own subcommands: each has ``add_commands(subparsers)``, which adds
#: parsers whose ``func(args) -> int`` does the work by calling the library
_COMMAND_MODULES: list[str] = [
    "equivar.qmc.cli",
    "equivar.train.cli",
    "equivar.simulate.cli",
    "equivar.simulate.lammps_cli",
    "equivar.data.cli",
]


def build_parser() -> argparse.ArgumentParser:
    from equivar import __version__

    parser = argparse.ArgumentParser(
        prog="equivar", description="Symmetry-aware neural networks for molecules and point clouds."
    )
    parser.add_argument("--version", action="version", version=f"equivar {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    check = sub.add_parser(
        "check",
        help="build a potential for structures and print its symmetry errors",
        description="Build an (untrained) potential for the structures in PATHS, evaluate energies "
        "and forces, and print the worst relative error under random rotations, reflections, "
        "translations and permutations, and of the forces against finite differences of the "
        "energy. Exit status 1 if any check fails.",
    )
    check.add_argument("paths", nargs="+", metavar="PATH", help="extxyz or npz files")
    check.add_argument("--preset", default="S", choices=["S", "M", "L"])
    check.add_argument("--cutoff", type=float, default=5.0, help="Angstrom (default 5)")
    check.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    check.add_argument("--max-structures", type=int, default=16, help="per file (default 16)")
    check.add_argument("--fd-structures", type=int, default=4, metavar="N",
                       help="finite-difference checks (forces, Hessian, loop work: about 110 "
                       "evaluations each) on the first N structures of each file (default 4; "
                       "0: none)")
    check.add_argument("--threads", type=int, default=1,
                       help="CPU threads (default 1: these small batches run fastest on one, "
                       "and far slower with 2 on a busy 2-core machine; 0: one per core)")
    check.add_argument("--seed", type=int, default=0)
    check.set_defaults(func=_check)
    for module in _COMMAND_MODULES:
        importlib.import_module(module).add_commands(sub)
    return parser


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse a command line. ``KEY=VALUE`` overrides may also follow options
    (``equivar train cfg.yaml --committee 4 epochs=5``): argparse alone stops collecting a
    positional list at the first option."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


#: exit status of a command stopped by Ctrl-C (128 + SIGINT, as shells report it)
INTERRUPTED = 130


def _interrupted(args: argparse.Namespace) -> int:
    """Ctrl-C: close progress bars, then one line saying what was kept (a command that writes
    something resumable sets ``args.interrupt_note``, a callable returning that text)."""
    if "tqdm" in sys.modules:  # a bar left open would end without a newline, before our line
        from tqdm import tqdm

        for bar in list(getattr(tqdm, "_instances", ())):
            bar.close()
    note = getattr(args, "interrupt_note", None)
    try:
        text = note() if note is not None else None
    except Exception:  # the note is a courtesy: never a traceback in its place
        text = None
    print(f"equivar {args.command}: interrupted" + (f"; {text}" if text else ""),
          file=sys.stderr)
    return INTERRUPTED


class _Console(logging.Handler):
    """The library's log records (the ``equivar`` logger) as plain lines: INFO on stdout,
    warnings and errors on stderr, written above an open progress bar instead of through it.
    The stream is looked up at each record, so a redirected ``sys.stdout`` is honoured."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            if "tqdm" in sys.modules:
                from tqdm import tqdm

                if getattr(tqdm, "_instances", None):
                    tqdm.write(text, file=stream)
                    return
            print(text, file=stream)
        except Exception:  # noqa: BLE001 (logging's contract: a handler never raises)
            self.handleError(record)


@contextlib.contextmanager
def _console_logging():
    """Show the library's INFO records on the console while a command runs (the library itself
    only logs; printing is the CLI's job)."""
    logger = logging.getLogger("equivar")
    handler, level = _Console(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    # Before torch loads (parsing imports it): OpenMP threads that find no work sleep instead
    # of spinning. On a machine shared with other jobs a spinning thread holds a core that a
    # descheduled peer needs, and each parallel region waits for the slowest thread: a small
    # training step with 2 threads on a 2-core machine beside other jobs measured 0.7 s against
    # 0.02-0.06 s with this set (RESULTS.md, "threads on a busy machine"). A value the user set
    # wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        args = parse(argv)
    except KeyboardInterrupt:  # while importing the subcommands
        print("equivar: interrupted", file=sys.stderr)
        return INTERRUPTED
    from equivar._allocator import tune_glibc_malloc

    tune_glibc_malloc()  # the command owns its process: keep freed memory (7 % faster on CPU)
    try:
        with _console_logging():
            return args.func(args)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"equivar {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return _interrupted(args)


if __name__ == "__main__":
    raise SystemExit(main())
