"""EMLP benchmark: the three synthetic tasks of Finzi, Welling & Wilson (ICML 2021), our EMLP
against a plain MLP of about the same size, and the equivariant-basis solver as the
representation grows.

Tasks (data generated here, seeded; the input and target conventions of the paper's datasets):

* ``o5``: O(5)-invariant regression. ``x1, x2 ~ N(0, I_5)``,
  ``f = sin|x1| - |x2|^3 / 2 + x1.x2 / (|x1| |x2|)``; ``rep_in = 2*V``, ``rep_out = 1``.
* ``inertia``: O(3)-equivariant inertia tensor of 5 point masses, ``m_i = softplus(N(0, 1))``,
  ``r_i ~ N(0, I_3)``, ``I = sum_i m_i (|r_i|^2 1 - r_i r_i^T)``; ``rep_in = 5 + 5*V``
  (masses, then positions), ``rep_out = V**2`` (the 3x3 tensor, row-major).
* ``scattering``: Lorentz-invariant electron-muon scattering amplitude from four four-momenta
  ``p1..p4 ~ N(0, I_4) / 4`` (``e, mu`` in; ``e', mu'`` out, as the paper's dataset orders
  them), metric ``eta = diag(1, -1, -1, -1)``:
  ``L_e^{ab} = p1^a p3^b - eta^{ab} (p1.p3 - p1.p1)``,
  ``L_mu_{ab} = (eta p2)_a (eta p4)_b - eta_{ab} (p2.p4 - p2.p2)``,
  ``f = 4 L_e^{ab} L_mu_{ab}`` (the squared matrix element without its propagator factor, the
  masses taken as ``p.p`` because the random momenta are off shell); group O(1,3),
  ``rep_in = 4*V``, ``rep_out = 1``.

Protocol: for every training size (default 30, 300, 3000) and a common 1000-sample test set,
EMLP (``build("emlp")``, 3 layers, ``--channels`` hidden size, bilinear terms; the paper used
384 channels) and an MLP (3 SiLU hidden layers, width chosen so its parameter count matches the
EMLP's) train side by side on the same batches: Adam, lr 3e-3, batch ``min(500, N)``,
``min(900000 / N, 1000)`` epochs as in the paper's data-efficiency runs, here with a cosine
decay of the learning rate instead of early stopping on a validation set. Inputs and targets
are standardised with statistics that keep the symmetry: one scale per summand copy of the
representation (e.g. per vector) and a mean only in the invariant subspace (the masses, the
trace of the inertia tensor, a scalar target). That is the paper's rule for the O(5) task and,
up to the choice of the per-particle scale, for the scattering task; the paper did not
standardise the inertia task. MSE is reported in the target's own units, averaged over samples
and output components, as in the paper.

Published EMLP numbers: the paper reports these tasks as curves (test MSE against training-set
size, 30..30000, log scale, its data-efficiency figure), not as a table; the values could not be
looked up here, so ``published_emlp_mse`` is ``null`` rather than numbers read by eye from
memory. Compare with the paper's figure by hand. The ``emlp`` package (JAX, objax) was not run:
it needs jax, jaxlib and objax, too heavy for this CPU-only environment.

Solver table: time (process CPU seconds, one thread) and peak extra memory (resident set) of
``invariant_basis`` / ``equivariant_blocks`` (cache off, each case in a fresh forked process)
for growing representations: ``V**k`` of SO(3), O(3), O(5), O(1,3) and S(10), the Lorentz
tensors ``T(p, p) = V**p * V.T**p`` (the invariants of ``T(2q, 2q)`` are the equivariant maps
``T(q, q) -> T(q, q)``), and EMLP hidden layers of O(5) of growing width (sums of many copies,
solved once per kind; ``unknowns`` is then the size of the dense map). A case that uses more
than ``--solver-limit`` CPU seconds is stopped by the kernel (``RLIMIT_CPU``) and the larger
cases of its series are skipped; ``largest_ok`` names the largest size of each series solved
within the limit.

Usage:
    python benchmarks/emlp.py --quick                    # smoke run, well under a minute
    python benchmarks/emlp.py --json benchmarks/results/emlp.json   # ~15-20 CPU-min
    python benchmarks/emlp.py --tasks o5 --sizes 30 300 3000 30000 --channels 384
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import queue as queue_module
import signal
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/common.py
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "src"))  # equivar, uninstalled

from common import print_table, standard_parser, write_json  # noqa: E402, I001

from equivar.models import build  # noqa: E402
from equivar.symmetry import as_rep, invariant_basis, matrix_group  # noqa: E402

#: task -> (group, rep_in, rep_out, paper's name of the dataset)
TASKS = {
    "o5": ("O(5)", "2*V", "1", "O5Synthetic"),
    "inertia": ("O(3)", "5 + 5*V", "V**2", "Inertia"),
    "scattering": ("O(1,3)", "4*V", "1", "ParticleInteraction"),
}
#: published EMLP test MSE by (task, n_train): not recovered (see the module docstring)
PUBLISHED: dict[tuple[str, int], float | None] = {}
PUBLISHED_NOTE = (
    "Finzi et al. 2021 report these tasks only as curves (test MSE vs training "
    "size, data-efficiency figure); values not looked up here, so null - compare "
    "with the figure by hand"
)
EMLP_PACKAGE_NOTE = (
    "emlp (PyPI 1.0.3) not run: it needs jax, jaxlib and objax, too heavy for "
    "this CPU-only environment"
)
ETA = torch.diag(torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=torch.float64))


# --- data -----------------------------------------------------------------------------------------
def o5_target(x: Tensor) -> Tensor:
    """``sin|x1| - |x2|^3 / 2 + x1.x2 / (|x1| |x2|)``: ``x [n, 10]`` -> ``[n, 1]``."""
    x1, x2 = x[:, :5], x[:, 5:]
    n1, n2 = x1.norm(dim=1), x2.norm(dim=1)
    return (torch.sin(n1) - 0.5 * n2**3 + (x1 * x2).sum(1) / (n1 * n2))[:, None]


def inertia_target(x: Tensor, k: int = 5) -> Tensor:
    """``sum_i m_i (|r_i|^2 1 - r_i r_i^T)``: ``x [n, 4k]`` (masses, then positions) ->
    ``[n, 9]`` (the 3x3 tensor, row-major)."""
    m, r = x[:, :k], x[:, k:].reshape(len(x), k, 3)
    eye = torch.eye(3, dtype=x.dtype)
    r2 = r.pow(2).sum(-1)[..., None, None]  # [n, k, 1, 1]
    return (
        (m[..., None, None] * (r2 * eye - r[..., :, None] * r[..., None, :]))
        .sum(1)
        .reshape(len(x), 9)
    )


def minkowski(a: Tensor, b: Tensor) -> Tensor:
    """``a.b`` with ``eta = diag(1, -1, -1, -1)``: ``[..., 4], [..., 4] -> [...]``."""
    return a[..., 0] * b[..., 0] - (a[..., 1:] * b[..., 1:]).sum(-1)


def scattering_amplitude(p: Tensor) -> Tensor:
    """The electron-muon amplitude of the module docstring: ``p [n, 4, 4]`` (particles ``e, mu,
    e', mu'``, components ``t, x, y, z``) -> ``[n]``."""
    p1, p2, p3, p4 = p.unbind(1)
    eta = ETA.to(p)
    le = (
        p1[:, :, None] * p3[:, None, :]
        - (minkowski(p1, p3) - minkowski(p1, p1))[:, None, None] * eta
    )  # upper indices
    low2, low4 = p2 @ eta, p4 @ eta  # lowered indices
    lmu = (
        low2[:, :, None] * low4[:, None, :]
        - (minkowski(p2, p4) - minkowski(p2, p2))[:, None, None] * eta
    )
    return 4 * (le * lmu).sum((1, 2))


def scattering_target(x: Tensor) -> Tensor:
    """:func:`scattering_amplitude` of ``x [n, 16]`` -> ``[n, 1]``."""
    return scattering_amplitude(x.reshape(len(x), 4, 4))[:, None]


#: task -> the target as a function of the input ``[n, rep_in.size] -> [n, rep_out.size]``
TARGETS = {"o5": o5_target, "inertia": inertia_target, "scattering": scattering_target}


def make_data(task: str, n: int, seed: int) -> tuple[Tensor, Tensor]:
    """``(x, y)`` of ``task``: ``n`` samples from ``seed`` (float64; the module docstring gives
    the input distributions)."""
    g = torch.Generator().manual_seed(seed)
    size = {"o5": 10, "inertia": 20, "scattering": 16}[task]
    x = torch.randn(n, size, generator=g, dtype=torch.float64)
    if task == "inertia":
        x[:, :5] = nn.functional.softplus(x[:, :5])  # masses
    elif task == "scattering":
        x = x / 4
    return x, TARGETS[task](x)


# --- standardisation that keeps the symmetry ------------------------------------------------------
def symmetric_stats(rep, x: Tensor) -> tuple[Tensor, Tensor]:
    """A mean in the invariant subspace of ``rep`` and one scale per summand copy.

    ``(x - mean) / scale`` then transforms by ``rep`` as ``x`` does: the mean is invariant and
    each scale multiplies a whole copy.

    Args:
        rep: the :class:`~equivar.symmetry.Rep` of the columns of ``x``.
        x: ``[n, rep.size]`` samples.

    Returns:
        ``(mean [rep.size], scale [rep.size])`` float64.
    """
    basis = invariant_basis(rep)  # [K, size], orthonormal rows
    mean = (x.mean(0) @ basis.T) @ basis
    scale = torch.ones(rep.size, dtype=torch.float64)
    for _, index in rep.terms():
        scale[index] = (x[:, index] - mean[index]).pow(2).mean().sqrt().clamp_min(1e-12)
    return mean, scale


class Standardized(nn.Module):
    """``net((x - x_mean) / x_scale) * y_scale + y_mean``: a model in the data's own units.

    Shapes:
        x: ``[batch, size_in]`` -> ``[batch, size_out]``
    """

    def __init__(self, net: nn.Module, x_stats: tuple[Tensor, Tensor],
                 y_stats: tuple[Tensor, Tensor]) -> None:  # fmt: skip
        super().__init__()
        self.net = net
        for name, value in zip(("x_mean", "x_scale", "y_mean", "y_scale"), (*x_stats, *y_stats),
                               strict=True):  # fmt: skip
            self.register_buffer(name, value.to(torch.get_default_dtype()))

    def forward(self, x: Tensor) -> Tensor:
        return self.net((x - self.x_mean) / self.x_scale) * self.y_scale + self.y_mean

    def normalized_error(self, x: Tensor, y: Tensor) -> Tensor:
        """The training loss: MSE in standardised target units."""
        z = self.net((x - self.x_mean) / self.x_scale)
        return ((z - (y - self.y_mean) / self.y_scale) ** 2).mean()


# --- models and training --------------------------------------------------------------------------
def mlp(size_in: int, size_out: int, params: int, layers: int = 3) -> nn.Sequential:
    """An MLP with ``layers`` SiLU hidden layers of one width, the width chosen so the parameter
    count is closest to ``params``."""
    # params(w) = (size_in + 1) w + (layers - 1)(w + 1) w + (w + 1) size_out
    a, b, c = layers - 1, size_in + layers + size_out, size_out - params
    width = max(1, round((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)) if a else
                round(-c / b))  # fmt: skip
    sizes = [size_in] + [width] * layers
    mods: list[nn.Module] = []
    for i, o in zip(sizes[:-1], sizes[1:], strict=True):
        mods += [nn.Linear(i, o), nn.SiLU()]
    return nn.Sequential(*mods, nn.Linear(width, size_out))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def train_side_by_side(models: dict[str, Standardized], x: Tensor, y: Tensor, *, epochs: int,
                       batch: int, lr: float, seed: int) -> dict[str, float]:  # fmt: skip
    """Adam with a cosine learning-rate decay, the same shuffled batches for every model.

    Returns:
        ``{name: process CPU seconds spent on that model}``.
    """
    g = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(len(x) / batch)
    total = epochs * steps_per_epoch
    opts = {k: torch.optim.Adam(m.parameters(), lr=lr) for k, m in models.items()}
    seconds = dict.fromkeys(models, 0.0)
    step = 0
    for m in models.values():
        m.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for s in range(steps_per_epoch):
            idx = order[s * batch : (s + 1) * batch]
            xb, yb = x[idx], y[idx]
            rate = lr * 0.5 * (1 + math.cos(math.pi * step / total))
            for name, model in models.items():
                t0 = time.process_time()
                opt = opts[name]
                for group in opt.param_groups:
                    group["lr"] = rate
                loss = model.normalized_error(xb, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                seconds[name] += time.process_time() - t0
            step += 1
    for m in models.values():
        m.eval()
    return seconds


@torch.no_grad()
def test_mse(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """MSE in the target's units, over samples and output components."""
    return float(((model(x) - y) ** 2).mean())


def run_task(task: str, n_train: int, args) -> dict:
    """Train EMLP and the MLP on ``n_train`` samples of ``task``; one table row."""
    group_name, rep_in_text, rep_out_text, _ = TASKS[task]
    group = matrix_group(group_name)
    rep_in, rep_out = as_rep(rep_in_text, group), as_rep(rep_out_text, group)
    x_tr, y_tr = make_data(task, n_train, seed=1000 * args.seed + 1)
    x_te, y_te = make_data(task, args.n_test, seed=1000 * args.seed + 2)
    x_stats, y_stats = symmetric_stats(rep_in, x_tr), symmetric_stats(rep_out, y_tr)
    x_tr, y_tr, x_te, y_te = (t.float() for t in (x_tr, y_tr, x_te, y_te))
    torch.manual_seed(args.seed)
    emlp = build("emlp", group=group_name, rep_in=rep_in_text, rep_out=rep_out_text,
                 num_channels=args.channels, num_layers=3, dtype="float32")  # fmt: skip
    models = {"emlp": Standardized(emlp, x_stats, y_stats),
              "mlp": Standardized(mlp(rep_in.size, rep_out.size, n_params(emlp)), x_stats,
                                  y_stats)}  # fmt: skip
    epochs = args.epochs or min(900_000 // n_train, 1000)
    batch = min(500, n_train)
    seconds = train_side_by_side(models, x_tr, y_tr, epochs=epochs, batch=batch, lr=args.lr,
                                 seed=args.seed)  # fmt: skip
    mse = {k: test_mse(m, x_te, y_te) for k, m in models.items()}
    return {
        "part": "accuracy",
        "task": task,
        "group": group_name,
        "rep_in": rep_in_text,
        "rep_out": rep_out_text,
        "n_train": n_train,
        "n_test": args.n_test,
        "epochs": epochs,
        "steps": epochs * math.ceil(n_train / batch),
        "emlp_params": n_params(models["emlp"].net),
        "mlp_params": n_params(models["mlp"].net),
        "emlp_mse": mse["emlp"],
        "mlp_mse": mse["mlp"],
        "mlp_over_emlp": mse["mlp"] / mse["emlp"],
        "target_var": float(y_te.var(0, unbiased=False).mean()),
        "published_emlp_mse": PUBLISHED.get((task, n_train)),
        "emlp_cpu_s": seconds["emlp"],
        "mlp_cpu_s": seconds["mlp"],
        "seed": args.seed,
    }


# --- the solver table -----------------------------------------------------------------------------
def _memory_mb() -> dict[str, float]:
    out = {}
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            key, value = line.split(":", 1)
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    return out


def _solve(case: tuple, limit: float, queue) -> None:
    """Child process: solve one case, report ``(cpu_s, peak_extra_mb, n_basis, n_params)``;
    the kernel stops it (SIGXCPU) once it has used ``limit`` + 1 s of CPU time."""
    import resource

    from equivar.symmetry import equivariant_blocks

    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = math.ceil(limit) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (soft if hard < 0 else min(soft, hard), hard))
    torch.set_num_threads(1)
    kind, group_name, rep_a, rep_b = case
    group = matrix_group(group_name)
    a = as_rep(rep_a, group)
    b = as_rep(rep_b, group) if rep_b is not None else None
    try:
        with open("/proc/self/clear_refs", "w", encoding="utf-8") as f:
            f.write("5")  # reset the peak resident set to the current one
    except OSError:
        pass
    before = _memory_mb().get("VmRSS", float("nan"))
    t0 = time.process_time()
    if kind == "invariants":
        n_basis = len(invariant_basis(a, cache=False))
        n_coeff = n_basis
    else:
        blocks = equivariant_blocks(a, b, cache=False)
        n_basis = sum(bl.basis.shape[0] for bl in blocks)
        n_coeff = sum(bl.n_params for bl in blocks)
    seconds = time.process_time() - t0
    peak = _memory_mb().get("VmHWM", float("nan")) - before
    queue.put((seconds, peak, n_basis, n_coeff))


def solver_cases(quick: bool) -> list[tuple[str, str, str, str, str | None, int]]:
    """``(series, kind, group, rep_a, rep_b, unknowns)`` in increasing size per series:
    ``kind`` ``"invariants"`` solves ``invariant_basis(rep_a)``, ``"maps"``
    ``equivariant_blocks(rep_a, rep_b)``; ``unknowns`` is the size of the dense problem
    (``rep_a.size`` or ``rep_a.size * rep_b.size``)."""
    cases = []

    def add(series, kind, group, a, b=None):
        g = matrix_group(group)
        n = as_rep(a, g).size * (as_rep(b, g).size if b is not None else 1)
        cases.append((series, kind, group, a, b, n))

    powers = {"SO(3)": range(2, 10), "O(3)": (4, 6, 8), "O(5)": (2, 4, 6),
              "O(1,3)": (2, 4, 6), "S(10)": (2, 3, 4)}  # fmt: skip
    if quick:
        powers = {"SO(3)": (2, 4), "O(1,3)": (2, 4)}
    for group, ks in powers.items():
        for k in ks:
            add(f"{group} V**k", "invariants", group, f"V**{k}")
    # T(p, p) = V**p * V.T**p of the Lorentz group; T(2p, 2p) holds the maps T(p, p) -> T(p, p)
    for p in (1, 2) if quick else (1, 2, 3, 4):
        add("O(1,3) T(p,p)", "invariants", "O(1,3)", f"V**{p}*V.T**{p}")
    if not quick:  # an EMLP hidden layer of O(5), gated(hidden) <- hidden, as it widens
        for width in (384, 1536, 6144):
            add("O(5) EMLP layer", "maps", "O(5)", _hidden(width), _hidden(width, True))
    return cases


def _hidden(width: int, gated: bool = False) -> str:
    from equivar.nn.emlp import gated as add_gates
    from equivar.nn.emlp import hidden_rep

    rep = hidden_rep(matrix_group("O(5)"), width)
    return str(add_gates(rep) if gated else rep)


def solver_rows(quick: bool, limit: float) -> list[dict]:
    """Time and memory of each solver case in a forked child, stopped after ``limit`` s."""
    ctx = multiprocessing.get_context("fork")
    rows, stopped = [], set()
    largest: dict[str, int] = {}
    for series, kind, group, a, b, n in solver_cases(quick):
        row = {"part": "solver", "series": series, "problem": a if b is None else f"{a} -> {b}",
               "unknowns": n, "n_basis": "", "coefficients": "", "cpu_s": "", "peak_mb": "",
               "status": ""}  # fmt: skip
        if len(row["problem"]) > 60:
            row["problem"] = (
                f"{as_rep(a, matrix_group(group)).size}-dim -> "
                f"{as_rep(b, matrix_group(group)).size}-dim"
            )
        if series in stopped:
            row["status"] = "skipped"
            rows.append(row)
            continue
        queue = ctx.Queue()
        proc = ctx.Process(target=_solve, args=((kind, group, a, b), limit, queue))
        proc.start()
        try:  # the CPU limit stops the child; the wall clock is a backstop on a busy machine
            result = queue.get(timeout=20 * limit + 60)
        except queue_module.Empty:
            result = None
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()
        if result is None:
            cpu_stop = proc.exitcode == -signal.SIGXCPU
            row["status"] = f"> {limit:g} s" if cpu_stop else f"failed (exit {proc.exitcode})"
            stopped.add(series)
        else:
            seconds, peak, n_basis, n_coeff = result
            row.update(
                n_basis=n_basis,
                coefficients=n_coeff,
                cpu_s=seconds,
                peak_mb=peak,
                status="ok" if seconds <= limit else f"> {limit:g} s",
            )
            if seconds <= limit:
                largest[series] = max(largest.get(series, 0), n)
            else:
                stopped.add(series)
        rows.append(row)
        print(
            f"solver {series}: {row['problem']} N={n} {row['status']} "
            f"{row['cpu_s'] if row['cpu_s'] == '' else format(row['cpu_s'], '.3g')} s",
            flush=True,
        )
    for row in rows:
        row["largest_ok"] = largest.get(row["series"], 0)
    return rows


# --- main -----------------------------------------------------------------------------------------
def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], parents=[standard_parser()])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[30, 300, 3000],
        help="training-set sizes (default 30 300 3000)",
    )
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument(
        "--channels",
        type=int,
        default=256,
        help="EMLP hidden size (default 256; the paper used 384)",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=0,
        help="epochs for every size (default 0: min(900000 / N, 1000) as the paper)",
    )
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument(
        "--solver-limit",
        type=float,
        default=60.0,
        help="CPU seconds a solver case may take (default 60)",
    )
    p.add_argument("--skip-solver", action="store_true", help="only the accuracy table")
    p.add_argument("--skip-tasks", action="store_true", help="only the solver table")
    return p


def main(argv: list[str] | None = None) -> list[dict]:
    args = make_parser().parse_args(argv)
    if args.quick:
        args.sizes, args.n_test, args.channels = [30], 300, 32
        args.epochs = args.epochs or 150
        args.solver_limit = min(args.solver_limit, 10.0)
    torch.set_num_threads(args.threads)
    start = time.process_time()
    rows: list[dict] = []
    # the solver first: its forked children must not inherit bases the training solved
    if not args.skip_solver:
        rows += solver_rows(args.quick, args.solver_limit)
    if not args.skip_tasks:
        for task in args.tasks:
            for n in args.sizes:
                row = run_task(task, n, args)
                print(
                    f"{task} N={n}: EMLP {row['emlp_mse']:.4g} ({row['emlp_cpu_s']:.0f} s), "
                    f"MLP {row['mlp_mse']:.4g} ({row['mlp_cpu_s']:.0f} s)",
                    flush=True,
                )
                rows.append(row)
    rows.append({"part": "notes", "published": PUBLISHED_NOTE, "emlp_package": EMLP_PACKAGE_NOTE,
                 "quick": args.quick, "channels": args.channels, "lr": args.lr,
                 "threads": args.threads, "solver_limit_s": args.solver_limit,
                 "total_cpu_s": time.process_time() - start})  # fmt: skip
    if args.json:
        write_json(args.json, "emlp", rows)
    solver = [{k: v for k, v in r.items() if k != "part"} for r in rows if r["part"] == "solver"]
    if solver:
        print("\nequivariant-basis solver (cache off, one thread; cpu_s = process CPU time):")
        print_table(solver)
    print(f"\npublished EMLP: {PUBLISHED_NOTE}\n{EMLP_PACKAGE_NOTE}")
    accuracy = [{"task": r["task"], "N": r["n_train"], "steps": r["steps"],
                 "EMLP params": r["emlp_params"], "MLP params": r["mlp_params"],
                 "EMLP MSE": r["emlp_mse"], "MLP MSE": r["mlp_mse"],
                 "MLP/EMLP": r["mlp_over_emlp"], "var(y)": r["target_var"],
                 "published EMLP": "n/a" if r["published_emlp_mse"] is None
                 else r["published_emlp_mse"],
                 "EMLP s": r["emlp_cpu_s"], "MLP s": r["mlp_cpu_s"]}
                for r in rows if r["part"] == "accuracy"]  # fmt: skip
    if accuracy:
        print("\ntest MSE (target units; EMLP and a same-size MLP trained side by side):")
        print_table(accuracy)
    return rows


if __name__ == "__main__":
    main()
