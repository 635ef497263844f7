"""Shared helpers of the benchmark scripts: hardware and version strings, tables, JSON output.

Every benchmark prints a plain-text table last and, with ``--json PATH``, writes
``{"benchmark", "hardware", "versions", "rows"}`` so results can be compared across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
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
):
    """The training loop the accuracy benchmarks share, so every model gets the same one: AdamW
    (``weight_decay``, default none), linear warm-up then cosine decay over the budget, gradient
    clipping at 10, an EMA of the weights (``ema_decay``, default 0.99), shuffled batches of
    ``frames`` from ``seed``.

    The budget is ``minutes`` of training steps (process CPU time on a CPU, so other jobs on a
    shared machine do not change it; wall time on CUDA) and/or ``epochs`` (0: no limit).

    Yields ``(step, seconds, epoch_done, ema)`` after every optimiser step; ``epoch_done`` is
    True at the end of an epoch and at the last step. ``loss_fn(model, batch)`` returns the loss.
    """
    import math

    import torch
    from torch_geometric.data import Batch

    from equivar.train import ExponentialMovingAverage

    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    ema = ExponentialMovingAverage(model, ema_decay)
    budget = minutes * 60 if minutes > 0 else math.inf
    max_epochs = epochs if epochs > 0 else math.inf
    steps_per_epoch = math.ceil(len(frames) / batch_size)
    clock = time.process_time if device.type == "cpu" else time.perf_counter
    seconds, step, epoch = 0.0, 0, 0
    model.train()
    while epoch < max_epochs and seconds < budget:
        order = torch.randperm(len(frames), generator=g).tolist()
        for s in range(steps_per_epoch):
            t0 = clock()
            progress = min(max(seconds / budget, step / (max_epochs * steps_per_epoch)), 1.0)
            warm = min(1.0, (step + 1) / warmup)
            for group in opt.param_groups:
                group["lr"] = lr * warm * 0.5 * (1 + math.cos(math.pi * progress))
            idx = order[s * batch_size : (s + 1) * batch_size]
            batch = Batch.from_data_list([frames[i] for i in idx]).to(device)
            loss = loss_fn(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            ema.update(model)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            step += 1
            seconds += clock() - t0
            done = seconds >= budget
            yield step, seconds, done or s == steps_per_epoch - 1, ema
            if done:
                break
        epoch += 1

