"""MACE and NequIP from PyPI as potentials on equivar's batches: the peers of ``md17.py`` and
``train_speed.py``, trained by the same loop as equivar, SchNet and DimeNet++.

Each wrapper maps a PyG batch of ``load_md17`` (``pos``, ``z``, ``edge_index`` with ``shifts`` and
``cell``, ``batch``, ``ptr``) to the package's own input dict and returns ``{"energy":
[n_graphs], "forces": [n_nodes, 3]}`` like every model of ``md17.py``. The graph (cutoff,
neighbours) is equivar's, so every model sees the same edges. Energies are on the same scale as
the other models: ``E = s * out + sum_atoms e[z]`` with the per-element energies ``e`` and the RMS
force ``s`` of the training set (``equivar.data.compute_statistics``) - for MACE what its own
``--model MACE`` does (``ScaleShiftMACE``, ``atomic_inter_scale`` = RMS force, shift 0, ``E0s``
fixed), for NequIP its ``per_type_energy_scales`` / ``per_type_energy_shifts`` (not trainable,
its default). Forces are ``-dE/dpos`` by each package's own autograd code.

Edge conventions (the one place they are translated):

- equivar: ``edge_index[0]`` = sender j, ``edge_index[1]`` = receiver i,
  ``edge_vec = pos[j] - pos[i] + shifts @ cell`` (from the centre to the neighbour).
- MACE: ``edge_index[0]`` = sender, ``edge_index[1]`` = receiver (messages summed onto it), as
  equivar, but ``vectors = pos[receiver] - pos[sender] + shifts`` (Cartesian shifts, pointing from
  the neighbour to the centre): same ``edge_index``, ``shifts = -(shifts @ cell)``. MACE then sees
  exactly the vectors its own neighbour list (matscipy) would give it.
- NequIP: ``edge_index[0]`` = centre (receiver), ``edge_index[1]`` = neighbour,
  ``edge_vec = pos[edge_index[1]] - pos[edge_index[0]] + edge_cell_shift @ cell``: equivar's
  ``edge_index`` flipped, the same integer shifts and vectors.

Install (pip cannot express ``--no-deps`` in an extra; the ``peers`` extra of pyproject.toml
lists the rest: what ``import mace.modules`` needs beyond equivar's own dependencies, and nequip)::

    pip install --no-deps mace-torch==0.3.16   # pins e3nn==0.4.4; runs unchanged on e3nn 0.6
    pip install -e ".[peers]"   # torch-ema torchmetrics opt_einsum matplotlib pandas nequip>=0.19

NequIP 0.19 needs its global state (``set_global_state``): it sets torch's default dtype to
float64 and reseeds every generator. ``nequip_potential`` builds inside ``_nequip_state``, which
restores the default dtype and the random states afterwards, so models built later in the same
process (``md17.py --jobs 1``) are unaffected. NequIP computes in ``model_dtype`` (float32 by
default here) with positions, edge vectors and energy sums in float64, its own design; forces
come back in the batch's dtype.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Recipe  # noqa: E402

#: MACE's size in the benchmarks: 32 channels of l <= 1 features (``hidden_irreps`` 32x0e+32x1o),
#: product-basis correlation 3, two interactions, spherical harmonics up to l = 3, 8 Bessel
#: functions, radial MLP [64, 64, 64], readout MLP 16x0e (mace-torch's defaults otherwise):
#: matched to equivar's preset S (32 channels, correlation 3, two layers)
MACE_SIZE = {"channels": 32, "max_L": 1, "correlation": 3}
#: NequIP's size: 32 features per irrep up to l = 1 with both parities, 4 layers (NequIP's own
#: ``NequIPGNNModel`` defaults), radial MLP one layer of 128, 8 Bessel functions
NEQUIP_SIZE = {"features": 32, "l_max": 1, "layers": 4}

#: MACE's own recipe: mace-torch 0.3.16's ``mace_run_train`` defaults with ``--ema --stage_two``
#: (``mace/tools/arg_parser.py``): float64, Adam with AMSGrad, lr 0.01 (``md17.LEARNING_RATES``),
#: weight decay 5e-7 (L2; mace-torch decays only some weights), ReduceLROnPlateau (factor 0.8,
#: patience 50 epochs) on the validation loss, clipping at 10, EMA 0.99, batch 10, loss weights
#: energy 1 / forces 100 (per-atom energy MSE + force-component MSE, as mace's
#: ``WeightedEnergyForcesLoss``), and stage two for the last quarter of the budget (mace-torch:
#: of the epochs): energy weight 1000, forces 100, lr 1e-3 (mace-torch anneals to it over one
#: epoch; here at once). No warm-up.
MACE_RECIPE = Recipe(
    name="mace-torch 0.3.16 defaults, --ema --stage_two", optimizer="amsgrad",
    weight_decay=5e-7, warmup=0, schedule="plateau", plateau=(0.8, 50, 1e-4, 0.0),
    monitor="loss", clip=10.0, ema_decay=0.99, loss_weights=(1.0, 100.0), stage_two_at=0.75,
    stage_two_lr=1e-3, stage_two_weights=(1000.0, 100.0), dtype="float64", batch_size=10,
)  # fmt: skip
#: NequIP's own recipe: its ``configs/tutorial.yaml`` (nequip 0.19): Adam lr 0.01, no weight
#: decay, ReduceLROnPlateau (factor 0.6, patience 5 epochs, threshold 0.2, min lr 1e-6) on the
#: validation energy MAE + force MAE (its ``weighted_sum``), no clipping, EMA 0.999, batch 5,
#: per-atom energy MSE and force MSE weighted 1 and 1, ``model_dtype`` float32. No warm-up.
NEQUIP_RECIPE = Recipe(
    name="nequip 0.19 configs/tutorial.yaml", optimizer="adam", weight_decay=0.0, warmup=0,
    schedule="plateau", plateau=(0.6, 5, 0.2, 1e-6), monitor="mae", clip=None,
    ema_decay=0.999, loss_weights=(1.0, 1.0), dtype="float32", batch_size=5,
)  # fmt: skip
RECIPES = {"mace": MACE_RECIPE, "nequip": NEQUIP_RECIPE}

_SYMBOLS = ("X H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn "
            "Ga Ge As Se Br Kr").split()  # fmt: skip


def size_options(given: list[tuple[str, object]], defaults: dict[str, int], flag: str) -> dict:
    """``defaults`` updated by ``KEY=VALUE`` pairs of a ``--*-size`` flag (keys checked)."""
    out = dict(defaults)
    for key, value in given:
        if key not in defaults:
            raise ValueError(f"{flag}: unknown key {key!r}; choose from {sorted(defaults)}")
        out[key] = int(value)
    return out


def _species_index(species: list[int]) -> torch.Tensor:
    """``[119]`` table: atomic number -> column of the one-hot species (-1: not a species)."""
    table = torch.full((119,), -1, dtype=torch.long)
    table[torch.tensor(species, dtype=torch.long)] = torch.arange(len(species))
    return table


def _ptr(batch) -> torch.Tensor:
    """``[n_graphs + 1]`` node offsets of the graphs (PyG's ``ptr``; computed for a plain Data)."""
    ptr = getattr(batch, "ptr", None)
    if ptr is not None:
        return ptr
    counts = torch.bincount(batch.batch, minlength=batch.num_graphs)  # [n_graphs]
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)])


class MacePotential(nn.Module):
    """mace-torch's ``ScaleShiftMACE`` on equivar's batches (see the module docstring).

    Args:
        species: atomic numbers, in the order of the one-hot ``node_attrs``.
        atomic_energies: ``{z: e}`` per-element energies (eV), MACE's fixed ``E0s``.
        scale: RMS training force (eV/A), ``atomic_inter_scale``.
        avg_num_neighbors: mean edges per atom of the training set.
        cutoff: ``r_max`` (A), the cutoff of the batches' graphs.
        channels, max_L, correlation: ``MACE_SIZE``.

    Shapes:
        batch with ``pos [n_nodes, 3]``, ``z [n_nodes]``, ``edge_index [2, n_edges]``,
        ``shifts [n_edges, 3]``, ``cell [n_graphs, 3, 3]`` -> ``energy [n_graphs]``,
        ``forces [n_nodes, 3]``.
    """

    def __init__(self, species: list[int], atomic_energies: dict[int, float], scale: float,
                 avg_num_neighbors: float, cutoff: float, *, channels: int = 32, max_L: int = 1,
                 correlation: int = 3) -> None:  # fmt: skip
        super().__init__()
        import numpy as np
        from e3nn import o3
        from mace import modules

        hidden = o3.Irreps((channels * o3.Irreps.spherical_harmonics(max_L)).sort().irreps
                           .simplify())  # as mace's --num_channels/--max_L: 32x0e+32x1o
        # mace-torch's `--model MACE` (tools/model_script_utils.py) with its CLI defaults
        self.model = modules.ScaleShiftMACE(
            r_max=cutoff, num_bessel=8, num_polynomial_cutoff=5, max_ell=3,
            interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
            interaction_cls_first=modules.interaction_classes["RealAgnosticInteractionBlock"],
            num_interactions=2, num_elements=len(species), hidden_irreps=hidden,
            MLP_irreps=o3.Irreps("16x0e"), gate=modules.gate_dict["silu"],
            atomic_energies=np.array([atomic_energies[z] for z in species]),
            avg_num_neighbors=avg_num_neighbors, atomic_numbers=list(species),
            correlation=correlation, radial_MLP=[64, 64, 64], use_reduced_cg=False,
            atomic_inter_scale=scale, atomic_inter_shift=0.0,
        )  # fmt: skip
        self.register_buffer("species_index", _species_index(species), persistent=False)
        self.num_species = len(species)

    def forward(self, batch, *, create_graph: bool | None = None) -> dict[str, torch.Tensor]:
        if create_graph is None:
            create_graph = self.training
        dtype = next(self.model.parameters()).dtype
        pos = batch.pos.detach().to(dtype).requires_grad_(True)  # [n_nodes, 3] MACE's leaf
        receiver = batch.edge_index[1]  # [n_edges]
        cell = batch.cell.to(dtype)  # [n_graphs, 3, 3]
        # MACE's vector points from the neighbour image to the centre: minus equivar's shift
        shifts = -torch.einsum("ek,ekl->el", batch.shifts.to(dtype),
                               cell[batch.batch[receiver]])  # [n_edges, 3]  # fmt: skip
        node_attrs = nn.functional.one_hot(self.species_index[batch.z], self.num_species)
        data = {"positions": pos, "node_attrs": node_attrs.to(dtype),  # [n_nodes, n_species]
                "edge_index": batch.edge_index, "shifts": shifts,
                "unit_shifts": -batch.shifts.to(dtype), "cell": cell.reshape(-1, 3),
                "batch": batch.batch, "ptr": _ptr(batch)}  # fmt: skip
        with torch.enable_grad():
            out = self.model(data, training=create_graph, compute_force=True)
        result = {"energy": out["energy"].to(batch.pos.dtype),  # [n_graphs]
                  "forces": out["forces"].to(batch.pos.dtype)}  # [n_nodes, 3]  # fmt: skip
        return result if create_graph else {k: v.detach() for k, v in result.items()}


@contextlib.contextmanager
def _nequip_state():
    """NequIP's ``set_global_state`` (needed once before building) without leaking its global
    default dtype (float64), e3nn's optimisation defaults (TorchScript mode: later e3nn modules,
    ours too, would hold unpicklable ScriptFunctions), reseeded generators (torch, numpy,
    random), ``torch._dynamo`` capture flags and the ``file_system`` sharing strategy of
    ``torch.multiprocessing`` to the rest of the process. (It also sets a TorchScript fusion
    strategy, which changes no result.)"""
    import random

    import e3nn
    import numpy as np
    from nequip.utils.global_state import set_global_state
    from torch._dynamo import config as dynamo

    dtype = torch.get_default_dtype()
    e3nn_defaults = e3nn.get_optimization_defaults()  # it switches e3nn to TorchScript
    sharing = torch.multiprocessing.get_sharing_strategy()
    states = random.getstate(), np.random.get_state()
    flags = {k: getattr(dynamo, k) for k in ("capture_dynamic_output_shape_ops",
                                             "capture_scalar_outputs")}  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        try:
            set_global_state()
            yield
        finally:
            torch.set_default_dtype(dtype)
            e3nn.set_optimization_defaults(**e3nn_defaults)
            torch.multiprocessing.set_sharing_strategy(sharing)
            random.setstate(states[0])
            np.random.set_state(states[1])
            for key, value in flags.items():
                setattr(dynamo, key, value)


class NequipPotential(nn.Module):
    """nequip's ``NequIPGNNModel`` (nequip >= 0.10 API) on equivar's batches.

    Args:
        species: atomic numbers (NequIP's ``type_names`` are their symbols, in this order).
        atomic_energies: ``{z: e}`` per-element energies (eV), ``per_type_energy_shifts``.
        scale: RMS training force (eV/A), ``per_type_energy_scales`` (one for all types).
        avg_num_neighbors: mean edges per atom of the training set.
        cutoff: ``r_max`` (A).
        features, l_max, layers: ``NEQUIP_SIZE``.
        seed: NequIP's model seed (initial weights).
        dtype: ``model_dtype``, ``torch.float32`` or ``torch.float64``.

    Shapes:
        as :class:`MacePotential`.
    """

    def __init__(self, species: list[int], atomic_energies: dict[int, float], scale: float,
                 avg_num_neighbors: float, cutoff: float, *, features: int = 32, l_max: int = 1,
                 layers: int = 4, seed: int = 0,
                 dtype: torch.dtype = torch.float32) -> None:  # fmt: skip
        super().__init__()
        from nequip.model import NequIPGNNModel

        names = [_SYMBOLS[z] for z in species]
        with _nequip_state():
            self.model = NequIPGNNModel(
                seed=seed, model_dtype=str(dtype).removeprefix("torch."), r_max=cutoff,
                type_names=names, num_layers=layers, l_max=l_max, num_features=features,
                avg_num_neighbors=avg_num_neighbors, per_type_energy_scales=scale,
                per_type_energy_shifts={n: atomic_energies[z] for n, z in zip(names, species,
                                                                              strict=True)},
            )  # fmt: skip
        self.register_buffer("species_index", _species_index(species), persistent=False)

    def forward(self, batch, *, create_graph: bool | None = None) -> dict[str, torch.Tensor]:
        if create_graph is None:
            create_graph = self.training
        # NequIP keeps positions, cell and energy sums in float64 and differentiates with
        # create_graph=self.training: its modules have no other train/eval behaviour
        self.model.train(create_graph)
        data = {"pos": batch.pos.detach().double(),  # [n_nodes, 3]
                "edge_index": batch.edge_index.flip(0),  # [2, n_edges] (centre, neighbour)
                "edge_cell_shift": batch.shifts.double(),  # [n_edges, 3]
                "cell": batch.cell.double(),  # [n_graphs, 3, 3]
                "batch": batch.batch,
                "num_atoms": torch.bincount(batch.batch, minlength=batch.num_graphs),
                "atom_types": self.species_index[batch.z]}  # fmt: skip
        try:
            with torch.enable_grad():
                out = self.model(data)
        finally:
            self.model.train(self.training)
        result = {"energy": out["total_energy"].reshape(-1).to(batch.pos.dtype),  # [n_graphs]
                  "forces": out["forces"].to(batch.pos.dtype)}  # [n_nodes, 3]  # fmt: skip
        return result if create_graph else {k: v.detach() for k, v in result.items()}


def _statistics(stats) -> tuple[list[int], dict[int, float], float, float]:
    species = [int(z) for z in stats.species]
    energies = {int(z): float(e) for z, e in stats.atomic_energies.items()}
    return species, energies, float(stats.forces_rms), float(stats.mean_num_neighbors)


def mace_potential(stats, cutoff: float, **size) -> MacePotential:
    """A :class:`MacePotential` for the training statistics ``stats``
    (``equivar.data.compute_statistics``) of size ``MACE_SIZE`` updated by ``size``."""
    return MacePotential(*_statistics(stats), cutoff, **{**MACE_SIZE, **size})


def nequip_potential(stats, cutoff: float, *, seed: int = 0,
                     dtype: torch.dtype = torch.float32, **size) -> NequipPotential:  # fmt: skip
    """A :class:`NequipPotential` for ``stats``, of size ``NEQUIP_SIZE`` updated by ``size``."""
    return NequipPotential(*_statistics(stats), cutoff, seed=seed, dtype=dtype,
                           **{**NEQUIP_SIZE, **size})  # fmt: skip
