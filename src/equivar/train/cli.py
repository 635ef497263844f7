"""``equivar train``, ``equivar evaluate`` and ``equivar export`` (parsing only; the work is in
equivar.train)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _resume_note(output: str) -> str:
    """What Ctrl-C leaves of a run in ``output`` (``equivar.cli.main`` prints it)."""
    from equivar.train.loop import LAST

    out = Path(output)
    if (out / LAST).is_file() or any(out.glob(f"member_*/{LAST}")):
        return f"the last checkpoint is in {output} (continue with --resume)"
    return f"no checkpoint was written yet in {output} (run the command again to start over)"


def _train(args: argparse.Namespace) -> int:
    from equivar.train import fit, load_config

    config = load_config(args.config, args.overrides)
    if args.committee is not None:
        if args.committee < 1:
            raise ValueError(f"--committee must be >= 1, got {args.committee}")
        config.committee = args.committee
    # checkpoints are written atomically (a temporary file renamed): Ctrl-C leaves the last one
    args.interrupt_note = lambda: _resume_note(config.output)
    result = fit(config, resume=args.resume)
    if result.get("checkpoint"):  # rank 0 only, under torchrun
        print(f"best checkpoint: {result['checkpoint']}")
    if result.get("members"):
        print(f"committee of {len(result['members'])} in {result['output']} (pass the folder to "
              "EquivarCalculator or equivar md)")
    return 0


def _export(args: argparse.Namespace) -> int:
    from equivar.train.export import export_model, read_metadata

    out = Path(args.out) if args.out else Path(args.checkpoint).with_suffix(".pt2")
    if out.is_dir():
        raise ValueError(f"-o {out} is a folder; name the .pt2 file to write")
    if args.lammps:
        return _export_lammps(args, out)
    try:
        path = export_model(args.checkpoint, out, example=args.example, dtype=args.dtype,
                            aoti=args.aoti)
    except RuntimeError as err:  # tracing/compilation failures: the message says which step
        print(f"equivar export: error: {err}", file=sys.stderr)
        return 1
    meta = read_metadata(path)
    errors = ", ".join(f"{k} {v:.1e}" for k, v in meta["check"].items())
    kind = "torch.export program + AOTInductor build" if meta["aoti"] else "torch.export program"
    print(f"exported {args.checkpoint} -> {path} ({kind}, {meta['dtype']}, species "
          f"{meta['species']}, cutoff {meta['cutoff']} A)\nmax |exported - eager| on the example: "
          f"{errors}\nload with equivar.train.export.load_exported({str(path)!r})")
    return 0


def _export_lammps(args: argparse.Namespace, out: Path) -> int:
    from equivar.train.lammps_export import export_lammps, read_lammps_metadata

    try:
        path = export_lammps(args.checkpoint, out, example=args.example, dtype=args.dtype)
    except RuntimeError as err:
        print(f"equivar export: error: {err}", file=sys.stderr)
        return 1
    meta = read_lammps_metadata(path)
    errors = ", ".join(f"{k} {v:.1e}" for k, v in meta["check"].items())
    print(f"exported {args.checkpoint} -> {path} (LAMMPS package: torch.export program + "
          f"AOTInductor build, {meta['dtype']}, species {meta['species']}, cutoff "
          f"{meta['cutoff']} A, {meta['num_layers']} layers)\nmax |AOTInductor - eager| on the "
          f"example: {errors}\nin LAMMPS: pair_style equivar {meta['dtype']}; pair_coeff * * "
          f"{path} <elements> (build the plugin with: equivar lammps build)")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from equivar.atomic import atomic_write
    from equivar.data import read
    from equivar.train import evaluate, load_checkpoint
    from equivar.train.checkpoint import checkpoint_label_keys, read_checkpoint
    from equivar.train.evaluation import metric_table
    from equivar.train.split import frames_to_score

    if args.out and Path(args.out).is_dir():  # before any work
        raise ValueError(f"--out {args.out} is a folder; name the .npz file to write")
    device = args.device if args.device != "auto" else (
        "cuda" if torch.cuda.is_available() else "cpu")
    model = load_checkpoint(args.checkpoint, device=device)
    saved = read_checkpoint(args.checkpoint)
    dtype = next(model.parameters()).dtype
    data = read(args.data, model.cutoff, dtype=dtype, **checkpoint_label_keys(saved))
    scored = frames_to_score(saved, args.data, data, all_frames=args.all)
    metrics, preds = evaluate(model, scored.dataset, batch_size=args.batch_size,
                              keep_predictions=True)
    print(f"{args.data}: {scored.description}\n{metric_table(metrics)}")
    if args.out:
        atomic_write(args.out, lambda fh: np.savez(fh, **preds))
        print(f"predictions written to {args.out}")
    return 0


def add_commands(sub) -> None:
    train = sub.add_parser(
        "train", help="train a model from a YAML config",
        description="Train a model from a YAML config (see examples/configs/). Any key can be "
        "overridden as key.sub=value. Unknown keys are errors naming the closest valid key.",
    )
    train.add_argument("config", help="YAML config file")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                       help="e.g. epochs=10 optim.lr=1e-3 data.batch_size=16")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in the config's output folder")
    train.add_argument("--committee", type=int, metavar="N",
                       help="train N members with seeds seed..seed+N-1 into OUTPUT/member_k/ "
                       "(same as committee=N)")
    train.set_defaults(func=_train)

    export = sub.add_parser(
        "export", help="export a potential with torch.export (no TorchScript)",
        description="Export a checkpoint's energy, forces and stress (derivatives included) as "
        "a self-contained torch.export program in one .pt2 file, for any number of atoms. "
        "The program is checked against the eager model before it is written.",
    )
    export.add_argument("checkpoint", help="a potential's checkpoint (e.g. best.pt)")
    export.add_argument("-o", "--out", help="output .pt2 (default: CHECKPOINT with .pt2)")
    export.add_argument("--example", metavar="STRUCTURE",
                        help="structure file to trace with (default: a small random molecule)")
    export.add_argument("--dtype", choices=["float32", "float64"],
                        help="precision of the program (default: the checkpoint's)")
    export.add_argument("--aoti", action="store_true",
                        help="also compile it with AOTInductor into the same file (needs a C++ "
                        "compiler; about a minute; runs only on CPUs like this one)")
    export.add_argument("--lammps", action="store_true",
                        help="write the package that LAMMPS's pair_style equivar loads "
                        "(local + ghost atoms in, energy of the local atoms, forces and virial "
                        "out; always with its AOTInductor build; see examples/lammps/README.md)")
    export.set_defaults(func=_export)

    ev = sub.add_parser(
        "evaluate", help="metrics of a checkpoint on a data file",
        description="Print MAE/RMSE of every target of DATA that the checkpoint's model predicts "
        "(energies in eV/atom, forces in eV/A, also per element) and optionally save the "
        "predictions. When DATA is the file the checkpoint's run trained on, only the test "
        "frames that training held out are scored (the same split: data.test_fraction, "
        "data.seed); --all scores every frame. Any other file is scored whole.",
    )
    ev.add_argument("checkpoint", help="a checkpoint written by equivar train (e.g. best.pt)")
    ev.add_argument("data", help="extxyz or npz file with reference targets")
    ev.add_argument("--all", action="store_true",
                    help="score every frame of DATA, even those the run trained on")
    ev.add_argument("--out", help="write predictions and targets to this .npz")
    ev.add_argument("--batch-size", type=int, default=32)
    ev.add_argument("--device", default="auto")
    ev.set_defaults(func=_evaluate)
