"""``fit(config)``: the importable training loop (the CLI's ``equivar train`` calls only this)."""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch_geometric.data import Batch

from equivar.train import distributed as dist
from equivar.train.checkpoint import read_checkpoint, save_checkpoint
from equivar.train.config import TrainConfig, config_from_dict, load_config
from equivar.train.ema import ExponentialMovingAverage
from equivar.train.evaluation import batches, equivariance_error, evaluate, metric_table
from equivar.train.losses import loss_weights, total_loss

LAST, BEST = "checkpoint_last.pt", "best.pt"


def _resolve_config(config) -> TrainConfig:
    if isinstance(config, TrainConfig):
        return config
    if isinstance(config, Mapping):
        return config_from_dict(dict(config))
    return load_config(config)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


def _datasets(config: TrainConfig, dtype: torch.dtype):
    from equivar.data import read

    d = config.data
    index = f":{d.max_structures}" if d.max_structures else ":"
    train = read(d.train, d.cutoff, index=index, dtype=dtype)
    valid = read(d.valid, d.cutoff, dtype=dtype) if d.valid else None
    test = read(d.test, d.cutoff, dtype=dtype) if d.test else None
    held = [f for f, given in ((d.valid_fraction, valid), (d.test_fraction, test)) if given is None]
    if held:
        n = len(train)
        sizes = [int(round(f * n)) for f in held]
        if any(s < 1 for s in sizes) or n - sum(sizes) < 1:
            raise ValueError(f"{n} structures cannot be split into train and held-out fractions "
                             f"{held}; give data.valid/data.test files or more data")
        parts = train.split([n - sum(sizes), *sizes], seed=d.seed)
        train, rest = parts[0], list(parts[1:])
        valid = rest.pop(0) if valid is None else valid
        test = rest.pop(0) if test is None else test
    return train, valid, test


class LearningRate:
    """Linear warm-up, then constant, cosine decay, or halving on a validation plateau."""

    def __init__(self, config, total_steps: int) -> None:
        self.c, self.total = config, max(1, total_steps)
        self.plateau_scale, self.best, self.bad = 1.0, math.inf, 0

    def at(self, step: int) -> float:
        c = self.c
        warm = min(1.0, (step + 1) / c.warmup_steps) if c.warmup_steps else 1.0
        if c.schedule == "cosine":
            frac = min(1.0, step / self.total)
            lr = c.min_lr + 0.5 * (c.lr - c.min_lr) * (1 + math.cos(math.pi * frac))
        else:
            lr = max(c.min_lr, c.lr * self.plateau_scale)
        return lr * warm

    def validation(self, loss: float) -> None:
        if self.c.schedule != "plateau":
            return
        if loss < self.best * (1 - 1e-4):
            self.best, self.bad = loss, 0
        else:
            self.bad += 1
            if self.bad > self.c.plateau_patience:
                self.plateau_scale *= self.c.plateau_factor
                self.bad = 0

    def state_dict(self) -> dict:
        return {"plateau_scale": self.plateau_scale, "best": self.best, "bad": self.bad}

    def load_state_dict(self, s: dict) -> None:
        self.plateau_scale, self.best, self.bad = s["plateau_scale"], s["best"], s["bad"]


def _epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The shuffled order of one epoch, a function of (seed, epoch) only: a resumed run sees
    exactly the batches the uninterrupted one would have."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def _precision(precision: str, device: torch.device):
    if precision == "tf32":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    dtype = torch.float64 if precision == "float64" else torch.float32
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    )
    return dtype, autocast


def fit(config, *, resume: bool = False) -> dict[str, Any]:
    """Train a model as ``config`` says; return validation/test metrics and output paths.

    Writes to ``config.output``: ``checkpoint_last.pt`` (resumable, atomic, after every epoch
    and every ``checkpoint_every`` steps), ``best.pt`` (EMA weights with the lowest validation
    loss; load with :func:`equivar.train.load_checkpoint`), ``log.csv``, ``config.yaml``,
    ``test_predictions.npz``, ``learning_curves.png``, ``parity.png``.

    Fine-tuning (``init_from``, ``freeze``, ``reset``) is described in
    :mod:`equivar.train.finetune`; ``committee: N`` trains N members instead (returning
    :func:`equivar.train.committee.fit_committee`'s result).

    Args:
        config: a :class:`TrainConfig`, a mapping, or a YAML path.
        resume: continue from ``checkpoint_last.pt`` in the output folder. A run killed at any
            moment (even ``kill -9``) resumes to the same final state as an uninterrupted run.

    Raises:
        ValueError: bad config, or an output folder that already holds a run and no ``resume``
            (work is never overwritten).
    """
    from equivar.data import compute_statistics
    from equivar.models import build
    from equivar.train.finetune import finetune_model, freeze_parameters

    config = _resolve_config(config)
    if config.committee > 1:
        from equivar.train.committee import fit_committee

        return fit_committee(config, resume=resume)
    rank, world = dist.setup()
    device = dist.device_for_rank(_device(config.device))
    dtype, autocast = _precision(config.precision, device)
    out_dir = Path(config.output)
    last_path = out_dir / LAST
    if last_path.exists() and not resume:
        raise ValueError(f"{str(out_dir)!r} already holds a run ({LAST}); pass resume=True "
                         f"(--resume) to continue it or choose another output")
    if resume and not last_path.exists():
        raise ValueError(f"nothing to resume: {str(last_path)!r} does not exist")
    torch.manual_seed(config.seed)
    train, valid, test = _datasets(config, dtype)
    stats = compute_statistics(train)
    summary = ""
    if config.init_from:
        model, summary = finetune_model(config, train, stats, dtype)
    else:
        options = {"cutoff": config.data.cutoff, "statistics": stats, "dtype": dtype,
                   **config.model.options}
        model = build(config.model.name, **options)
    model = model.to(device)
    frozen = freeze_parameters(model, config.freeze)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError(f"freeze {config.freeze} matches every parameter: nothing to train")
    if rank == 0 and (config.init_from or frozen):
        n_all = sum(p.numel() for p in model.parameters())
        n_train = sum(p.numel() for p in trainable)
        print(f"{summary or 'training'}: {n_train} of {n_all} parameters trainable"
              + (f" ({len(frozen)} tensors frozen: {', '.join(config.freeze)})" if frozen else ""))
    weights = loss_weights(config.loss)
    optimizer = torch.optim.AdamW(trainable, lr=config.optim.lr,
                                  weight_decay=config.optim.weight_decay)
    steps_per_epoch = math.ceil(len(train) / config.data.batch_size)
    lr = LearningRate(config.optim, steps_per_epoch * config.epochs)
    ema = None
    if config.optim.ema_decay:
        ema = ExponentialMovingAverage(model, config.optim.ema_decay)
    state = {"epoch": 0, "step": 0, "step_in_epoch": 0, "best_valid": math.inf,
             "best_epoch": -1, "stale": 0}
    if resume:
        saved = read_checkpoint(last_path)
        model.load_state_dict(saved["state_dict"])
        t = saved["train_state"]
        optimizer.load_state_dict(t["optimizer"])
        lr.load_state_dict(t["lr"])
        if ema is not None:
            ema.load_state_dict(t["ema"])
        state.update(t["progress"])
    trained = dist.wrap(model, device)

    def save_last() -> None:
        if rank == 0:
            save_checkpoint(last_path, model, train_state={
                "optimizer": optimizer.state_dict(), "lr": lr.state_dict(),
                "ema": ema.state_dict() if ema is not None else None, "progress": dict(state),
                "train_config": config.to_dict()})

    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(json.dumps(config.to_dict(), indent=2))
    log_path = out_dir / "log.csv"
    progress = None
    if config.progress and rank == 0:
        from tqdm.auto import tqdm

        progress = tqdm(total=steps_per_epoch * config.epochs, initial=state["step"],
                        desc="train", unit="step", dynamic_ncols=True)
    model.train()
    while state["epoch"] < config.epochs:
        epoch, t0, losses = state["epoch"], time.perf_counter(), []
        order = _epoch_order(len(train), config.seed, epoch)
        for s in range(state["step_in_epoch"], steps_per_epoch):
            idx = order[s * config.data.batch_size : (s + 1) * config.data.batch_size]
            local = dist.shard(idx, rank, world)
            batch = Batch.from_data_list([train[i] for i in local]).to(device)
            for group in optimizer.param_groups:
                group["lr"] = lr.at(state["step"])
            with autocast:
                out = trained(batch)
            counts = dist.global_counts(batch, weights, world)
            loss, _ = total_loss(out, batch, weights, config.loss, counts=counts, world=world)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
            optimizer.step()
            if ema is not None:
                ema.update(model)
                _pin_frozen(ema, model, frozen)
            losses.append(float(loss.detach()))
            state["step"] += 1
            state["step_in_epoch"] = s + 1
            if progress is not None:
                progress.update(1)
                progress.set_postfix(epoch=epoch, loss=f"{losses[-1]:.4g}")
            if config.checkpoint_every and state["step"] % config.checkpoint_every == 0:
                save_last()
        # validation with the averaged weights, on rank 0
        record = None
        if rank == 0:
            with ema.swapped(model) if ema is not None else nullcontext():
                metrics, _ = evaluate(model, valid, batch_size=config.data.valid_batch_size)
                valid_loss = sum(w * metrics.get(f"{k}_rmse", 0.0) ** 2 for k, w in
                                 weights.items())
                first = next(batches(valid, config.data.valid_batch_size)).to(device)
                with autocast:
                    eq_err = equivariance_error(model, first)
                if valid_loss < state["best_valid"]:
                    state.update(best_valid=valid_loss, best_epoch=epoch, stale=0)
                    save_checkpoint(out_dir / BEST, model, epoch=epoch, metrics=metrics)
                else:
                    state["stale"] += 1
            model.train()
            lr.validation(valid_loss)
            record = {"epoch": epoch + 1, "step": state["step"], "lr": lr.at(state["step"]),
                      "train_loss": sum(losses) / max(1, len(losses)) if losses else float("nan"),
                      "valid_loss": valid_loss, "equivariance_error": eq_err,
                      "time_s": time.perf_counter() - t0, **metrics}
            _append_csv(log_path, record)
            msg = (f"epoch {epoch + 1}/{config.epochs} train {record['train_loss']:.4g} "
                   f"valid {valid_loss:.4g} equivariance {eq_err:.1e}")
            (progress.write if progress is not None else print)(msg)
        state = dist.broadcast_state(state, rank, world)
        state.update(epoch=epoch + 1, step_in_epoch=0)
        save_last()
        if config.patience and state["stale"] >= config.patience:
            break
    if progress is not None:
        progress.close()
    result = {"output": str(out_dir), "best_epoch": state["best_epoch"] + 1}
    if rank == 0:
        result.update(_finish(out_dir, test, config, device))
    dist.teardown(world)
    return result


@torch.no_grad()
def _pin_frozen(ema: ExponentialMovingAverage, model: nn.Module, frozen: list[str]) -> None:
    """Frozen parameters' averages are their exact values (``d*v + (1-d)*v`` may round)."""
    params = dict(model.named_parameters())
    for name in frozen:
        ema.shadow[name].copy_(params[name])


def _append_csv(path: Path, record: dict) -> None:
    new = not path.exists()
    if not new:  # keep columns stable across resumes: write in the header's order
        with open(path) as fh:
            header = next(csv.reader(fh), None)
        new = header is None
    with open(path, "a", newline="") as fh:
        if new:
            header = list(record)
            csv.writer(fh).writerow(header)
        csv.writer(fh).writerow([record.get(k, "") for k in header])


def _finish(out_dir: Path, test, config: TrainConfig, device) -> dict[str, Any]:
    import numpy as np

    from equivar.train.checkpoint import load_checkpoint
    from equivar.train.plots import learning_curves, parity

    best: nn.Module = load_checkpoint(out_dir / BEST, device=device)
    metrics, preds = evaluate(best, test, batch_size=config.data.valid_batch_size,
                              keep_predictions=True)
    np.savez(out_dir / "test_predictions.npz", **preds)
    print(f"\ntest metrics ({len(test)} structures; energy per atom):\n{metric_table(metrics)}")
    try:
        learning_curves(out_dir / "log.csv", out_dir / "learning_curves.png")
        parity(preds, out_dir / "parity.png")
    except ImportError:
        print("matplotlib is not installed: no plots (pip install 'equivar[plot]')")
    return {"test": metrics, "checkpoint": str(out_dir / BEST)}
