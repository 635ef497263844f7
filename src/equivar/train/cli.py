"""``equivar train`` and ``equivar evaluate`` (parsing only; the work is in equivar.train)."""

from __future__ import annotations

import argparse


def _train(args: argparse.Namespace) -> int:
    from equivar.train import fit, load_config

    config = load_config(args.config, args.overrides)
    result = fit(config, resume=args.resume)
    if result.get("checkpoint"):  # rank 0 only, under torchrun
        print(f"best checkpoint: {result['checkpoint']}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from equivar.data import read
    from equivar.train import evaluate, load_checkpoint
    from equivar.train.evaluation import metric_table

    device = args.device if args.device != "auto" else (
        "cuda" if torch.cuda.is_available() else "cpu")
    model = load_checkpoint(args.checkpoint, device=device)
    dtype = next(model.parameters()).dtype
    data = read(args.data, model.cutoff, dtype=dtype)
    metrics, preds = evaluate(model, data, batch_size=args.batch_size, keep_predictions=True)
    print(f"{args.data}: {len(data)} structures (energies per atom)\n{metric_table(metrics)}")
    if args.out:
        np.savez(args.out, **preds)
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
    train.set_defaults(func=_train)

    ev = sub.add_parser(
        "evaluate", help="metrics of a checkpoint on a data file",
        description="Print MAE/RMSE of every target of DATA that the checkpoint's model predicts "
        "(energies per atom, forces also per element) and optionally save the predictions.",
    )
    ev.add_argument("checkpoint", help="a checkpoint written by equivar train (e.g. best.pt)")
    ev.add_argument("data", help="extxyz or npz file with reference targets")
    ev.add_argument("--out", help="write predictions and targets to this .npz")
    ev.add_argument("--batch-size", type=int, default=32)
    ev.add_argument("--device", default="auto")
    ev.set_defaults(func=_evaluate)
