"""MD17 (GFN2-xTB): energy and force MAE of equivar's potential beside PyG's SchNet and DimeNet++.

Protocol. Data from ``equivar.data.datasets.md17.load_md17``: the ten MD17 molecules by GFN2-xTB
Langevin MD at 500 K (1500 frames each, shipped under ``datasets/md17_xtb/``), with its split (a
seeded permutation: 100 validation frames, 400 test frames, then the first ``n_train`` of the
rest, so the 50-frame training set lies inside the 1000-frame one and both are scored on the
same 400 test frames). Energies in eV, forces in eV/Angstrom. Reported: test MAE of the total
energy (meV) and of the force components (meV/Angstrom), as the MD17 literature reports them.

Every model is trained by the same loop on the same batches (``--batch-size`` 8, one shuffled order
per epoch from ``--seed``): AdamW (weight decay 0, ``--weight-decay``), linear warm-up then cosine
decay of the learning rate over the budget, gradient clipping at 10, an exponential moving average
of the weights (decay 0.99, ``--ema-decay``). Loss: equivar's ``total_loss`` with
``LossConfig(energy=1, forces=10)``, i.e. ``1 * MSE(energy per atom) + 10 * MSE(force components)``
in eV and eV/Angstrom - forces dominated, the default of ``equivar.train`` (``--loss-weights``). The
budget is ``--minutes`` of training steps per model (validation and testing not counted); on a CPU
the minutes are the process's CPU time (one thread per process), so other jobs on a shared machine
neither shorten nor lengthen any model's budget; on CUDA, wall time. The EMA weights are validated
``--checks`` times, evenly spaced over the budget (and at the end); the best validated EMA (by the
loss above, on the 100 validation frames) is tested. Each run's JSON keeps the validation force MAE
at every check (``history``, the learning curve) and the force MAE on its own training frames
(``train_forces_mae_meV_A``): their gap tells data-limited rows (50 frames: ~3 meV/A on the training
set against ~25 on the test set for ethanol) from budget-limited ones.

Energies are put on the same scale for every model: ``E = s * out + sum_atoms e[z]`` with the
per-element energies ``e`` (least squares on the training set) and ``s`` the RMS of the
training forces, both from ``equivar.data.compute_statistics`` - what ``equivar.train.fit``
gives its potential. Forces are ``-dE/dpos`` by autograd for every model.

Models: equivar ``build("potential", preset=..., lmax=2)`` (default preset ``S``, which has the
many-body product basis, ``correlation=3``, since session 4, here with features up to l = 2
(``EQUIVAR_OPTIONS``, since session 5: ethanol, 3 CPU minutes, lr 0.1, force MAE 13.4 -> 9.6
meV/A with 1000 frames and 40.9 -> 25.0 with 50; at 10 minutes 14.1 -> 6.5); cutoff 5 A;
``--equivar-option`` passes or overrides any build option, e.g. ``lmax=1`` for preset S as it
is). PyG ``SchNet``
and ``DimeNetPlusPlus`` at the sizes of ``benchmarks/qm9.py``: ``--pyg-size small`` (default;
SchNet 64 channels, 3 interactions, 25 Gaussians; DimeNet++ hidden 64, 2 blocks, int_emb 32,
basis_emb 8, out_emb 128, 7 spherical, 6 radial) or ``paper`` (SchNet 128 channels, 6
interactions, 50 Gaussians; DimeNet++ hidden 128, 4 blocks, int_emb 64, out_emb 256), every
cutoff set to ``--cutoff`` (5 A, as equivar; the MD17 molecules have at most 24 atoms).

Learning rates and sizes (the defaults) were chosen by one pilot sweep on ethanol, 1000 frames,
1 CPU minute per model (test force MAE in meV/A, seed 0): equivar S 2e-3: 100, 5e-3: 86, 1e-2:
71, 2e-2: 54, 5e-2: 41, 1e-1: 35, 2e-1: 36 (preset M at 1e-2: 99, ~10x slower per step;
S with the product basis, 3 CPU minutes: 5e-2: 14.4, 1e-1: 12.8, 2e-1: diverged; 1e-1 also
diverged in a 10-minute run, so pass ``--lr 0.05 1e-2 3e-3`` for budgets beyond a few minutes);
SchNet paper 5e-4: 100, 1e-3: 87, 3e-3: 71, 5e-3: 63; SchNet small 3e-3: 36, 1e-2: 28, 2e-2:
30; DimeNet++ small 1e-3: 29, 3e-3: 27, 1e-2: 36. Each model gets its best (equivar 1e-1,
SchNet 1e-2, DimeNet++ 3e-3) and the PyG models their small size, which makes ~5x (SchNet)
and ~3x (DimeNet++) more steps per minute than the paper size on a CPU. PyG's neighbour
search cannot run here (no pyg-lib / torch-cluster / torch-sparse for this torch), so SchNet
gets our radius graph through ``interaction_graph`` and DimeNet++ runs under the pure-torch
``radius_graph`` / ``triplets`` of ``benchmarks/qm9.py`` (``qm9.py --check`` checks them
against brute force).

MACE (mace-torch 0.3.16) and NequIP (nequip 0.19.1) from PyPI: ``--models ... mace nequip``
(not in the default ``--models``; install as ``benchmarks/peers.py`` says, the ``peers`` extra).
Both get the same graphs (equivar's, ``--cutoff``), the same energy scale (per-element energies
and RMS force scale, inside each package's own scale-shift block) and compute forces by their own
autograd code. MACE is ``ScaleShiftMACE`` as mace-torch's ``--model MACE`` builds it, size
``--mace-size`` (default ``channels=32 max_L=1 correlation=3``: hidden irreps 32x0e+32x1o, two
interactions, harmonics to l = 3; matched to equivar's preset S; 93,520 parameters on ethanol).
NequIP is ``NequIPGNNModel``, ``--nequip-size`` (default ``features=32 l_max=1 layers=4``, its
own defaults; 438,400 parameters, most in the radial MLPs). A training step on one CPU thread
(``train_speed.py``, batch 8) costs MACE 3.8x (ethanol) to 4.4x (aspirin) and NequIP 2.2x to
2.5x equivar's (preset S, l <= 2). Learning rates by the same pilot (ethanol, 1000 frames, 1 CPU
minute, test force MAE in meV/A, seed 0): MACE 1e-2: 72, 2e-2: 65, 5e-2: 40, 1e-1: 38, 2e-1:
diverged (243; 300-360 steps per minute); NequIP 1e-2: 73, 5e-2: 48, 1e-1: 43, 2e-1: 88
(energy MAE 1.1 eV, unstable; 540-610 steps). Both get 1e-1, their best, as equivar does and
with the same caveat: for budgets beyond a few minutes pass lower rates (``--lr mace=0.05
nequip=0.05``).

Each peer also trains under its own published recipe: ``--models mace-own nequip-own``
(``peers.MACE_RECIPE``: mace-torch's defaults with EMA and stage two - float64, Adam with AMSGrad,
lr 0.01, forces weight 100, ReduceLROnPlateau, the last quarter of the budget at energy weight
1000 and lr 1e-3, batch 10; ``peers.NEQUIP_RECIPE``: NequIP's tutorial config - Adam lr 0.01,
ReduceLROnPlateau on the validation energy + force MAE, EMA 0.999, loss weights 1 and 1, batch
5). The budget, data, graphs and energy scale stay the shared ones; the plateau's validations
(once per epoch) are not counted in the budget, like every validation. Where both of a peer's
recipes ran, the row's ``NAME best F`` is the better force MAE, the one equivar is measured
against.

Goal (BENCHMARKS.md): equivar's force MAE at least 2x lower than both PyG models at equal
budget. Published MD17 numbers (``PUBLISHED``) are context only: they are for the original DFT
MD17 (PBE+vdW-TS; 1000 training frames, training to convergence on a GPU), not for these
xTB labels at 500 K.

    python benchmarks/md17.py --quick                                  # smoke run, ~2 min CPU
    nice -n 5 python benchmarks/md17.py --minutes 3 --jobs 2 \\
        --json md17.json                       # the CPU table: 10 molecules, ~2 h on 2 cores
    python benchmarks/md17.py --minutes 30 --device cuda --preset M    # every molecule, GPU
    python benchmarks/md17.py --merge a.json b.json --json all.json    # one table from runs
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import math
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch
from torch import nn
from torch_geometric.data import Batch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    Recipe,
    batch_to,
    budgeted_training,
    key_value,
    print_table,
    standard_parser,
    write_json,
)
from peers import (  # noqa: E402
    MACE_SIZE,
    NEQUIP_SIZE,
    RECIPES,
    mace_potential,
    nequip_potential,
    size_options,
)
from qm9 import PYG_SIZES, InteractionGraph, PygModel, pure_torch_dimenet  # noqa: E402

from equivar.data.datasets.md17 import MOLECULES, TRAIN_SIZES, load_md17  # noqa: E402

MODELS = ("equivar", "schnet", "dimenet++", "mace", "nequip", "mace-own", "nequip-own")
#: ``NAME-own``: the peer under its own published recipe (``peers.RECIPES``) instead of the
#: shared loop's; its row also gets ``NAME best F``, the better of the two
PEER_MODELS = ("mace", "nequip")
#: trained when ``--models`` is not given; MACE and NequIP need the ``peers`` extra (peers.py)
DEFAULT_MODELS = ("equivar", "schnet", "dimenet++")
#: the models of the 2x goal (BENCHMARKS.md: ">= 2x below SchNet/DimeNet++")
PYG_MODELS = ("schnet", "dimenet++")
#: peak learning rates, each model's best in the pilot sweeps of the module docstring
LEARNING_RATES = {"equivar": 1e-1, "schnet": 1e-2, "dimenet++": 3e-3, "mace": 1e-1,
                  "nequip": 1e-1, "mace-own": 1e-2, "nequip-own": 1e-2}  # own: their recipes' lr
#: equivar's options on top of the preset (``--equivar-option`` overrides them): features up to
#: l = 2 (preset S has l <= 1), the better choice at every budget tried (module docstring)
EQUIVAR_OPTIONS = {"lmax": 2}
KCAL_MOL_IN_MEV = 43.364104  # 1000 * ase.units.kcal / ase.units.mol
#: published MD17 (DFT) test MAE, 1000 training frames, energy + forces training, kcal/mol and
#: kcal/mol/A: {model: {molecule: (energy, forces)}}
PUBLISHED = {
    "SchNet": {"aspirin": (0.37, 1.35), "benzene": (0.08, 0.31), "ethanol": (0.08, 0.39),
               "malonaldehyde": (0.13, 0.66), "naphthalene": (0.16, 0.58),
               "salicylic_acid": (0.20, 0.85), "toluene": (0.12, 0.57), "uracil": (0.14, 0.56)},
    "DimeNet": {"aspirin": (0.204, 0.499), "benzene": (0.078, 0.187), "ethanol": (0.064, 0.230),
                "malonaldehyde": (0.104, 0.383), "naphthalene": (0.122, 0.215),
                "salicylic_acid": (0.134, 0.374), "toluene": (0.102, 0.216),
                "uracil": (0.115, 0.301)},
}  # fmt: skip
SOURCES = {
    "SchNet": "Schuett et al., NeurIPS 2017, table 2 (MD17, N=1000, energy+forces)",
    "DimeNet": "Klicpera (Gasteiger) et al., ICLR 2020, table 2 (MD17, 1000 training frames; "
    "table 1 is QM9; benzene is the 2017 MD17 benzene); DimeNet++ published no MD17 table",
}


# --- models: every one maps a batch to {"energy": [n_graphs], "forces": [n_nodes, 3]} ---------


class PygPotential(nn.Module):
    """A PyG model put on equivar's energy scale (``qm9.PygModel``), with forces ``-dE/dpos``."""

    def __init__(self, model: nn.Module, atomic_energies: dict[int, float], scale: float) -> None:
        super().__init__()
        self.model = PygModel(model, atomic_energies, 0.0, scale)

    def forward(self, batch, *, create_graph: bool | None = None) -> dict[str, torch.Tensor]:
        if create_graph is None:
            create_graph = self.training
        with torch.enable_grad():
            data = copy.copy(batch)  # shallow: only ``pos`` is replaced
            data.pos = batch.pos.detach().requires_grad_(True)
            energy = self.model(data)  # [n_graphs]
            (grad,) = torch.autograd.grad(energy.sum(), data.pos, create_graph=create_graph)
        out = {"energy": energy, "forces": -grad}
        return out if create_graph else {k: v.detach() for k, v in out.items()}


def model_recipe(name: str, args) -> Recipe:
    """The shared loop's recipe (``--weight-decay --ema-decay --loss-weights``) or, for
    ``NAME-own``, the peer's own (``peers.RECIPES``)."""
    if name.endswith("-own"):
        return RECIPES[name.removesuffix("-own")]
    return Recipe(weight_decay=args.weight_decay, ema_decay=args.ema_decay,
                  loss_weights=tuple(args.loss_weights))


def make_model(name: str, stats, args, dtype: torch.dtype = torch.float32) -> nn.Module:
    from torch_geometric.nn.models import DimeNetPlusPlus, SchNet

    from equivar.models import build

    name = name.removesuffix("-own")
    if name == "equivar":
        options = {**EQUIVAR_OPTIONS, **dict(args.equivar_option)}
        return build("potential", preset=args.preset, statistics=stats, cutoff=args.cutoff,
                     dtype=dtype, **options)  # fmt: skip
    if name == "mace":  # the same energy scale, inside MACE (peers.py)
        return mace_potential(stats, args.cutoff, **size_options(args.mace_size, MACE_SIZE,
                                                                 "--mace-size")).to(dtype)
    if name == "nequip":
        return nequip_potential(stats, args.cutoff, seed=args.seed, dtype=dtype,
                                **size_options(args.nequip_size, NEQUIP_SIZE, "--nequip-size"))
    shifts = {int(z): float(e) for z, e in stats.atomic_energies.items()}
    scale = float(stats.forces_rms)
    if name == "schnet":
        options = {**PYG_SIZES[args.pyg_size]["schnet"], "cutoff": args.cutoff}
        model = SchNet(**options, interaction_graph=InteractionGraph(args.cutoff))
    elif name == "dimenet++":
        options = {**PYG_SIZES[args.pyg_size]["dimenet++"], "cutoff": args.cutoff}
        model = DimeNetPlusPlus(out_channels=1, **options)
    else:
        raise ValueError(f"unknown model {name!r}")
    return PygPotential(model, shifts, scale).to(dtype)


# --- the shared loop ---------------------------------------------------------------------------


def errors(model, frames, batch_size: int, weights, device, dtype=None) -> dict[str, float]:
    """Energy MAE (eV, total energy), force MAE (eV/A, components) and the weighted loss (the
    batches in ``dtype``, None: as stored)."""
    model.eval()
    e_abs = f_abs = e_sq = f_sq = 0.0
    n_e = n_f = 0
    for start in range(0, len(frames), batch_size):
        batch = batch_to(Batch.from_data_list(frames[start : start + batch_size]), device, dtype)
        out = model(batch, create_graph=False)
        de = (out["energy"] - batch.energy.reshape(-1)).double()  # [n_graphs]
        df = (out["forces"] - batch.forces).double()  # [n_nodes, 3]
        n_atoms = torch.bincount(batch.batch, minlength=de.numel()).double()
        e_abs += de.abs().sum().item()
        e_sq += (de / n_atoms).pow(2).sum().item()
        f_abs += df.abs().sum().item()
        f_sq += df.pow(2).sum().item()
        n_e, n_f = n_e + de.numel(), n_f + df.numel()
    model.train()
    loss = weights["energy"] * e_sq / n_e + weights["forces"] * f_sq / n_f
    return {"energy_mae": e_abs / n_e, "forces_mae": f_abs / n_f, "loss": loss}


def train(model, train_frames, valid_frames, lr: float, recipe: Recipe, args, device) -> dict:
    """Train under the budget by ``recipe``; leave ``model`` at its best validated EMA (by the
    recipe's ``monitor``, among the validations of its last stage); return the counts."""
    from equivar.train.config import LossConfig
    from equivar.train.losses import total_loss

    budget = args.minutes * 60
    checks = [budget * (k + 1) / args.checks for k in range(args.checks)]
    two_at = math.inf if recipe.stage_two_at is None else recipe.stage_two_at * budget
    dtype = recipe.torch_dtype()
    state = {"stage_two": False, "best": math.inf, "best_state": None, "step": 0}
    history = []  # one entry per validation: the learning curve, kept in the JSON
    rollbacks = []  # the shared loop's collapse guard: each restore, kept in the JSON

    def loss_fn(model, batch):
        weights = recipe.weights(state["stage_two"])
        return total_loss(model(batch), batch, weights, LossConfig(**weights))[0]

    def validate() -> float:  # with the EMA weights loaded
        value = errors(model, valid_frames, args.eval_batch_size,
                       recipe.weights(state["stage_two"]), device, dtype)  # fmt: skip
        number = value["loss"] if recipe.monitor == "loss" else \
            value["energy_mae"] + value["forces_mae"]  # fmt: skip
        history.append({"step": state["step"], "stage": 2 if state["stage_two"] else 1,
                        "valid_forces_mae_meV_A": 1000 * value["forces_mae"],
                        "valid_loss": value["loss"], "monitor": number})  # fmt: skip
        if number < state["best"]:  # NaN (diverged) never wins
            state["best"] = number
            state["best_state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return number

    step, seconds, shadow = 0, 0.0, None
    for step, seconds, _, ema in budgeted_training(  # noqa: B007 (both read after the loop)
        model, train_frames, loss_fn, lr=lr, batch_size=args.batch_size, warmup=args.warmup,
        seed=args.seed, device=device, minutes=args.minutes, recipe=recipe, monitor=validate,
        events=rollbacks,
    ):  # fmt: skip
        shadow, state["step"] = ema.shadow, step
        if seconds >= two_at and not state["stage_two"]:  # stage two: its own weights and best
            state.update(stage_two=True, best=math.inf, best_state=None)
        if checks and seconds >= checks[0]:
            while checks and seconds >= checks[0]:
                checks.pop(0)
            with ema.swapped(model):
                validate()
    model.load_state_dict(state["best_state"] if state["best_state"] is not None else shadow)
    steps_per_epoch = math.ceil(len(train_frames) / (recipe.batch_size or args.batch_size))
    return {"steps": step, "epochs": round(step / steps_per_epoch, 1),
            "train_s": round(seconds, 1), "valid_loss": state["best"], "recipe": recipe.name,
            "history": history, "rollbacks": rollbacks}  # fmt: skip


def run_one(task: tuple[str, int, str], args) -> dict:
    """Train and test one model on one molecule and training size (one process, one thread)."""
    from equivar.data import compute_statistics

    molecule, n_train, name = task
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    wall = time.perf_counter()
    data = {split: list(load_md17(molecule, args.cutoff, split=split, train_size=n_train,
                                  seed=args.seed))
            for split in ("train", "valid", "test")}  # fmt: skip
    if args.quick:
        data["valid"], data["test"] = data["valid"][:40], data["test"][:100]
    stats = compute_statistics(data["train"])
    torch.manual_seed(args.seed)
    lr = args.lr[name]
    recipe = model_recipe(name, args)
    dtype = recipe.torch_dtype()
    with pure_torch_dimenet():
        model = make_model(name, stats, args, dtype).to(device)
        info = train(model, data["train"], data["valid"], lr, recipe, args, device)
        weights = recipe.weights()
        test = errors(model, data["test"], args.eval_batch_size, weights, device, dtype)
        fit = errors(model, data["train"], args.eval_batch_size, weights, device, dtype)
    result = {"molecule": molecule, "n_train": n_train, "model": name,
              "energy_mae_meV": 1000 * test["energy_mae"],
              "forces_mae_meV_A": 1000 * test["forces_mae"],
              "train_forces_mae_meV_A": 1000 * fit["forces_mae"], **info,
              "params": sum(p.numel() for p in model.parameters()),
              "n_test": len(data["test"]), "wall_s": round(time.perf_counter() - wall, 1)}
    curve = " ".join(f"{h['valid_forces_mae_meV_A']:.3g}" for h in info["history"])
    print(f"{molecule:>14} n={n_train:<4} {name:>9}: E {result['energy_mae_meV']:.3g} meV, "
          f"F {result['forces_mae_meV_A']:.3g} meV/A  ({info['steps']} steps, {info['epochs']} "
          f"epochs, {info['train_s']} s train, {result['wall_s']} s wall, {result['params']} "
          f"parameters; training-set F {result['train_forces_mae_meV_A']:.3g}; validation F by "
          f"check: {curve})", flush=True)  # fmt: skip
    return result


def summary_rows(results: list[dict], args) -> list[dict]:
    """One row per molecule and training size: each model's MAEs, force ratios, the goal."""
    rows = []
    for molecule in args.molecules:
        for n_train in args.n_train:
            got = {r["model"]: r for r in results
                   if r["molecule"] == molecule and r["n_train"] == n_train}  # fmt: skip
            if not got:
                continue
            row = {"molecule": molecule, "n_train": n_train}
            for name in args.models:
                if name in got:
                    row[f"{name} E"] = round(got[name]["energy_mae_meV"], 2)
                    row[f"{name} F"] = round(got[name]["forces_mae_meV_A"], 2)
            for peer in PEER_MODELS:  # a peer at its best: the better of its two recipes
                if peer in got and f"{peer}-own" in got:
                    row[f"{peer} best F"] = round(min(got[peer]["forces_mae_meV_A"],
                                                      got[f"{peer}-own"]["forces_mae_meV_A"]), 2)
            ours = got.get("equivar")
            others = [n for n in args.models if n != "equivar" and n in got]
            if ours is not None:
                for n in others:
                    ratio = got[n]["forces_mae_meV_A"] / ours["forces_mae_meV_A"]
                    row[f"F {n}/equivar"] = round(ratio, 2)
                # the goal of BENCHMARKS.md: >= 2x below the PyG models (the lowest error
                # of all, MACE and NequIP included, is counted by ``overall``)
                pyg = [n for n in others if n in PYG_MODELS]
                if pyg:
                    row["2x goal"] = "yes" if all(row[f"F {n}/equivar"] >= 2 for n in pyg) \
                        else "no"  # fmt: skip
            for paper, table in PUBLISHED.items():
                value = table.get(molecule) if n_train == 1000 else None
                row[f"{paper} F (DFT paper)"] = (round(value[1] * KCAL_MOL_IN_MEV, 1)
                                                 if value else "-")  # fmt: skip
            rows.append(row)
    return rows


def overall(rows: list[dict], models: list[str]) -> dict:
    """Across the table: geometric-mean force ratio against each other model, in how many rows
    equivar has the lowest force error, and in how many it meets the 2x goal. Models without
    a ratio in any row (not run, or absent from merged files) are left out."""
    out: dict = {"rows": len(rows)}
    others = [n for n in models if n != "equivar" and any(f"F {n}/equivar" in r for r in rows)]
    for n in others:
        ratios = [r[f"F {n}/equivar"] for r in rows if f"F {n}/equivar" in r]
        if ratios:
            out[f"F {n}/equivar (geo. mean)"] = round(math.exp(
                sum(math.log(x) for x in ratios) / len(ratios)), 2)  # fmt: skip
            out[f"F {n}/equivar (min..max)"] = f"{min(ratios):.2f}..{max(ratios):.2f}"
    if not others:
        return out
    scored = [r for r in rows if all(f"F {n}/equivar" in r for n in others)]
    out["equivar lowest F"] = sum(all(r[f"F {n}/equivar"] > 1 for n in others) for r in scored)
    if any("2x goal" in r for r in scored):  # only where a PyG model ran
        out["2x goal met"] = sum(r.get("2x goal") == "yes" for r in scored)
    return out


def merged_results(paths: list[str]) -> tuple[list[dict], dict[tuple[str, int], dict]]:
    """Per-model results and each row's settings from earlier ``--json`` files (later files win
    for a molecule, size and model that several contain)."""
    results: dict[tuple[str, int, str], dict] = {}
    settings: dict[tuple[str, int], dict] = {}
    for path in paths:
        try:
            rows = json.loads(Path(path).read_text())["rows"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SystemExit(f"--merge: cannot read md17 rows from {path}: {exc}") from exc
        for row in rows:
            key = (row["molecule"], row["n_train"])
            settings[key] = {k: v for k, v in row.items() if k in SETTING_KEYS}
            for run in row.get("runs", []):
                results[(run["molecule"], run["n_train"], run["model"])] = run
    return list(results.values()), settings


#: the run settings every JSON row carries (``main``), kept per row by ``--merge``
SETTING_KEYS = ("minutes", "clock", "batch_size", "lr", "loss_weights", "weight_decay",
                "ema_decay", "preset", "equivar_options", "pyg_size", "cutoff", "seed", "threads",
                "jobs", "device", "mace_size", "nequip_size")  # fmt: skip


#: budgets (CPU minutes) from which :data:`LONG_BUDGET_LR` replaces the 3-minute sweeps' rates
LONG_BUDGET_MINUTES = 10.0
#: equivar's peak lr for long budgets: at 30 minutes lr 0.05 diverged on ethanol (a cosine over a
#: long budget keeps the lr near its peak for many epochs), 0.01 gave 3.78 meV/A (RESULTS.md)
LONG_BUDGET_LR = {"equivar": 0.01}


def learning_rates(values: list[str], minutes: float = 0.0) -> dict[str, float]:
    """``--lr``: :data:`LEARNING_RATES` (with :data:`LONG_BUDGET_LR` from
    :data:`LONG_BUDGET_MINUTES` on) updated by ``MODEL=LR`` items and by bare values, which go
    to the models in the order of :data:`MODELS` (``--lr 0.05 1e-2 3e-3``: equivar, SchNet,
    DimeNet++)."""
    out = dict(LEARNING_RATES)
    if minutes >= LONG_BUDGET_MINUTES:
        out.update(LONG_BUDGET_LR)
    bare = [v for v in values if "=" not in v]
    if len(bare) > len(MODELS):
        raise ValueError(f"--lr: {len(bare)} bare values for {len(MODELS)} models {MODELS}")
    pairs = [*zip(MODELS, bare, strict=False), *(v.split("=", 1) for v in values if "=" in v)]
    for name, value in pairs:
        if name not in out:
            raise ValueError(f"--lr: unknown model {name!r}; choose from {', '.join(MODELS)}")
        try:
            out[name] = float(value)
        except ValueError:
            raise ValueError(f"--lr: {value!r} is not a number (for {name})") from None
    return out



def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     parents=[standard_parser()])  # fmt: skip
    parser.add_argument("--molecules", nargs="+", default=list(MOLECULES), choices=MOLECULES)
    parser.add_argument("--n-train", type=int, nargs="+", default=list(TRAIN_SIZES))
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), choices=MODELS,
                        help="models to train (default: %(default)s; mace and nequip need the "
                        "peers extra, see peers.py)")  # fmt: skip
    parser.add_argument("--minutes", type=float, default=3.0,
                        help="training time per model: CPU minutes of its process on a CPU, "
                        "wall minutes on CUDA")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--eval-batch-size", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=100, help="warm-up steps")
    parser.add_argument("--checks", type=int, default=5,
                        help="validations of the EMA weights, evenly spaced over the budget")
    parser.add_argument("--lr", nargs="+", default=[], metavar="[MODEL=]LR",
                        help="peak learning rates, e.g. mace=0.02; bare values go to equivar, "
                        "schnet, dimenet++, mace, nequip in that order (default: each model's "
                        "best in the pilot sweeps of the module docstring, "
                        f"{LEARNING_RATES}; from {LONG_BUDGET_MINUTES:g} minutes on "
                        f"{LONG_BUDGET_LR})")  # fmt: skip
    parser.add_argument("--weight-decay", type=float, default=0.0,
                        help="AdamW weight decay, every model")
    parser.add_argument("--ema-decay", type=float, default=0.99,
                        help="decay of the weights' moving average, every model")
    parser.add_argument("--loss-weights", type=float, nargs=2, default=[1.0, 10.0],
                        metavar=("ENERGY", "FORCES"),
                        help="MSE weights of energy per atom (eV) and force components (eV/A)")
    parser.add_argument("--preset", default="S", choices=["S", "M", "L"], help="equivar's size")
    parser.add_argument("--equivar-option", nargs="+", default=[], type=key_value,
                        metavar="KEY=VALUE",
                        help="extra options of equivar's build('potential', ...), values in "
                        "YAML (e.g. correlation=3 num_channels=64 radial_hidden=[64])")
    parser.add_argument("--pyg-size", default="small", choices=list(PYG_SIZES),
                        help="size of PyG's SchNet and DimeNet++ (small: the stronger at a "
                        "few CPU minutes; paper: for long budgets)")  # fmt: skip
    parser.add_argument("--mace-size", nargs="+", default=[], type=key_value,
                        metavar="KEY=VALUE",
                        help=f"MACE's size, keys and defaults {MACE_SIZE} (peers.py)")
    parser.add_argument("--nequip-size", nargs="+", default=[], type=key_value,
                        metavar="KEY=VALUE",
                        help=f"NequIP's size, keys and defaults {NEQUIP_SIZE} (peers.py)")
    parser.add_argument("--cutoff", type=float, default=5.0, help="every model's cutoff (A)")
    parser.add_argument("--seed", type=int, default=0, help="split, weights and shuffling")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--jobs", type=int, default=1,
                        help="models trained at once, each in its own process")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--merge", nargs="+", metavar="JSON", default=None,
                        help="train nothing: print (and with --json write) one table from the "
                        "rows of earlier --json files, e.g. runs of different molecules")
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args)
    if args.quick:
        args.molecules, args.n_train, args.minutes = ["ethanol"], [50], 0.2
    if args.minutes <= 0:
        parser.error("--minutes must be > 0")
    for name in {"mace", "nequip"} & {m.removesuffix("-own") for m in args.models}:
        if importlib.util.find_spec(name) is None:
            parser.error(f"--models {name}: the package is not installed; see the install lines "
                         "of benchmarks/peers.py (the `peers` extra)")  # fmt: skip
    try:
        args.lr = learning_rates(args.lr, args.minutes)
        size_options(args.mace_size, MACE_SIZE, "--mace-size")
        size_options(args.nequip_size, NEQUIP_SIZE, "--nequip-size")
    except ValueError as exc:
        parser.error(str(exc))
    torch.set_num_threads(args.threads)
    # the most expensive first, so the last ones to finish are short
    cost = {"mace": 0, "nequip": 0, "mace-own": 0, "nequip-own": 0, "dimenet++": 0, "schnet": 1,
            "equivar": 2}
    tasks = sorted(((m, n, name) for m in args.molecules for n in args.n_train
                    for name in args.models),
                   key=lambda t: (cost[t[2]], -t[1]))  # fmt: skip
    t0 = time.perf_counter()
    clock = "CPU" if args.device == "cpu" else "wall"
    done: dict[int, dict] = {}

    def finished(i: int, result: dict) -> None:
        # the JSON holds every run finished so far: a long job stopped half-way keeps them
        # (``--merge`` joins such files)
        done[i] = result
        if args.json:
            save(args, clock, [done[k] for k in sorted(done)])

    if args.jobs > 1:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
            futures = {pool.submit(run_one, task, args): i for i, task in enumerate(tasks)}
            for future in as_completed(futures):
                finished(futures[future], future.result())
    else:
        for i, task in enumerate(tasks):
            finished(i, run_one(task, args))
    results = [done[k] for k in sorted(done)]
    wall = time.perf_counter() - t0
    print(f"\nMD17 (GFN2-xTB, 500 K) test MAE: {args.minutes:g} {clock} min per model, "
          f"{args.threads} thread(s) per process, {args.jobs} process(es) at once on "
          f"{args.device}; {wall / 60:.1f} min wall in all")
    per_model = [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()
                  if k not in ("valid_loss", "n_test", "history")} for r in results]  # fmt: skip
    print_table(per_model)
    print("\nE: total-energy MAE (meV); F: force-component MAE (meV/A); 'F x/equivar': x's force "
          "MAE over equivar's; 2x goal: >= 2 against SchNet and DimeNet++.\nDFT paper "
          "columns: published MD17 force MAE on the original DFT data (1000 frames), "
          "context only:")
    for paper, source in SOURCES.items():
        print(f"  {paper}: {source}")
    rows = summary_rows(results, args)
    print_table(rows)
    print_overall(rows, args.models)


def save(args, clock: str, results: list[dict]) -> None:
    """Write ``--json``: one row per molecule and size, with its runs and the settings."""
    settings = {"minutes": args.minutes, "clock": clock, "batch_size": args.batch_size,
                "lr": {name: args.lr[name] for name in args.models},
                "loss_weights": dict(zip(("energy", "forces"), args.loss_weights, strict=True)),
                "weight_decay": args.weight_decay, "ema_decay": args.ema_decay,
                "preset": args.preset,
                "equivar_options": {**EQUIVAR_OPTIONS, **dict(args.equivar_option)},
                "pyg_size": args.pyg_size,
                "mace_size": size_options(args.mace_size, MACE_SIZE, "--mace-size"),
                "nequip_size": size_options(args.nequip_size, NEQUIP_SIZE, "--nequip-size"),
                "cutoff": args.cutoff, "seed": args.seed, "threads": args.threads,
                "jobs": args.jobs, "device": args.device}  # fmt: skip
    rows = summary_rows(results, args)
    write_json(args.json, "md17", [{**r, "runs": [p for p in results
                                                  if p["molecule"] == r["molecule"]
                                                  and p["n_train"] == r["n_train"]],
                                    **settings} for r in rows])  # fmt: skip


def print_overall(rows: list[dict], models: list[str]) -> None:
    summary = overall(rows, models)
    print("\nover all rows: " + ", ".join(f"{k} {v}" for k, v in summary.items()))


def merge(args) -> None:
    results, settings = merged_results(args.merge)
    if not results:
        raise SystemExit(f"--merge: no per-model runs in {' '.join(args.merge)}")
    args.molecules = [m for m in MOLECULES if any(r["molecule"] == m for r in results)]
    args.n_train = sorted({r["n_train"] for r in results}, reverse=True)
    args.models = [m for m in MODELS if any(r["model"] == m for r in results)]
    rows = summary_rows(results, args)
    print_table(rows)
    print_overall(rows, args.models)
    if args.json:
        write_json(args.json, "md17", [{**r, "runs": [p for p in results
                                                      if p["molecule"] == r["molecule"]
                                                      and p["n_train"] == r["n_train"]],
                                        **settings.get((r["molecule"], r["n_train"]), {})}
                                       for r in rows])  # fmt: skip


if __name__ == "__main__":
    main()
