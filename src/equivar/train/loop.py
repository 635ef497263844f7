"""``fit(config)``: the importable training loop (the CLI's ``equivar train`` calls only this)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import time
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch_geometric.data import Batch

from equivar import keys as K
from equivar.train import distributed as dist
from equivar.train.checkpoint import atomic_write, read_checkpoint, save_checkpoint
from equivar.train.config import TrainConfig, config_from_dict, load_config
from equivar.train.ema import ExponentialMovingAverage
from equivar.train.evaluation import batches, equivariance_error, evaluate, metric_table
from equivar.train.lock import output_lock
from equivar.train.losses import loss_weights, total_loss
from equivar.train.split import OBJECT_MARK, held_out, run_data_files

if TYPE_CHECKING:
    from collections.abc import Sequence

    import ase
    from torch_geometric.data import Data

    from equivar.data import AtomsDataset, LabelKeys, ShardedDataset

    #: What ``fit(train=..., valid=..., test=...)`` takes.
    DataObject = AtomsDataset | ShardedDataset | Sequence[ase.Atoms] | Sequence[Data] | None

LAST, BEST = "checkpoint_last.pt", "best.pt"


def _resolve_config(config, *, require_train: bool = True) -> TrainConfig:
    if isinstance(config, TrainConfig):
        return config
    if isinstance(config, Mapping):
        return config_from_dict(dict(config), require_train=require_train)
    return load_config(config, require_train=require_train)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


def _describe(value: Any) -> str:
    """How a recorded config names structures given as an object (never a readable path)."""
    from equivar.data import ShardedDataset

    if isinstance(value, ShardedDataset):
        return f"{OBJECT_MARK}ShardedDataset, {len(value)} structures from {str(value.path)!r}>"
    if isinstance(value, (list, tuple)):
        kinds = "/".join(sorted({type(v).__name__ for v in value}))
        return f"{OBJECT_MARK}in-memory {type(value).__name__} of {len(value)} {kinds}>"
    return f"{OBJECT_MARK}in-memory {type(value).__name__}, {len(value)} structures>"


def _as_dataset(value: DataObject, name: str, cutoff: float, dtype: torch.dtype,
                labels: LabelKeys):
    """``fit``'s ``train``/``valid``/``test`` argument as a dataset of graphs at ``cutoff`` in
    ``dtype`` (None stays None).

    Lists of ``ase.Atoms`` (or of ``Data``) become an :class:`~equivar.data.AtomsDataset`, the
    Atoms' labels read with ``labels`` (the config's label keys). Datasets in another dtype are
    rebuilt in the training one (from their ``ase.Atoms`` when they have them, so float64
    graphs are exact); datasets built at another cutoff, or from Atoms with other label keys,
    are refused, since their edges would not be the model's, or the run would record keys its
    labels were not read with.

    Raises:
        TypeError: any other kind of object (the message names the argument).
        ValueError: an empty dataset or list, a dataset built at another cutoff or with other
            label keys, or Atoms without a label the keys name.
    """
    import ase
    from torch_geometric.data import Data

    from equivar.data import AtomsDataset, ShardedDataset

    if value is None:
        return None
    where = f"fit({name}=...)"
    if isinstance(value, (AtomsDataset, ShardedDataset)):
        kind = type(value).__name__
        if len(value) == 0:
            raise ValueError(f"{where}: the {kind} holds no structures")
        if float(value.cutoff) != float(cutoff):
            raise ValueError(
                f"{where}: the {kind} was built with cutoff {value.cutoff:g} but data.cutoff (the "
                f"model's cutoff) is {cutoff:g}; set data.cutoff={value.cutoff:g} or build the "
                f"dataset with cutoff={cutoff:g}"
            )
        if value.labels is not None and value.labels != labels:  # None: built from Data
            raise ValueError(
                f"{where}: the {kind} was built with {value.labels} but the config has "
                f"{labels}; set data.energy_key etc. to the keys the dataset was built with, "
                f"or build it with labels={labels!r}"
            )
        if isinstance(value, ShardedDataset):  # builds each graph on access: in our dtype
            return value if value.dtype == dtype else value.with_dtype(dtype)
        if value[0][K.POSITIONS].dtype == dtype:
            return value
        if value.atoms is not None:
            return AtomsDataset(value.atoms, cutoff, dtype=dtype, labels=value.labels)
        return AtomsDataset(list(value), cutoff, dtype=dtype)
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"{where} is an empty {type(value).__name__}")
        if all(isinstance(v, (ase.Atoms, Data)) for v in value):
            try:
                if all(isinstance(v, ase.Atoms) for v in value):
                    return AtomsDataset(value, cutoff, dtype=dtype, labels=labels)
                return AtomsDataset(value, cutoff, dtype=dtype)
            except (TypeError, ValueError) as err:
                raise type(err)(f"{where}: {err}") from err
        kinds = sorted({type(v).__name__ for v in value})
        raise TypeError(f"{where} must hold ase.Atoms (or torch_geometric Data), got a "
                        f"{type(value).__name__} of {kinds}")
    hint = ("; file paths go in the config (data.train, data.valid, data.test)"
            if isinstance(value, (str, Path)) else "")
    raise TypeError(f"{where} must be an equivar.data.AtomsDataset, an equivar.data."
                    f"ShardedDataset, a list of ase.Atoms or None, got {type(value).__name__}"
                    f"{hint}")


def _datasets(
    config: TrainConfig,
    dtype: torch.dtype,
    train: DataObject = None,
    valid: DataObject = None,
    test: DataObject = None,
):
    """``(train, valid, test)`` datasets: the objects given (see :func:`_as_dataset`), else
    the config's files; held-out fractions of ``train`` for whichever of valid/test is
    neither (:func:`equivar.train.split.held_out`, which ``equivar evaluate`` uses too). The
    split depends on ``data.seed`` and the training set only, so the same objects give the same
    split on ``--resume``."""
    from equivar.data import read

    d = config.data
    given = {"train": train, "valid": valid, "test": test}
    for name, value in given.items():
        path = getattr(d, name)
        if value is None and path.startswith(OBJECT_MARK):
            raise ValueError(
                f"data.{name} is {path!r}: this run's {name} structures were passed to fit() "
                f"as an object; pass them again (fit(config, {name}=..., resume=True))"
            )
    if train is None and not d.train:
        raise ValueError("data.train must name a file of training structures (or pass them to "
                         "fit(config, train=...))")
    labels = d.label_keys()
    train = _as_dataset(train, "train", d.cutoff, dtype, labels)
    valid = _as_dataset(valid, "valid", d.cutoff, dtype, labels)
    test = _as_dataset(test, "test", d.cutoff, dtype, labels)
    keys = labels.as_dict()  # every file is read with the config's label keys
    if train is None:
        index = f":{d.max_structures}" if d.max_structures else ":"
        train = read(d.train, d.cutoff, index=index, dtype=dtype, **keys)
    elif d.max_structures and d.max_structures < len(train):
        train = train.subset(range(d.max_structures))
    if valid is None and d.valid:
        valid = read(d.valid, d.cutoff, dtype=dtype, **keys)
    if test is None and d.test:
        test = read(d.test, d.cutoff, dtype=dtype, **keys)
    return held_out(train, d, valid=valid, test=test)


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


def fit(
    config,
    *,
    resume: bool = False,
    train: DataObject = None,
    valid: DataObject = None,
    test: DataObject = None,
) -> dict[str, Any]:
    """Train a model as ``config`` says; return validation/test metrics and output paths.

    Writes to ``config.output``: ``checkpoint_last.pt`` (resumable, atomic, after every epoch
    and every ``checkpoint_every`` steps), ``best.pt`` (EMA weights with the lowest validation
    loss; load with :func:`equivar.train.load_checkpoint`; it also records the run's config,
    data files and split sizes, so that ``equivar evaluate`` scores the held-out test frames),
    ``log.csv``, ``config.yaml``, ``test_predictions.npz``, ``learning_curves.png``,
    ``parity.png``. Checkpoints, ``config.yaml`` and the predictions are written atomically.

    The structures come from the config's files (``data.train``, ``data.valid``,
    ``data.test``) or from objects passed here, each on its own: an object replaces its file,
    and whichever of valid/test is given by neither is held out of the training set
    (``data.valid_fraction``, ``data.test_fraction``, split with ``data.seed``). Objects are
    recorded in ``config.yaml`` by a description, e.g. ``"<in-memory AtomsDataset, 30
    structures>"``; a resumed run needs the same objects again (their sizes are checked).

    Training stops after ``epochs``, on early stopping (``patience``), or after the optimiser
    step that spends ``time_budget`` minutes (saved with the checkpoint, so ``resume``
    continues against the same budget). It ends the same way in each case: the EMA weights
    are validated, ``best.pt`` and ``checkpoint_last.pt`` written, the best model tested.

    Fine-tuning (``init_from``, ``freeze``, ``reset``) is described in
    :mod:`equivar.train.finetune`; ``committee: N`` trains N members instead (returning
    :func:`equivar.train.committee.fit_committee`'s result; the objects go to every member).

    Args:
        config: a :class:`TrainConfig`, a mapping, or a YAML path. ``data.train`` may be empty
            when ``train`` is given.
        resume: continue from ``checkpoint_last.pt`` in the output folder. A run killed at any
            moment (even ``kill -9``) resumes to the same final state as an uninterrupted run
            (given the same data objects, if any).
        train: training structures instead of ``data.train``: an
            :class:`~equivar.data.AtomsDataset`, a :class:`~equivar.data.ShardedDataset`, or a
            list of ``ase.Atoms`` (with their targets; converted with
            :class:`~equivar.data.AtomsDataset` at ``data.cutoff``). Datasets must have been
            built at ``data.cutoff``; ones in another floating dtype than ``precision`` are
            rebuilt in it. ``data.max_structures`` applies to it. Default None: the file.
        valid: validation structures instead of ``data.valid`` (same kinds). Default None.
        test: test structures instead of ``data.test`` (same kinds). Default None.

    Returns:
        On rank 0: ``{"output": str, "best_epoch": int (1-based), "stopped": "epochs" |
        "early_stopping" | "time_budget", "steps": int (optimiser steps in all),
        "elapsed_s": float (training time, resumed segments included), "test": {metric:
        float}, "checkpoint": str (best.pt)}``; on other ranks without ``test`` and
        ``checkpoint``.

    Raises:
        TypeError: ``train``/``valid``/``test`` of another kind (the message names which).
        ValueError: bad config; a dataset built at another cutoff; an output folder that
            already holds a run and no ``resume`` (work is never overwritten); a resume with
            data of other sizes than the run's.

    Example:
        >>> from equivar.data import read
        >>> data = read("datasets/ethanol_xtb.extxyz", cutoff=4.0)  # doctest: +SKIP
        >>> result = fit({"data": {"cutoff": 4.0}, "epochs": 50, "time_budget": 10,
        ...               "output": "runs/ethanol"}, train=data)  # doctest: +SKIP
        >>> result["stopped"], result["test"]["forces_mae"]  # doctest: +SKIP
        ('time_budget', 0.071...)
    """
    objects = {"train": train, "valid": valid, "test": test}
    config = _resolve_config(config, require_train=train is None)
    if config.committee > 1:
        from equivar.train.committee import fit_committee

        return fit_committee(config, resume=resume, **objects)
    # one process per output folder (rank 0 of a torchrun job holds it for all ranks)
    rank_zero = int(os.environ.get("RANK", "0")) == 0
    lock = output_lock(config.output, "training run") if rank_zero else nullcontext()
    with lock:
        return _fit_one(config, resume, objects)


def _fit_one(config: TrainConfig, resume: bool, objects: dict[str, Any]) -> dict[str, Any]:
    """:func:`fit` for one model, with the output folder locked."""
    from equivar.data import compute_statistics
    from equivar.data.statistics import target_statistics
    from equivar.models import build
    from equivar.train.finetune import finetune_model, freeze_parameters

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
    train, valid, test = _datasets(config, dtype, **objects)
    # the config as run, with the objects' descriptions in place of their (absent) files
    recorded = dataclasses.replace(config, data=dataclasses.replace(
        config.data, **{k: _describe(v) for k, v in objects.items() if v is not None}))
    sizes = {"train": len(train), "valid": len(valid), "test": len(test)}
    data_files = run_data_files(config.data, objects)  # for equivar evaluate (its test split)
    stats = compute_statistics(train)
    summary = ""
    if config.init_from:
        model, summary = finetune_model(config, train, stats, dtype)
    else:
        options = {"cutoff": config.data.cutoff, "statistics": stats, "dtype": dtype,
                   **config.model.options}
        if config.model.name == "property" and not {"target_shifts", "target_scales"} & set(
                options):  # start the outputs on the training targets, as energies are
            options["target_shifts"], options["target_scales"] = target_statistics(
                train, dict(options.get("targets") or {}))
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
    # validated_step: the step whose weights were last validated (the end of training validates
    # the last step's weights, even on a resume that finds the time budget already spent)
    # loss_sum/loss_count: the current epoch's training losses so far, kept in the checkpoint so
    # that a run resumed mid-epoch logs the same train_loss as one never interrupted
    state = {"epoch": 0, "step": 0, "step_in_epoch": 0, "best_valid": math.inf,
             "best_epoch": -1, "stale": 0, "elapsed_s": 0.0, "validated_step": 0,
             "loss_sum": 0.0, "loss_count": 0}
    if resume:
        saved = read_checkpoint(last_path)
        t = saved["train_state"]
        before = t.get("data_sizes")
        if before is not None and before != sizes:
            raise ValueError(f"cannot resume {str(out_dir)!r} with other data: the run had "
                             f"{before} structures, these are {sizes}; pass the same data")
        model.load_state_dict(saved["state_dict"])
        optimizer.load_state_dict(t["optimizer"])
        lr.load_state_dict(t["lr"])
        if ema is not None:
            ema.load_state_dict(t["ema"])
        state["validated_step"] = None  # checkpoints from before it was recorded: trust them
        state.update(t["progress"])
        if state["validated_step"] is None:
            state["validated_step"] = state["step"]
        if rank == 0:
            _drop_rows_after(out_dir / "log.csv", state)
    trained = dist.wrap(model, device)
    budget_s = 60.0 * config.time_budget
    spent_before = float(state["elapsed_s"])
    clock_start = math.nan  # set when the loop starts

    def elapsed() -> float:
        return spent_before + time.perf_counter() - clock_start

    def budget_spent() -> bool:
        if not budget_s:
            return False
        spent = elapsed() >= budget_s
        if world > 1:  # rank 0's clock decides, so that every rank stops after the same step
            spent = dist.broadcast_state({"spent": spent}, rank, world)["spent"]
        return spent

    def save_last() -> None:
        if rank == 0:
            state["elapsed_s"] = elapsed()
            save_checkpoint(last_path, model, train_state={
                "optimizer": optimizer.state_dict(), "lr": lr.state_dict(),
                "ema": ema.state_dict() if ema is not None else None, "progress": dict(state),
                "data_sizes": sizes, "train_config": recorded.to_dict()})

    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        # atomic, as every file a resume or a user reads: Ctrl-C or kill leaves no half file
        atomic_write(out_dir / "config.yaml",
                     lambda fh: fh.write(json.dumps(recorded.to_dict(), indent=2).encode()))
    log_path = out_dir / "log.csv"
    progress = None
    if config.progress and rank == 0:
        from tqdm.auto import tqdm

        progress = tqdm(total=steps_per_epoch * config.epochs, initial=state["step"],
                        desc="train", unit="step", dynamic_ncols=True)

    def validate(epoch: int, t0: float) -> None:
        """Validate the EMA weights on rank 0 (best.pt, log row), share the bookkeeping, close
        the epoch if it is complete, and write checkpoint_last.pt."""
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
                    save_checkpoint(out_dir / BEST, model, epoch=epoch, metrics=metrics,
                                    train_config=recorded.to_dict(), data_files=data_files,
                                    data_sizes=sizes)
                else:
                    state["stale"] += 1
            model.train()
            lr.validation(valid_loss)
            record = {"epoch": epoch + 1, "step": state["step"], "lr": lr.at(state["step"]),
                      "train_loss": (state["loss_sum"] / state["loss_count"]
                                     if state["loss_count"] else float("nan")),
                      "valid_loss": valid_loss, "equivariance_error": eq_err,
                      "time_s": time.perf_counter() - t0, **metrics}
            _append_csv(log_path, record)
            msg = (f"epoch {epoch + 1}/{config.epochs} train {record['train_loss']:.4g} "
                   f"valid {valid_loss:.4g} equivariance {eq_err:.1e}")
            (progress.write if progress is not None else print)(msg)
        state.update(dist.broadcast_state(state, rank, world))
        # the plateau schedule moved on rank 0 only: every rank takes its learning rate from it
        lr.load_state_dict(dist.broadcast_state(lr.state_dict(), rank, world))
        state["validated_step"] = state["step"]
        if state["step_in_epoch"] >= steps_per_epoch:
            state.update(epoch=epoch + 1, step_in_epoch=0, loss_sum=0.0, loss_count=0)
        save_last()

    def stop_reason() -> str | None:
        if state["epoch"] >= config.epochs:
            return "epochs"
        if config.patience and state["stale"] >= config.patience:
            return "early_stopping"
        # checked after every step; here for a resumed run that had spent it (never before the
        # first step: the step that spends the budget is always taken)
        return "time_budget" if state["step"] and budget_spent() else None

    model.train()
    clock_start = time.perf_counter()
    while (stopped := stop_reason()) is None:
        epoch, t0 = state["epoch"], time.perf_counter()
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
            # the norm of the (all-reduced) gradient: the same on every rank, so all stop together
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(),
                                                       config.optim.grad_clip or math.inf)
            if not torch.isfinite(grad_norm):
                raise FloatingPointError(
                    f"training diverged at step {state['step'] + 1} (epoch {epoch + 1}): the "
                    f"gradient is not finite (loss {float(loss.detach()):.4g}); this step was "
                    f"not taken, and {out_dir / BEST} and {last_path} keep the last weights they "
                    f"were written with. Lower optim.lr (now {config.optim.lr:g}), or set "
                    f"optim.grad_clip (now {config.optim.grad_clip:g}), then train again")
            optimizer.step()
            if ema is not None:
                ema.update(model)
                _pin_frozen(ema, model, frozen)
            state["loss_sum"] += float(loss.detach())
            state["loss_count"] += 1
            state["step"] += 1
            state["step_in_epoch"] = s + 1
            if progress is not None:
                progress.update(1)
                progress.set_postfix(epoch=epoch, loss=f"{float(loss.detach()):.4g}")
            if budget_spent():  # validated and saved below: a resume goes on from this step
                break
            if config.checkpoint_every and state["step"] % config.checkpoint_every == 0:
                save_last()
        validate(epoch, t0)
    if state["validated_step"] != state["step"]:
        # resumed from a mid-epoch checkpoint with the budget already spent: its weights
        # were never validated
        validate(state["epoch"], time.perf_counter())
    if progress is not None:
        progress.close()
    if rank == 0 and stopped != "epochs":
        why = (f"no better validation loss in {config.patience} validations"
               if stopped == "early_stopping" else
               f"time budget of {config.time_budget:g} min spent ({state['elapsed_s']:.3g} s)")
        print(f"stopped after step {state['step']}: {why}")
    result = {"output": str(out_dir), "best_epoch": state["best_epoch"] + 1, "stopped": stopped,
              "steps": state["step"], "elapsed_s": float(state["elapsed_s"])}
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


def _drop_rows_after(path: Path, state: dict) -> None:
    """On resume: remove the log rows written after the checkpoint being resumed (a kill between
    a validation's row and the checkpoint that follows it), so that the run's rows, once it has
    finished, equal those of a run never interrupted. A row belongs to the checkpoint when its
    step is earlier, or equal and validated (``validated_step``)."""
    if not path.exists():
        return
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows or "step" not in rows[0]:
        return
    at = rows[0].index("step")

    def kept(row: list[str]) -> bool:
        step = int(row[at])
        return step < state["step"] or (step == state["step"]
                                        and state["validated_step"] == state["step"])

    keep = [rows[0], *(r for r in rows[1:] if len(r) > at and kept(r))]
    if len(keep) != len(rows):
        atomic_write(path, lambda fh: fh.write(_csv_text(keep).encode()))


def _csv_text(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


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
    atomic_write(out_dir / "test_predictions.npz", lambda fh: np.savez(fh, **preds))
    print(f"\ntest metrics ({len(test)} structures; energy per atom):\n{metric_table(metrics)}")
    try:
        learning_curves(out_dir / "log.csv", out_dir / "learning_curves.png")
        parity(preds, out_dir / "parity.png")
    except ImportError:
        print("matplotlib is not installed: no plots (pip install 'equivar[plot]')")
    return {"test": metrics, "checkpoint": str(out_dir / BEST)}
