"""One training run as a small state object with named steps: :class:`Trainer` (``setup``,
``train_epoch``, ``validate``, ``finish``) and :func:`train_one`, which runs it with the output
folder locked. :func:`equivar.train.fit` calls it once, or once per committee member.

Everything a resume needs lives in :attr:`Trainer.progress` (plain numbers, saved in
``checkpoint_last.pt``) and the optimiser/schedule/EMA state dicts beside it, so a run killed at
any moment resumes to the state an uninterrupted run reaches.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch_geometric.data import Batch

from equivar.atomic import atomic_write, atomic_write_text
from equivar.train import distributed as dist
from equivar.train.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from equivar.train.config import TrainConfig
from equivar.train.datasets import describe_object, resolve_datasets
from equivar.train.device import precision, resolve_device
from equivar.train.ema import ExponentialMovingAverage
from equivar.train.evaluation import batches, equivariance_error, evaluate, metric_table
from equivar.train.lock import output_lock
from equivar.train.losses import loss_weights, total_loss
from equivar.train.runfiles import BEST, CONFIG, LAST, LOG, append_csv, drop_rows_after
from equivar.train.schedule import LearningRate, epoch_order
from equivar.train.split import run_data_files

if TYPE_CHECKING:
    from equivar.train.datasets import DataObject

__all__ = ["Trainer", "train_one"]

log = logging.getLogger(__name__)


def train_one(config: TrainConfig, resume: bool = False, *, train: DataObject = None,
              valid: DataObject = None, test: DataObject = None) -> dict[str, Any]:  # fmt: skip
    """Train one model as ``config`` says (``committee`` is not read): :func:`equivar.train.fit`
    for a single run, with the output folder locked (rank 0 of a torchrun job holds the lock
    for every rank). Arguments and result as :func:`equivar.train.fit`."""
    rank_zero = int(os.environ.get("RANK", "0")) == 0
    lock = output_lock(config.output, "training run") if rank_zero else nullcontext()
    with lock:
        trainer = Trainer(config, resume, {"train": train, "valid": valid, "test": test})
        trainer.setup()
        return trainer.run()


class Trainer:
    """One run of :func:`train_one`: ``setup()``, then ``run()``, which repeats
    ``train_epoch()`` (each ending in ``validate()``) until ``stop_reason()``, then ``finish()``.

    Attributes:
        progress: the resumable bookkeeping: ``epoch``, ``step``, ``step_in_epoch``,
            ``best_valid``, ``best_epoch``, ``stale`` (validations without improvement),
            ``elapsed_s``, ``validated_step`` (the step whose weights were last validated) and
            ``loss_sum``/``loss_count`` (the current epoch's training losses so far, so that a
            run resumed mid-epoch logs the train_loss of one never interrupted).
    """

    def __init__(self, config: TrainConfig, resume: bool, objects: dict[str, Any]) -> None:
        self.config, self.resume, self.objects = config, resume, objects
        self.rank, self.world = dist.setup()
        self.device = dist.device_for_rank(resolve_device(config.device))
        self.dtype, self.autocast = precision(config.precision, self.device)
        self.out_dir = Path(config.output)
        self.last_path = self.out_dir / LAST
        self.progress: dict[str, Any] = {
            "epoch": 0, "step": 0, "step_in_epoch": 0, "best_valid": math.inf, "best_epoch": -1,
            "stale": 0, "elapsed_s": 0.0, "validated_step": 0, "loss_sum": 0.0, "loss_count": 0,
        }  # fmt: skip
        self.bar = None
        self._spent_before, self._clock_start = 0.0, math.nan  # set when the loop starts

    # --- setup -------------------------------------------------------------------------------

    def setup(self) -> None:
        """Check the output folder, read the data, build (or fine-tune) the model, the optimiser,
        schedule and EMA, and load ``checkpoint_last.pt`` on a resume."""
        config = self.config
        if self.last_path.exists() and not self.resume:
            raise ValueError(f"{str(self.out_dir)!r} already holds a run ({LAST}); pass "
                             f"resume=True (--resume) to continue it or choose another output")
        if self.resume and not self.last_path.exists():
            raise ValueError(f"nothing to resume: {str(self.last_path)!r} does not exist")
        torch.manual_seed(config.seed)
        self.train, self.valid, self.test = resolve_datasets(config, self.dtype, **self.objects)
        # the config as run, with the objects' descriptions in place of their (absent) files
        self.recorded = dataclasses.replace(config, data=dataclasses.replace(
            config.data, **{k: describe_object(v) for k, v in self.objects.items()
                            if v is not None}))  # fmt: skip
        self.sizes = {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}
        self.data_files = run_data_files(config.data, self.objects)  # for equivar evaluate
        self.model, trainable = self._build_model()
        self.weights = loss_weights(config.loss)
        self.optimizer = torch.optim.AdamW(trainable, lr=config.optim.lr,
                                           weight_decay=config.optim.weight_decay)
        self.steps_per_epoch = math.ceil(len(self.train) / config.data.batch_size)
        self.lr = LearningRate(config.optim, self.steps_per_epoch * config.epochs)
        self.ema = None
        if config.optim.ema_decay:
            self.ema = ExponentialMovingAverage(self.model, config.optim.ema_decay)
        if self.resume:
            self._load_last()
        self.trained = dist.wrap(self.model, self.device)
        if self.rank == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            # atomic, as every file a resume or a user reads: a kill leaves no half file
            atomic_write_text(self.out_dir / CONFIG, json.dumps(self.recorded.to_dict(),
                                                                indent=2))  # fmt: skip

    def _build_model(self) -> tuple[nn.Module, list[nn.Parameter]]:
        from equivar.data import compute_statistics
        from equivar.data.statistics import target_statistics
        from equivar.models import build
        from equivar.train.finetune import finetune_model, freeze_parameters

        config = self.config
        stats = compute_statistics(self.train)
        summary = ""
        if config.init_from:
            model, summary = finetune_model(config, self.train, stats, self.dtype)
        else:
            options = {"cutoff": config.data.cutoff, "statistics": stats, "dtype": self.dtype,
                       **config.model.options}  # fmt: skip
            if config.model.name == "property" and not {"target_shifts", "target_scales"} & set(
                    options):  # start the outputs on the training targets, as energies are
                options["target_shifts"], options["target_scales"] = target_statistics(
                    self.train, dict(options.get("targets") or {}))
            model = build(config.model.name, **options)
        model = model.to(self.device)
        self.frozen = freeze_parameters(model, config.freeze)
        trainable = [p for p in model.parameters() if p.requires_grad]
        if not trainable:
            raise ValueError(f"freeze {config.freeze} matches every parameter: nothing to train")
        if self.rank == 0 and (config.init_from or self.frozen):
            n_all = sum(p.numel() for p in model.parameters())
            n_train = sum(p.numel() for p in trainable)
            frozen = (f" ({len(self.frozen)} tensors frozen: {', '.join(config.freeze)})"
                      if self.frozen else "")  # fmt: skip
            log.info("%s: %d of %d parameters trainable%s", summary or "training", n_train, n_all,
                     frozen)
        return model, trainable

    def _load_last(self) -> None:
        saved = read_checkpoint(self.last_path)
        t = saved["train_state"]
        before = t.get("data_sizes")
        if before is not None and before != self.sizes:
            raise ValueError(f"cannot resume {str(self.out_dir)!r} with other data: the run had "
                             f"{before} structures, these are {self.sizes}; pass the same data")
        self.model.load_state_dict(saved["state_dict"])
        self.optimizer.load_state_dict(t["optimizer"])
        self.lr.load_state_dict(t["lr"])
        if self.ema is not None:
            self.ema.load_state_dict(t["ema"])
        self.progress["validated_step"] = None  # from before it was recorded: trust them
        self.progress.update(t["progress"])
        if self.progress["validated_step"] is None:
            self.progress["validated_step"] = self.progress["step"]
        if self.rank == 0:
            drop_rows_after(self.out_dir / LOG, self.progress)

    # --- the loop ----------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Train until ``stop_reason()``; validate weights never validated; ``finish()``."""
        config, state = self.config, self.progress
        if config.progress and self.rank == 0:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.steps_per_epoch * config.epochs, initial=state["step"],
                            desc="train", unit="step", dynamic_ncols=True)  # fmt: skip
        self.model.train()
        self._spent_before = float(state["elapsed_s"])  # by the segments before a resume
        self._clock_start = time.perf_counter()
        while (stopped := self.stop_reason()) is None:
            self.train_epoch()
        if state["validated_step"] != state["step"]:
            # resumed from a mid-epoch checkpoint with the budget already spent: its weights
            # were never validated
            self.validate(state["epoch"], time.perf_counter())
        if self.bar is not None:
            self.bar.close()
        return self.finish(stopped)

    def train_epoch(self) -> None:
        """The rest of the current epoch's steps (all of them unless resumed mid-epoch), then
        ``validate()``; stops early after the step that spends the time budget."""
        config, state = self.config, self.progress
        epoch, t0 = state["epoch"], time.perf_counter()
        order = epoch_order(len(self.train), config.seed, epoch)
        size = config.data.batch_size
        for s in range(state["step_in_epoch"], self.steps_per_epoch):
            local = dist.shard(order[s * size : (s + 1) * size], self.rank, self.world)
            batch = Batch.from_data_list([self.train[i] for i in local]).to(self.device)
            loss = self.step(batch, epoch)
            state["loss_sum"] += loss
            state["loss_count"] += 1
            state["step"] += 1
            state["step_in_epoch"] = s + 1
            if self.bar is not None:
                self.bar.update(1)
                self.bar.set_postfix(epoch=epoch, loss=f"{loss:.4g}")
            if self.budget_spent():  # validated and saved below: a resume goes on from here
                break
            if config.checkpoint_every and state["step"] % config.checkpoint_every == 0:
                self.save_last()
        self.validate(epoch, t0)

    def step(self, batch, epoch: int) -> float:
        """One optimiser step on ``batch``; returns its loss.

        Raises:
            FloatingPointError: a non-finite gradient (the step is not taken).
        """
        config, state = self.config, self.progress
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr.at(state["step"])
        with self.autocast:
            out = self.trained(batch)
        counts = dist.global_counts(batch, self.weights, self.world)
        loss, _ = total_loss(out, batch, self.weights, config.loss, counts=counts,
                             world=self.world)  # fmt: skip
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # the norm of the (all-reduced) gradient: the same on every rank, so all stop together
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                                   config.optim.grad_clip or math.inf)
        if not torch.isfinite(grad_norm):
            raise FloatingPointError(
                f"training diverged at step {state['step'] + 1} (epoch {epoch + 1}): the "
                f"gradient is not finite (loss {float(loss.detach()):.4g}); this step was not "
                f"taken, and {self.out_dir / BEST} and {self.last_path} keep the last weights "
                f"they were written with. Lower optim.lr (now {config.optim.lr:g}), or set "
                f"optim.grad_clip (now {config.optim.grad_clip:g}), then train again")
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model)
            _pin_frozen(self.ema, self.model, self.frozen)
        return float(loss.detach())

    # --- validation, checkpoints, stopping ---------------------------------------------------

    def validate(self, epoch: int, t0: float) -> None:
        """Validate the EMA weights on rank 0 (``best.pt``, a log row), share the bookkeeping,
        close the epoch if it is complete, and write ``checkpoint_last.pt``."""
        state = self.progress
        if self.rank == 0:
            self._validate_on_rank_zero(epoch, t0)
        state.update(dist.broadcast_state(state, self.rank, self.world))
        # the plateau schedule moved on rank 0 only: every rank takes its learning rate from it
        self.lr.load_state_dict(dist.broadcast_state(self.lr.state_dict(), self.rank,
                                                     self.world))  # fmt: skip
        state["validated_step"] = state["step"]
        if state["step_in_epoch"] >= self.steps_per_epoch:
            state.update(epoch=epoch + 1, step_in_epoch=0, loss_sum=0.0, loss_count=0)
        self.save_last()

    def _validate_on_rank_zero(self, epoch: int, t0: float) -> None:
        config, state, model = self.config, self.progress, self.model
        with self.ema.swapped(model) if self.ema is not None else nullcontext():
            metrics, _ = evaluate(model, self.valid, batch_size=config.data.valid_batch_size)
            valid_loss = sum(w * metrics.get(f"{k}_rmse", 0.0) ** 2
                             for k, w in self.weights.items())  # fmt: skip
            first = next(batches(self.valid, config.data.valid_batch_size)).to(self.device)
            with self.autocast:
                eq_err = equivariance_error(model, first)
            if valid_loss < state["best_valid"]:
                state.update(best_valid=valid_loss, best_epoch=epoch, stale=0)
                save_checkpoint(self.out_dir / BEST, model, epoch=epoch, metrics=metrics,
                                train_config=self.recorded.to_dict(),
                                data_files=self.data_files, data_sizes=self.sizes)  # fmt: skip
            else:
                state["stale"] += 1
        model.train()
        self.lr.validation(valid_loss)
        train_loss = state["loss_sum"] / state["loss_count"] if state["loss_count"] else math.nan
        record = {"epoch": epoch + 1, "step": state["step"], "lr": self.lr.at(state["step"]),
                  "train_loss": train_loss, "valid_loss": valid_loss,
                  "equivariance_error": eq_err, "time_s": time.perf_counter() - t0, **metrics}
        append_csv(self.out_dir / LOG, record)
        log.info("epoch %d/%d train %.4g valid %.4g equivariance %.1e", epoch + 1, config.epochs,
                 train_loss, valid_loss, eq_err)

    def elapsed(self) -> float:
        """Training seconds so far, resumed segments included."""
        return self._spent_before + time.perf_counter() - self._clock_start

    def budget_spent(self) -> bool:
        """Whether ``time_budget`` is spent (rank 0's clock decides for every rank)."""
        budget_s = 60.0 * self.config.time_budget
        if not budget_s:
            return False
        spent = self.elapsed() >= budget_s
        if self.world > 1:  # so that every rank stops after the same step
            spent = dist.broadcast_state({"spent": spent}, self.rank, self.world)["spent"]
        return spent

    def save_last(self) -> None:
        """Write ``checkpoint_last.pt`` (rank 0): weights, optimiser, schedule, EMA, progress."""
        if self.rank != 0:
            return
        self.progress["elapsed_s"] = self.elapsed()
        save_checkpoint(self.last_path, self.model, train_state={
            "optimizer": self.optimizer.state_dict(), "lr": self.lr.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "progress": dict(self.progress), "data_sizes": self.sizes,
            "train_config": self.recorded.to_dict()})  # fmt: skip

    def stop_reason(self) -> str | None:
        """``"epochs"``, ``"early_stopping"``, ``"time_budget"`` or None (go on)."""
        config, state = self.config, self.progress
        if state["epoch"] >= config.epochs:
            return "epochs"
        if config.patience and state["stale"] >= config.patience:
            return "early_stopping"
        # checked after every step; here for a resumed run that had spent it (never before the
        # first step: the step that spends the budget is always taken)
        return "time_budget" if state["step"] and self.budget_spent() else None

    # --- the end -----------------------------------------------------------------------------

    def finish(self, stopped: str) -> dict[str, Any]:
        """Say why training stopped, test ``best.pt`` (rank 0), return :func:`fit`'s result."""
        config, state = self.config, self.progress
        if self.rank == 0 and stopped != "epochs":
            why = (f"no better validation loss in {config.patience} validations"
                   if stopped == "early_stopping" else
                   f"time budget of {config.time_budget:g} min spent "
                   f"({state['elapsed_s']:.3g} s)")  # fmt: skip
            log.info("stopped after step %d: %s", state["step"], why)
        result = {"output": str(self.out_dir), "best_epoch": state["best_epoch"] + 1,
                  "stopped": stopped, "steps": state["step"],
                  "elapsed_s": float(state["elapsed_s"])}  # fmt: skip
        if self.rank == 0:
            result.update(self._test_best())
        dist.teardown(self.world)
        return result

    def _test_best(self) -> dict[str, Any]:
        import numpy as np

        from equivar.train.plots import learning_curves, parity

        out_dir = self.out_dir
        best: nn.Module = load_checkpoint(out_dir / BEST, device=self.device)
        metrics, preds = evaluate(best, self.test, batch_size=self.config.data.valid_batch_size,
                                  keep_predictions=True)  # fmt: skip
        atomic_write(out_dir / "test_predictions.npz", lambda fh: np.savez(fh, **preds))
        log.info("\ntest metrics (%d structures; energy per atom):\n%s", len(self.test),
                 metric_table(metrics))
        try:
            learning_curves(out_dir / LOG, out_dir / "learning_curves.png")
            parity(preds, out_dir / "parity.png")
        except ImportError:
            log.warning("matplotlib is not installed: no plots (pip install 'equivar[plot]')")
        return {"test": metrics, "checkpoint": str(out_dir / BEST)}


@torch.no_grad()
def _pin_frozen(ema: ExponentialMovingAverage, model: nn.Module, frozen: list[str]) -> None:
    """Frozen parameters' averages are their exact values (``d*v + (1-d)*v`` may round)."""
    params = dict(model.named_parameters())
    for name in frozen:
        ema.shadow[name].copy_(params[name])
