"""QM9 accuracy: equivar's property model beside PyG's SchNet and DimeNet++, one split and budget.

Protocol. Data from ``equivar.data.datasets.qm9`` (all 130,831 molecules of ``qm9pack``; the
random 110,000 / 10,000 / 10,831 split of ``numpy.random.default_rng(seed)``); ``--n-train``,
``--n-valid`` and ``--n-test`` take the first molecules of each part (a random subset; ``0``:
all). Targets in the published units: U0 (atomization energy), HOMO, LUMO, gap in meV, |mu| in
D, isotropic alpha in bohr^3. One model per target, as in the published tables.

Every model is trained by the same loop on the same batches: AdamW (weight decay 0), linear
warm-up then cosine decay of the learning rate over the budget, L1 loss on the standardised
target, gradient clipping at 10, an exponential moving average of the weights (decay 0.99) that
is validated after every epoch, and the test MAE of the best validated average. The budget is
``--minutes`` of training steps per model and target (validation not counted) and/or
``--epochs``; on a CPU the minutes are the process's CPU time, so other jobs on a shared
machine do not shorten it (with ``--threads 1``, one core's minutes); on CUDA, wall time.
Targets are standardised the same way for every model: U0 and alpha by per-element shifts
fitted by least squares on the training set and the residual's standard deviation; HOMO, LUMO
and gap by their mean and standard deviation. mu is predicted the way each model published it:
equivar and SchNet as the norm of sum_i q_i (r_i - r_com) (+ atomic dipoles for equivar),
DimeNet++ as a sum of atomic scalars.

Models: equivar ``build("property", preset=...)`` (cutoff 5 A; ``sum`` readout for U0 and
alpha, ``mean`` for HOMO/LUMO/gap, ``dipole`` for mu). PyG ``SchNet`` and ``DimeNetPlusPlus``
at ``--pyg-size paper`` (default; SchNet: 128 channels, 6 interactions, 50 Gaussians, cutoff
10 A, mean readout for HOMO/LUMO/gap; DimeNet++: hidden 128, 4 blocks, int_emb 64, basis_emb
8, out_emb 256, 7 spherical, 6 radial, cutoff 5 A) or ``small`` (see ``PYG_SIZES``). PyG's
models run unchanged except for their neighbour search: PyG 2.8's ``radius_graph`` needs
``pyg-lib`` >= 0.6 (or ``torch-cluster``) and DimeNet's ``triplets`` needs ``torch-sparse``'s
``SparseTensor``; none of them has a wheel on PyPI for this torch, so DimeNet++ cannot run as
shipped here (``ImportError: 'radius_graph' requires 'pyg-lib>=0.6.0'``, then
``'SparseTensor' requires 'torch-sparse'``). SchNet gets our radius graph through its
``interaction_graph`` argument; DimeNet++'s two module-level functions are replaced, while this
script runs, by pure-torch equivalents (``radius_graph`` from equivar, ``triplets`` below),
both checked against brute force by ``--check``.

    python benchmarks/qm9.py --quick                                   # smoke run, ~3 min CPU
    python benchmarks/qm9.py --check                                   # pure-torch graphs
    nice -n 10 python benchmarks/qm9.py --n-train 2000 --minutes 1.5   # the CPU table
    python benchmarks/qm9.py --n-train 0 --n-valid 0 --n-test 0 --epochs 300 --minutes 0 \\
        --device cuda --threads 8 --preset M                           # the full protocol
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch_geometric.data import Batch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import budgeted_training, print_table, standard_parser, write_json  # noqa: E402

from equivar.data import radius_graph  # noqa: E402
from equivar.data.datasets.qm9 import TARGETS, qm9  # noqa: E402
from equivar.models import build  # noqa: E402

SPECIES = (1, 6, 7, 8, 9)
DEBYE = 0.20819433622621247  # e*Angstrom per debye (ase.units.Debye)
#: how each target is standardised and read out
KIND = {"U0": "extensive", "alpha": "extensive", "homo": "intensive", "lumo": "intensive",
        "gap": "intensive", "mu": "dipole"}  # fmt: skip
#: published test MAE on QM9 (meV; mu in D; alpha in bohr^3), and where each row comes from
PUBLISHED = {
    "SchNet": {"U0": 14, "homo": 41, "lumo": 34, "gap": 63, "mu": 0.033, "alpha": 0.235},
    "DimeNet++": {"U0": 6.32, "homo": 24.6, "lumo": 19.5, "gap": 32.6, "mu": 0.0297,
                  "alpha": 0.0435},
    "PaiNN": {"U0": 5.85, "homo": 27.6, "lumo": 20.4, "gap": 45.7, "mu": 0.012, "alpha": 0.045},
    "EGNN": {"U0": 11, "homo": 29, "lumo": 25, "gap": 48, "mu": 0.029, "alpha": 0.071},
    "Equiformer": {"U0": 6.59, "homo": 15, "lumo": 14, "gap": 30, "mu": 0.011, "alpha": 0.046},
}  # fmt: skip
SOURCES = {
    "SchNet": "Schuett et al., J. Chem. Phys. 148, 241722 (2018); 110k training molecules",
    "DimeNet++": "Gasteiger et al., arXiv:2011.14115 (2020), table 2; 110k/10k split",
    "PaiNN": "Schuett, Unke, Gastegger, ICML 2021, table 2; 110k training molecules",
    "EGNN": "Satorras, Hoogeboom, Welling, ICML 2021, table 3; 100k/18k/13k (Cormorant) split",
    "Equiformer": "Liao and Smidt, ICLR 2023, table 1; 110k/10k/11k split",
}


#: PyG model sizes: "paper" as published for QM9, "small" about 10x cheaper per step on a CPU
PYG_SIZES = {
    "paper": {
        "schnet": dict(hidden_channels=128, num_filters=128, num_interactions=6,
                       num_gaussians=50, cutoff=10.0),
        "dimenet++": dict(hidden_channels=128, num_blocks=4, int_emb_size=64, basis_emb_size=8,
                          out_emb_channels=256, num_spherical=7, num_radial=6, cutoff=5.0),
    },
    "small": {
        "schnet": dict(hidden_channels=64, num_filters=64, num_interactions=3, num_gaussians=25,
                       cutoff=5.0),
        "dimenet++": dict(hidden_channels=64, num_blocks=2, int_emb_size=32, basis_emb_size=8,
                          out_emb_channels=128, num_spherical=7, num_radial=6, cutoff=5.0),
    },
}  # fmt: skip


# --- PyG's neighbour search without pyg-lib / torch-cluster / torch-sparse --------------------


def pyg_radius_graph(x, r, batch=None, loop=False, max_num_neighbors=32, flow="source_to_target",
                     num_workers=1, batch_size=None):  # fmt: skip
    """Drop-in for ``torch_geometric.nn.radius_graph`` (flow source_to_target, no self loops),
    computed by ``equivar.data.radius_graph``. QM9 molecules have at most 28 neighbours, so
    ``max_num_neighbors=32`` never truncates; that is checked rather than assumed.

    Shapes:
        x: [n_nodes, 3], batch: [n_nodes] -> edge_index [2, n_edges] (row 0 source j, row 1
        target i, the convention of both PyG and equivar)
    """
    if loop or flow != "source_to_target":
        raise NotImplementedError("only flow='source_to_target' without self loops")
    edge_index, _ = radius_graph(x.detach(), float(r), batch=batch)
    if max_num_neighbors is not None and edge_index.shape[1]:
        if int(torch.bincount(edge_index[1]).max()) > max_num_neighbors:
            raise RuntimeError("more neighbours than max_num_neighbors: PyG would truncate")
    return edge_index


def pyg_triplets(edge_index: torch.Tensor, num_nodes: int):
    """Drop-in for ``torch_geometric.nn.models.dimenet.triplets`` in pure torch.

    For every edge ``j -> i`` (``idx_ji``) and every edge ``k -> j`` (``idx_kj``) with ``k != i``,
    one triplet ``k -> j -> i``. Same outputs as PyG's (up to the order of the triplets).

    Shapes:
        edge_index: [2, n_edges] -> col, row [n_edges]; idx_i, idx_j, idx_k, idx_kj, idx_ji
        [n_triplets]
    """
    row, col = edge_index  # j -> i
    order = torch.argsort(col, stable=True)  # edges grouped by their target
    in_degree = torch.bincount(col, minlength=num_nodes)  # [n_nodes]
    start = torch.cumsum(in_degree, 0) - in_degree  # [n_nodes] first incoming edge in `order`
    per_edge = in_degree[row]  # [n_edges] edges k -> j arriving at j = row[e]
    idx_ji = torch.repeat_interleave(torch.arange(row.numel(), device=row.device), per_edge)
    first = torch.cumsum(per_edge, 0) - per_edge  # [n_edges] first triplet of each edge
    local = torch.arange(idx_ji.numel(), device=row.device) - first[idx_ji]  # [n_triplets]
    idx_kj = order[start[row[idx_ji]] + local]  # [n_triplets]
    idx_i, idx_j, idx_k = col[idx_ji], row[idx_ji], row[idx_kj]
    keep = idx_i != idx_k  # remove k == i (the edge back)
    idx_i, idx_j, idx_k, idx_kj, idx_ji = (t[keep] for t in (idx_i, idx_j, idx_k, idx_kj, idx_ji))
    return col, row, idx_i, idx_j, idx_k, idx_kj, idx_ji


@contextlib.contextmanager
def pure_torch_dimenet():
    """Replace DimeNet's module-level ``radius_graph`` and ``triplets`` while inside."""
    from torch_geometric.nn.models import dimenet

    saved = dimenet.radius_graph, dimenet.triplets
    dimenet.radius_graph, dimenet.triplets = pyg_radius_graph, pyg_triplets
    try:
        yield
    finally:
        dimenet.radius_graph, dimenet.triplets = saved


class InteractionGraph(nn.Module):
    """SchNet's ``interaction_graph``: ``(pos, batch) -> (edge_index, edge_weight)``."""

    def __init__(self, cutoff: float) -> None:
        super().__init__()
        self.cutoff = cutoff

    def forward(self, pos, batch):
        edge_index = pyg_radius_graph(pos, self.cutoff, batch)
        row, col = edge_index
        return edge_index, (pos[row] - pos[col]).norm(dim=-1)  # [2, n_edges], [n_edges]


def check_pure_torch() -> None:
    """``pyg_triplets`` and ``pyg_radius_graph`` against brute force on real molecules."""
    ds = qm9("valid", ["gap"], cutoff=5.0, limit=20)
    batch = Batch.from_data_list(list(ds))
    edge_index = pyg_radius_graph(batch.pos, 5.0, batch.batch)
    d = (batch.pos[:, None] - batch.pos[None]).norm(dim=-1)
    same = batch.batch[:, None] == batch.batch[None]
    brute = {(j, i) for i, j in (same & (d < 5.0)).nonzero().tolist() if i != j}
    assert set(map(tuple, edge_index.t().tolist())) == brute
    col, row, idx_i, idx_j, idx_k, idx_kj, idx_ji = pyg_triplets(edge_index, batch.num_nodes)
    edges = edge_index.t().tolist()
    expected = {(kj, ji) for ji, (j, i) in enumerate(edges) for kj, (k, j2) in enumerate(edges)
                if j2 == j and k != i}  # fmt: skip
    assert set(zip(idx_kj.tolist(), idx_ji.tolist(), strict=True)) == expected
    assert len(expected) == len(idx_kj)
    assert torch.equal(idx_k, edge_index[0, idx_kj]) and torch.equal(idx_i, edge_index[1, idx_ji])
    assert torch.equal(idx_j, edge_index[1, idx_kj]) and torch.equal(idx_j, edge_index[0, idx_ji])
    print(f"pure-torch radius_graph and triplets agree with brute force ({len(edges)} edges, "
          f"{len(expected)} triplets)")  # fmt: skip


# --- models: every one maps a batch to the target in its published unit ----------------------


def standardisation(train, target: str, name: str) -> tuple[dict[int, float], float, float, float]:
    """``(per-element shift, constant, output scale, loss scale)`` from the training set: a
    model's raw output ``out`` becomes ``scale * out + sum_atoms shift[z] + constant`` and the
    loss is ``|prediction - target| / loss_scale`` (see the module docstring)."""
    y = np.array([float(g[target]) for g in train])
    kind = KIND[target]
    if kind == "dipole" and name != "dimenet++":
        return {}, 0.0, 1.0 / DEBYE, float(y.std())  # the models output e*Angstrom: to debye
    if kind != "extensive":  # intensive targets, and |mu| as DimeNet++ fits it
        return {}, float(y.mean()), float(y.std()), float(y.std())
    counts = np.array([[int((g.z == z).sum()) for z in SPECIES] for g in train], dtype=float)
    coef, *_ = np.linalg.lstsq(counts, y, rcond=None)
    scale = float((y - counts @ coef).std())
    return {z: float(c) for z, c in zip(SPECIES, coef, strict=True)}, 0.0, scale, scale


class PygModel(nn.Module):
    """A PyG model (``model(z, pos, batch) -> [n_graphs, 1]``) put in the target's unit:
    ``scale * out + sum_atoms shift[z] + constant``."""

    def __init__(self, model: nn.Module, shift: dict[int, float], constant: float,
                 scale: float) -> None:  # fmt: skip
        super().__init__()
        self.model = model
        table = torch.zeros(10)
        for z, value in shift.items():
            table[z] = value
        self.register_buffer("shift", table)
        self.constant, self.scale = constant, scale

    def forward(self, batch) -> torch.Tensor:
        out = self.model(batch.z, batch.pos, batch.batch).reshape(-1).to(batch.pos.dtype)
        atoms = torch.zeros_like(out).index_add(0, batch.batch, self.shift[batch.z])
        return self.scale * out + atoms + self.constant  # [n_graphs]


class EquivarModel(nn.Module):
    """equivar's property model with one target, returning ``[n_graphs]`` in its unit."""

    def __init__(self, target: str, shift, constant: float, scale: float, args) -> None:
        super().__init__()
        kind = {"extensive": "sum", "intensive": "mean", "dipole": "dipole"}[KIND[target]]
        options = {}
        if kind == "sum":  # per-atom outputs summed: per-element shifts
            options = {"target_shifts": {target: shift}, "target_scales": {target: scale}}
        elif kind == "mean":  # averaged: the mean of (scale * x_i + constant) over atoms
            options = {"target_shifts": {target: constant}, "target_scales": {target: scale}}
        self.model = build("property", preset=args.preset, species=SPECIES, cutoff=5.0,
                           targets={target: kind}, **options)  # fmt: skip
        self.target, self.dipole_scale = target, scale if kind == "dipole" else None

    def forward(self, batch) -> torch.Tensor:
        out = self.model(batch)[self.target]
        if self.dipole_scale is not None:
            return self.dipole_scale * out.norm(dim=-1)  # [n_graphs] debye
        return out


def make_model(name: str, target: str, train, args) -> nn.Module:
    from torch_geometric.nn.models import DimeNetPlusPlus, SchNet

    shift, constant, scale, _ = standardisation(train, target, name)
    if name == "equivar":
        return EquivarModel(target, shift, constant, scale, args)
    if name == "schnet":
        options = PYG_SIZES[args.pyg_size]["schnet"]
        model = SchNet(**options, interaction_graph=InteractionGraph(options["cutoff"]),
                       readout="mean" if KIND[target] == "intensive" else "add",
                       dipole=KIND[target] == "dipole")  # fmt: skip
        return PygModel(model, shift, constant, scale)
    if name == "dimenet++":
        model = DimeNetPlusPlus(out_channels=1, **PYG_SIZES[args.pyg_size]["dimenet++"])
        return PygModel(model, shift, constant, scale)
    raise ValueError(f"unknown model {name!r}")


# --- the shared loop ---------------------------------------------------------------------------


@torch.no_grad()
def mae(model, dataset, target: str, batch_size: int, device) -> float:
    model.eval()
    total = 0.0
    for start in range(0, len(dataset), batch_size):
        stop = min(start + batch_size, len(dataset))
        batch = Batch.from_data_list([dataset[i] for i in range(start, stop)]).to(device)
        total += (model(batch) - batch[target].reshape(-1)).abs().sum().item()
    model.train()
    return total / len(dataset)


def fit(model, train, valid, target: str, scale: float, lr: float, args, device) -> dict:
    """Train under the budget; return timings and leave ``model`` at its best validated EMA."""

    def loss_fn(model, batch):
        return (model(batch) - batch[target].reshape(-1)).abs().mean() / scale

    step, seconds, best, best_state = 0, 0.0, math.inf, None
    for step, seconds, epoch_done, ema in budgeted_training(  # noqa: B007 (read after the loop)
        model, train, loss_fn, lr=lr, batch_size=args.batch_size, warmup=args.warmup,
        seed=args.seed, device=device, minutes=args.minutes, epochs=args.epochs,
    ):  # fmt: skip
        if epoch_done:
            with ema.swapped(model):
                value = mae(model, valid, target, args.eval_batch_size, device)
                if value < best:
                    best, best_state = value, copy.deepcopy(model.state_dict())
    if best_state is not None:  # None only if every validation was NaN (diverged)
        model.load_state_dict(best_state)
    steps_per_epoch = math.ceil(len(train) / args.batch_size)
    return {"steps": step, "epochs": round(step / steps_per_epoch, 2),
            "train_s": round(seconds, 1), "valid_mae": best}  # fmt: skip


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     parents=[standard_parser()])  # fmt: skip
    parser.add_argument("--targets", nargs="+", default=list(KIND), choices=list(KIND))
    parser.add_argument("--models", nargs="+", default=["equivar", "schnet", "dimenet++"],
                        choices=["equivar", "schnet", "dimenet++"])  # fmt: skip
    parser.add_argument("--n-train", type=int, default=2000, help="0: all 110,000")
    parser.add_argument("--n-valid", type=int, default=500, help="0: all 10,000")
    parser.add_argument("--n-test", type=int, default=2000, help="0: all 10,831")
    parser.add_argument("--minutes", type=float, default=1.5,
                        help="training time per model and target: CPU minutes on a CPU, wall "
                        "minutes on CUDA (0: no limit)")
    parser.add_argument("--epochs", type=int, default=0, help="epoch budget (0: no limit)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-batch-size", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=100, help="warm-up steps")
    parser.add_argument("--lr", type=float, nargs=3, default=[5e-3, 1e-3, 1e-3],
                        metavar=("EQUIVAR", "SCHNET", "DIMENET"),
                        help="learning rates: equivar's TrainConfig default; the PyG papers'")
    parser.add_argument("--preset", default="S", choices=["S", "M", "L"], help="equivar's size")
    parser.add_argument("--pyg-size", default="paper", choices=list(PYG_SIZES),
                        help="size of PyG's SchNet and DimeNet++")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="split, weights and shuffling")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--check", action="store_true", help="check the pure-torch graphs, exit")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_train, args.n_valid, args.n_test, args.minutes = 200, 100, 200, 0.25
        args.targets = ["gap", "mu"]
    if args.minutes <= 0 and args.epochs <= 0:
        parser.error("give a budget: --minutes and/or --epochs")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.check:
        check_pure_torch()
        return
    limits = {"train": args.n_train or None, "valid": args.n_valid or None,
              "test": args.n_test or None}  # fmt: skip
    t0 = time.perf_counter()
    data = {k: qm9(k, args.targets, cutoff=5.0, seed=args.seed, limit=v) for k, v in limits.items()}
    print(f"QM9: {len(data['train'])} train / {len(data['valid'])} valid / {len(data['test'])} "
          f"test molecules, graphs built in {time.perf_counter() - t0:.0f} s")  # fmt: skip
    lrs = dict(zip(["equivar", "schnet", "dimenet++"], args.lr, strict=True))
    rows = []
    with pure_torch_dimenet():
        for target in args.targets:
            unit = TARGETS[target][2]
            row = {"target": target, "unit": unit}
            for name in args.models:
                torch.manual_seed(args.seed)
                model = make_model(name, target, data["train"], args).to(device)
                scale = standardisation(data["train"], target, name)[3]
                info = fit(model, data["train"], data["valid"], target, scale, lrs[name], args,
                           device)  # fmt: skip
                test = mae(model, data["test"], target, args.eval_batch_size, device)
                params = sum(p.numel() for p in model.parameters())
                print(f"{target:>5} {name:>9}: test MAE {test:.4g} {unit}  (valid "
                      f"{info['valid_mae']:.4g}; {info['steps']} steps, {info['epochs']} epochs, "
                      f"{info['train_s']} s, {params} parameters)", flush=True)  # fmt: skip
                row[name] = round(test, 4)
                row[f"{name}_epochs"] = info["epochs"]
            for paper, values in PUBLISHED.items():
                row[f"{paper} (paper)"] = values[target]
            rows.append(row)
    budget = " / ".join(([f"{args.minutes:g} min"] if args.minutes > 0 else [])
                        + ([f"{args.epochs} epochs"] if args.epochs > 0 else []))  # fmt: skip
    print(f"\nQM9 test MAE: {len(data['train'])} training molecules, {budget} per model and "
          f"target, {args.threads} thread(s) on {args.device}; published: 110k training set")
    for paper, source in SOURCES.items():
        print(f"  {paper}: {source}")
    print_table(rows)
    if args.json:
        write_json(args.json, "qm9", [{**r, "n_train": len(data["train"]),
                                       "n_test": len(data["test"]), "minutes": args.minutes,
                                       "epochs_budget": args.epochs, "preset": args.preset,
                                       "pyg_size": args.pyg_size,
                                       "threads": args.threads, "device": args.device}
                                      for r in rows])  # fmt: skip


if __name__ == "__main__":
    main()
