"""Shared helpers of the benchmark scripts: hardware and version strings, tables, JSON output.

Every benchmark prints a plain-text table last and, with ``--json PATH``, writes
``{"benchmark", "hardware", "versions", "rows"}`` so results can be compared across machines.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "Recipe",
    "batch_to",
    "budgeted_training",
    "hardware",
    "key_value",
    "median_time",
    "print_table",
    "standard_parser",
    "versions",
    "write_json",
]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def hardware() -> str:
    """One line naming the CPU model and usable cores, and the GPU when torch sees one.

    Returns:
        e.g. ``"Intel(R) Xeon(R) Processor, 2 cores; GPU: none"``.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 0
    gpu = "none"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return f"{_cpu_model()}, {cores} cores; GPU: {gpu}"


def versions() -> dict[str, str]:
    """Versions of Python and of the packages the benchmarks depend on (``None`` if absent).

    Returns:
        ``{"python", "torch", "e3nn", "torch_geometric", "ase", "vesin", "numpy", "mace",
        "nequip", "equivar"}``.
    """
    out: dict[str, Any] = {"python": platform.python_version()}
    for name, dist in [
        ("torch", "torch"),
        ("e3nn", "e3nn"),
        ("torch_geometric", "torch-geometric"),
        ("ase", "ase"),
        ("vesin", "vesin"),
        ("numpy", "numpy"),
        ("mace", "mace-torch"),  # the peers of md17.py / train_speed.py (peers.py), if present
        ("nequip", "nequip"),
    ]:
        try:
            out[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[name] = None
    try:
        import equivar

        out["equivar"] = getattr(equivar, "__version__", "unknown")
    except ImportError:
        out["equivar"] = None
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def print_table(rows: list[dict[str, Any]]) -> None:
    """Print rows as an aligned plain-text table (columns from the first row's keys).

    Args:
        rows: one dict per row; numbers right-aligned, floats with 4 significant digits.
    """
    if not rows:
        print("(no rows)")
        return
    columns = list(rows[0])
    cells = [[_fmt(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[k]) for r in cells)) for k, c in enumerate(columns)]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)))


def write_json(path: str | os.PathLike, benchmark: str, rows: list[dict[str, Any]]) -> None:
    """Write ``{"benchmark", "hardware", "versions", "rows"}`` to ``path`` (folders created).

    Args:
        path: destination file, replaced atomically.
        benchmark: the benchmark's name, e.g. ``"neighbors"``.
        rows: the measured rows, as printed.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": benchmark, "hardware": hardware(), "versions": versions(), "rows": rows}
    # atomic: a benchmark that rewrites its file as results arrive never leaves half of one
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)


def median_time(
    fn: Callable[[], Any], repeats: int, warmup: int = 1, device: Any = None
) -> tuple[float, Any]:
    """Median wall time (s) of ``fn()`` over ``repeats`` calls after ``warmup`` calls.

    With a CUDA ``device`` the device is synchronised before each clock read, so asynchronous
    kernels are counted.

    Returns:
        ``(median_seconds, result_of_last_call)``.
    """

    def sync() -> None:
        if device is not None and getattr(device, "type", str(device)).startswith("cuda"):
            import torch

            torch.cuda.synchronize(device)

    result = None
    for _ in range(warmup):
        result = fn()
    sync()
    times = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        result = fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def silicon(n_atoms: int):
    """Rattled (0.05 A) diamond Si (a = 5.43 A) with about ``n_atoms`` atoms: k x k x k cubic
    cells of 8; 28 neighbours per atom within 5 A. The periodic test system of the speed
    benchmarks."""
    from ase.build import bulk

    k = max(1, round((n_atoms / 8) ** (1 / 3)))
    atoms = bulk("Si", "diamond", a=5.43, cubic=True) * (k, k, k)
    atoms.rattle(0.05, seed=0)
    return atoms


def model_parser() -> argparse.ArgumentParser:
    """Parent parser of the potential speed benchmarks: ``--device --preset --dtype --cutoff
    --sizes`` (sizes default to None: each script picks its own)."""
    import torch

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--preset", default="S", choices=["S", "M", "L"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--cutoff", type=float, default=5.0)
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    return parser


def key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with a YAML value (an argparse ``type`` for model options on the command
    line, e.g. ``lmax=2`` or ``radial_hidden=[64, 64]``)."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


def standard_parser() -> argparse.ArgumentParser:
    """The standard argparse parent: ``--json PATH`` and ``--quick``.

    Returns:
        A parser without ``-h`` to pass as ``argparse.ArgumentParser(parents=[standard_parser()])``.
    """
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--json", metavar="PATH", default=None, help="also write the rows as JSON")
    p.add_argument("--quick", action="store_true", help="smaller sizes, for CI and smoke tests")
    return p


@dataclass(frozen=True)
class Recipe:
    """How the shared loop trains a model: optimiser, schedule, loss weights, EMA, precision.

    The default is the benchmarks' shared recipe (AdamW, linear warm-up then cosine decay over
    the budget, clipping at 10, EMA 0.99, float32). A peer's own published recipe
    (``peers.MACE_RECIPE``, ``peers.NEQUIP_RECIPE``) sets ``schedule="plateau"`` (torch's
    ``ReduceLROnPlateau`` on the validation ``monitor``, stepped once per epoch), an optional
    stage two (from ``stage_two_at`` of the budget on: learning rate ``stage_two_lr`` and loss
    weights ``stage_two_weights``, as mace-torch's ``--stage_two``) and its own batch size,
    precision and EMA decay.

    Attributes:
        name: ``"shared"`` or the recipe's name (kept in the JSON).
        optimizer: ``"adamw"`` (decoupled weight decay), ``"adam"`` or ``"amsgrad"`` (Adam with
            AMSGrad; both with L2 weight decay, torch's ``Adam(weight_decay=...)``).
        lr: peak learning rate; None takes the caller's (``--lr``).
        weight_decay: as ``optimizer`` applies it.
        warmup: linear warm-up steps; None takes the caller's.
        schedule: ``"cosine"`` (to zero at the end of the budget) or ``"plateau"``.
        plateau: ``(factor, patience in epochs, relative threshold, min_lr)``.
        monitor: the validation number the plateau watches and the best checkpoint is chosen
            by: ``"loss"`` (the weighted loss) or ``"mae"`` (energy MAE + force MAE, NequIP's
            ``weighted_sum`` of its tutorial).
        clip: gradient-norm clipping (None: none).
        ema_decay: decay of the exponential moving average of the weights.
        loss_weights: ``(energy per atom, force components)`` weights of the MSE loss.
        stage_two_at: fraction of the budget where stage two starts (None: no stage two).
        stage_two_lr, stage_two_weights: stage two's learning rate and loss weights.
        dtype: ``"float32"`` or ``"float64"``: the model's parameters and the batches.
        batch_size: None takes the caller's (``--batch-size``).
    """

    name: str = "shared"
    optimizer: str = "adamw"
    lr: float | None = None
    weight_decay: float = 0.0
    warmup: int | None = None
    schedule: str = "cosine"
    plateau: tuple[float, int, float, float] = (0.8, 50, 1e-4, 0.0)
    monitor: str = "loss"
    clip: float | None = 10.0
    ema_decay: float = 0.99
    loss_weights: tuple[float, float] = (1.0, 10.0)
    stage_two_at: float | None = None
    stage_two_lr: float = 1e-3
    stage_two_weights: tuple[float, float] = (1000.0, 100.0)
    dtype: str = "float32"
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.optimizer not in ("adamw", "adam", "amsgrad"):
            raise ValueError(f"Recipe.optimizer: {self.optimizer!r} is not adamw, adam or amsgrad")
        if self.schedule not in ("cosine", "plateau"):
            raise ValueError(f"Recipe.schedule: {self.schedule!r} is not cosine or plateau")
        if self.monitor not in ("loss", "mae"):
            raise ValueError(f"Recipe.monitor: {self.monitor!r} is not loss or mae")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"Recipe.dtype: {self.dtype!r} is not float32 or float64")
        if self.stage_two_at is not None and not 0.0 < self.stage_two_at < 1.0:
            raise ValueError(f"Recipe.stage_two_at: {self.stage_two_at} is not in (0, 1)")

    def weights(self, stage_two: bool = False) -> dict[str, float]:
        """``{"energy": w_E, "forces": w_F}`` of stage one (or two)."""
        energy, forces = self.stage_two_weights if stage_two else self.loss_weights
        return {"energy": energy, "forces": forces}

    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)


def batch_to(batch: Any, device: Any, dtype: Any = None) -> Any:
    """``batch`` on ``device`` with its floating tensors (positions, labels, cells) in
    ``dtype`` (None: as they are)."""
    batch = batch.to(device)
    if dtype is not None:
        batch = batch.apply(lambda t: t.to(dtype) if t.is_floating_point() else t)
    return batch


class _CollapseGuard:
    """Keeps the last healthy (weights, optimiser, EMA) of ``budgeted_training`` and restores it,
    at half the learning rate, when an epoch's training loss diverges (see there)."""

    def __init__(self, model, opt, ema, recover, events) -> None:
        self.model, self.opt, self.ema, self.recover = model, opt, ema, recover
        self.events = events if events is not None else []
        self.scale, self.best, self.stage, self.copy = 1.0, math.inf, False, None

    def end_epoch(self, epoch: int, step: int, loss: float, stage_two: bool) -> None:
        import copy

        if self.recover is None:
            return
        if stage_two != self.stage:  # a new stage has its own loss weights: a new baseline
            self.stage, self.best, self.copy = stage_two, math.inf, None
        if self.copy is not None and (not math.isfinite(loss) or loss > self.recover * self.best):
            model_state, opt_state, shadow = self.copy
            self.model.load_state_dict(model_state)
            self.opt.load_state_dict(opt_state)
            self.ema.shadow = {k: v.clone() for k, v in shadow.items()}
            self.scale *= 0.5
            for group in self.opt.param_groups:  # a plateau schedule keeps the restored lr
                group["lr"] *= 0.5
            self.events.append({"step": step, "epoch": epoch + 1, "loss": loss, "best": self.best})
            return
        if math.isfinite(loss) and loss <= 2.0 * self.best:
            self.copy = (copy.deepcopy(self.model.state_dict()),
                         copy.deepcopy(self.opt.state_dict()),
                         {k: v.clone() for k, v in self.ema.shadow.items()})  # fmt: skip
        if math.isfinite(loss):
            self.best = min(self.best, loss)


def budgeted_training(
    model: Any,
    frames: Any,
    loss_fn: Callable[[Any, Any], Any],
    *,
    lr: float,
    batch_size: int,
    warmup: int,
    seed: int,
    device: Any,
    minutes: float = 0.0,
    epochs: int = 0,
    weight_decay: float = 0.0,
    ema_decay: float = 0.99,
    recipe: Recipe | None = None,
    monitor: Callable[[], float] | None = None,
    recover: float | None = 10.0,
    events: list[dict[str, Any]] | None = None,
):
    """The training loop the accuracy benchmarks share, so every model gets the same one.

    Without ``recipe``: AdamW (``weight_decay``, default none), linear warm-up then cosine decay
    over the budget, gradient clipping at 10, an EMA of the weights (``ema_decay``, default
    0.99), shuffled batches of ``frames`` from ``seed``. A :class:`Recipe` replaces the
    optimiser, schedule, clipping, EMA decay, batch size and precision (its None fields keep
    the arguments; the caller builds the model in ``recipe.dtype``, the loop casts the batches):
    with ``schedule="plateau"`` the loop calls ``monitor()`` (the validation number, with the
    EMA weights loaded; not counted in the budget) at the end of every epoch of stage one.

    The budget is ``minutes`` of training steps (process CPU time on a CPU, so other jobs on a
    shared machine do not change it; wall time on CUDA) and/or ``epochs`` (0: no limit).

    Yields ``(step, seconds, epoch_done, ema)`` after every optimiser step; ``epoch_done`` is
    True at the end of an epoch and at the last step. ``loss_fn(model, batch)`` returns the loss;
    with a stage two, the caller switches its weights when ``seconds`` reaches
    ``recipe.stage_two_at`` of the budget (the loop switches the learning rate at the same
    step: both read the ``seconds`` yielded last).

    Collapse guard, the same for every model: at the end of each epoch the loop keeps a copy of
    the weights, optimiser and EMA when the epoch's mean training loss is within 2x the best
    epoch of the current stage; when an epoch's mean loss is non-finite or above ``recover``
    times that best (a run that diverged or collapsed, as a long high-lr run can), it restores
    the copy and halves the learning rate for the rest of the run, appending
    ``{"step", "epoch", "loss", "best"}`` to ``events``. ``recover=None`` turns it off.
    """
    import math

    import torch
    from torch_geometric.data import Batch

    from equivar.train import ExponentialMovingAverage

    recipe = recipe or Recipe(weight_decay=weight_decay, ema_decay=ema_decay)
    lr = recipe.lr if recipe.lr is not None else lr
    warmup = recipe.warmup if recipe.warmup is not None else warmup
    batch_size = recipe.batch_size or batch_size
    dtype = recipe.torch_dtype()
    if recipe.schedule == "plateau" and monitor is None:
        raise ValueError("budgeted_training: a plateau schedule needs monitor()")
    g = torch.Generator().manual_seed(seed)
    if recipe.optimizer == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=recipe.weight_decay)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=recipe.weight_decay,
                               amsgrad=recipe.optimizer == "amsgrad")  # fmt: skip
    plateau = None
    if recipe.schedule == "plateau":
        factor, patience, threshold, min_lr = recipe.plateau
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, factor=factor, patience=patience, threshold=threshold, min_lr=min_lr)
    ema = ExponentialMovingAverage(model, recipe.ema_decay)
    budget = minutes * 60 if minutes > 0 else math.inf
    max_epochs = epochs if epochs > 0 else math.inf
    two_at = math.inf if recipe.stage_two_at is None else recipe.stage_two_at
    steps_per_epoch = math.ceil(len(frames) / batch_size)
    clock = time.process_time if device.type == "cpu" else time.perf_counter
    seconds, step, epoch = 0.0, 0, 0
    guard = _CollapseGuard(model, opt, ema, recover, events)
    model.train()
    while epoch < max_epochs and seconds < budget:
        order = torch.randperm(len(frames), generator=g).tolist()
        epoch_loss = 0.0
        for s in range(steps_per_epoch):
            t0 = clock()
            progress = min(max(seconds / budget, step / (max_epochs * steps_per_epoch)), 1.0)
            warm = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
            stage_two = progress >= two_at
            for group in opt.param_groups:
                if stage_two:
                    group["lr"] = recipe.stage_two_lr * guard.scale
                elif plateau is None:
                    group["lr"] = lr * warm * 0.5 * (1 + math.cos(math.pi * progress)) * guard.scale
                elif step < warmup:
                    group["lr"] = lr * warm * guard.scale
            idx = order[s * batch_size : (s + 1) * batch_size]
            batch = batch_to(Batch.from_data_list([frames[i] for i in idx]), device, dtype)
            loss = loss_fn(model, batch)
            epoch_loss += loss.item() / steps_per_epoch
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if recipe.clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.clip)
            opt.step()
            ema.update(model)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            step += 1
            seconds += clock() - t0
            done = seconds >= budget
            epoch_done = done or s == steps_per_epoch - 1
            if s == steps_per_epoch - 1 and not done:
                guard.end_epoch(epoch, step, epoch_loss, stage_two)
            yield step, seconds, epoch_done, ema
            last = done or epoch + 1 >= max_epochs
            if plateau is not None and s == steps_per_epoch - 1 and not stage_two and not last:
                with ema.swapped(model):
                    plateau.step(monitor())
            if done:
                break
        epoch += 1
