"""``equivar convert`` (parsing only; the work is in :mod:`equivar.data.shards`)."""

from __future__ import annotations

import argparse


def _convert(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from equivar.data.io import iread
    from equivar.data.shards import ShardWriter

    for path in args.inputs:
        if not Path(path).is_file():
            raise FileNotFoundError(f"input {path!r} does not exist or is not a file")
    t0 = time.perf_counter()
    sources = []
    compression = None if args.compression == "none" else args.compression
    with ShardWriter(args.output, shard_size=args.shard_size, compression=compression,
                     overwrite=args.overwrite) as writer:
        for path in args.inputs:
            before = writer.n_structures
            for k, atoms in enumerate(iread(path, args.index)):
                try:
                    writer.add(atoms)
                except (ValueError, TypeError) as err:
                    raise type(err)(f"{path}, frame {k}: {err}") from err
            sources.append({"path": str(path), "index": args.index,
                            "n_structures": writer.n_structures - before})
            if not args.quiet:
                print(f"{path}: {sources[-1]['n_structures']} structures")
        writer.metadata["sources"] = sources
    manifest = writer.directory / "manifest.json"
    if not args.quiet:
        import json

        info = json.loads(manifest.read_text(encoding="utf-8"))
        size = sum(s["bytes"] for s in info["shards"]) / 2**20
        print(f"wrote {info['n_structures']} structures ({info['n_atoms']} atoms) in "
              f"{info['n_shards']} shard(s), {size:.1f} MiB, to {args.output} in "
              f"{time.perf_counter() - t0:.1f} s\nfields: {', '.join(info['fields'])}\n"
              f"read with equivar.data.read({str(args.output)!r}, cutoff) or data.train: "
              f"{args.output} in a training config")
    return 0


def add_commands(sub) -> None:
    convert = sub.add_parser(
        "convert", help="convert extxyz/npz files into HDF5 shards read lazily in training",
        description="Stream the structures of INPUT files (extxyz, npz or any format ase.io "
        "reads), in order, into HDF5 shards of at most --shard-size structures plus a "
        "manifest.json in OUTDIR. Positions, cell, pbc and every target (energy, forces, "
        "stress, dipole, charges, ...) are kept exactly; units are not converted. "
        "equivar.data.read(OUTDIR, cutoff) and `equivar train` (data.train: OUTDIR) read the "
        "shards lazily, one structure at a time.",
    )
    convert.add_argument("inputs", nargs="+", metavar="INPUT", help="extxyz or npz files")
    convert.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                         help="output folder (created)")
    convert.add_argument("--shard-size", type=int, default=10_000, metavar="N",
                         help="structures per shard; one shard is held in memory "
                         "(default 10000)")
    convert.add_argument("--compression", default="none", choices=["none", "gzip", "lzf"],
                         help="lossless HDF5 compression (default none: fastest reads)")
    convert.add_argument("--index", default=":",
                         help="frames of each input, ASE syntax, e.g. ':1000' (default ':')")
    convert.add_argument("--overwrite", action="store_true",
                         help="replace shards already in OUTDIR")
    convert.add_argument("-q", "--quiet", action="store_true", help="print nothing")
    convert.set_defaults(func=_convert)
