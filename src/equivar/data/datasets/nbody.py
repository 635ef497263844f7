"""The charged N-body benchmark of NRI / EGNN: cached splits, (input, target) pairs, batches.

The benchmark (Satorras et al. 2021, "nbody_small") gives a model the positions, velocities and
charges at frame 30 of a simulated trajectory and asks for the positions at frame 40, 1000
integration steps later. The trajectories come from the simulator of
:mod:`equivar.data.datasets.nbody_simulation` (forces, integrator, the generator's constants and
random stream are documented there; its names are re-exported here); this module draws the
splits, caches them on disk and serves them as graphs.

Protocol (EGNN's ``dataset_nbody.py``, ``nbody_small``):

* inputs at frame 30 and targets at frame 40;
* splits: the generator draws 10000 training, 2000 validation and 2000 test trajectories, in that
  order, from ``np.random.seed(43)`` (``--seed 43`` of "nbody_small"); the benchmark trains on the
  first 3000 (``--max_training_samples 3000``). No observation noise (``noise_var = 0``).

Layout: trajectories ``pos``/``vel`` [n_traj, n_frames, n_particles, 3] (float64), ``charges``
[n_traj, n_particles]. As graphs (:func:`nbody_batch`), every trajectory is a complete directed
graph without self loops: fields ``pos``, ``vel``, ``charges``, ``edge_index``, ``batch``, ``ptr``
and, for training, ``target_pos`` (and ``target_vel``); the names are those of
:mod:`equivar.keys`.

References:
    Kipf et al., "Neural relational inference for interacting systems", ICML 2018;
    Fuchs et al., "SE(3)-Transformers", NeurIPS 2020; Satorras, Hoogeboom, Welling,
    "E(n) equivariant graph neural networks", ICML 2021 (table 2).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Batch

from equivar import keys
from equivar._suggest import did_you_mean
from equivar.atomic import atomic_write
from equivar.cache import cache_dir as equivar_cache_dir
from equivar.data.datasets.nbody_simulation import (
    PROTOCOL,
    NBodyConfig,
    forces,
    sample_initial_states,
    simulate,
    total_energy,
    total_momentum,
)
from equivar.keys import TARGET_POSITIONS, TARGET_VELOCITIES, VELOCITIES

__all__ = [
    "INPUT_FRAME",
    "NBodyConfig",
    "NBodyDataset",
    "PROTOCOL",
    "SPLIT_SIZES",
    "TARGET_FRAME",
    "TARGET_POSITIONS",
    "TARGET_VELOCITIES",
    "VELOCITIES",
    "cache_dir",
    "complete_graph",
    "forces",
    "generate_trajectories",
    "load_trajectories",
    "nbody_batch",
    "sample_initial_states",
    "simulate",
    "total_energy",
    "total_momentum",
]

#: frames of the benchmark: inputs at 30, targets at 40 (1000 steps later)
INPUT_FRAME, TARGET_FRAME = 30, 40
#: trajectories used per split (the benchmark's training set is the first 3000 generated)
SPLIT_SIZES = {"train": 3000, "val": 2000, "test": 2000}
#: trajectories the generator draws per split, in this order (fixes the random stream)
_DRAWN = {"train": 10000, "val": 2000, "test": 2000}
_CACHE_VERSION = 1


# --- splits and cache -------------------------------------------------------------------------
def _check_split(split: str) -> None:
    if split not in _DRAWN:
        suggestion = did_you_mean(split, _DRAWN)
        hint = f" ({suggestion})" if suggestion else ""
        raise ValueError(f"unknown split {split!r}{hint}; choose one of {list(_DRAWN)}")


def generate_trajectories(
    split: str, num_trajectories: int | None = None, config: NBodyConfig = PROTOCOL,
    chunk: int = 1000,
) -> dict[str, np.ndarray]:
    """Simulate the first ``num_trajectories`` trajectories of a split (no cache; see
    :func:`load_trajectories`).

    Returns:
        ``{"pos", "vel": [n_traj, n_frames, n_particles, 3], "charges": [n_traj, n_particles]}``
    """
    _check_split(split)
    num = SPLIT_SIZES[split] if num_trajectories is None else int(num_trajectories)
    if not 0 < num <= _DRAWN[split]:
        raise ValueError(f"num_trajectories for {split!r} must be in 1..{_DRAWN[split]}, got {num}")
    order = list(_DRAWN)
    counts = [_DRAWN[s] if s != split else num for s in order[: order.index(split) + 1]]
    x0, v0, q = sample_initial_states(counts, config)[-1]
    parts = [
        simulate(x0[s : s + chunk], v0[s : s + chunk], q[s : s + chunk], config.num_frames,
                 config.save_every, config.dt, config.max_force, config.interaction_strength)
        for s in range(0, num, chunk)
    ]  # chunks bound the memory of the [chunk, n, n, 3] pair arrays
    return {
        "pos": np.concatenate([p[0] for p in parts]),
        "vel": np.concatenate([p[1] for p in parts]),
        "charges": q,
    }


def cache_dir(root: str | os.PathLike | None = None) -> Path:
    """Where generated data is cached: ``root``, else equivar's cache root
    (:func:`equivar.cache.cache_dir`: ``$EQUIVAR_CACHE``, else ``$XDG_CACHE_HOME/equivar``, else
    ``~/.cache/equivar``; the older ``$EQUIVAR_CACHE_DIR`` still works, with a
    ``DeprecationWarning``)."""
    if root is not None:
        return Path(root)
    return equivar_cache_dir()


def load_trajectories(
    split: str, num_trajectories: int | None = None, *, root: str | os.PathLike | None = None,
    config: NBodyConfig = PROTOCOL, regenerate: bool = False,
) -> dict[str, np.ndarray]:
    """Trajectories of a split, generated on first use and cached in ``cache_dir(root)/nbody``.

    The cache file is named by a hash of the config and the split size, written atomically, and
    regenerated when missing, unreadable or ``regenerate=True``. The split sizes
    (:data:`SPLIT_SIZES`) take about a minute to generate on one CPU core.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.
        num_trajectories: the first n (default: the protocol's size of the split).
        root: cache folder (see :func:`cache_dir`).
        config: simulation constants (default: the benchmark's).
        regenerate: ignore and overwrite an existing cache file.

    Returns:
        ``{"pos", "vel": [n_traj, n_frames, n_particles, 3], "charges": [n_traj, n_particles]}``
        (float64).
    """
    _check_split(split)
    num = SPLIT_SIZES[split] if num_trajectories is None else int(num_trajectories)
    meta = {"version": _CACHE_VERSION, "split": split, "num": num, **asdict(config)}
    digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:12]
    folder = cache_dir(root) / "nbody"
    path = folder / f"charged{config.num_particles}_{split}_{num}_{digest}.npz"
    if path.exists() and not regenerate:
        try:
            with np.load(path) as f:
                return {k: f[k] for k in ("pos", "vel", "charges")}
        except (OSError, KeyError, ValueError):
            pass  # unreadable (e.g. a partial copy): regenerate below
    data = generate_trajectories(split, num, config)
    # atomic: readers never see a partial file
    atomic_write(path, lambda f: np.savez(f, **data, meta=json.dumps(meta)))
    return data


# --- graphs -----------------------------------------------------------------------------------
def complete_graph(num_graphs: int, num_particles: int, device=None) -> torch.Tensor:
    """Edges of ``num_graphs`` complete directed graphs without self loops, node-blocked.

    Shapes:
        -> [2, num_graphs * num_particles * (num_particles - 1)] int64 (sender, receiver)
    """
    idx = torch.arange(num_particles, device=device)
    send, recv = torch.meshgrid(idx, idx, indexing="xy")  # recv-major, like a radius graph
    mask = send != recv
    one = torch.stack([send[mask], recv[mask]])  # [2, n (n - 1)]
    offsets = torch.arange(num_graphs, device=device) * num_particles  # [num_graphs]
    return (one[:, None, :] + offsets[None, :, None]).reshape(2, -1)


def nbody_batch(
    pos: torch.Tensor, vel: torch.Tensor, charges: torch.Tensor,
    target_pos: torch.Tensor | None = None, target_vel: torch.Tensor | None = None,
) -> Batch:
    """A PyG ``Batch`` of complete graphs from dense per-system tensors (no per-graph Python).

    Args:
        pos, vel: states of ``n_graphs`` systems.
        charges: charges of their particles.
        target_pos, target_vel: optional training targets, stored as ``target_pos`` and
            ``target_vel``.

    Shapes:
        pos, vel, target_*: [n_graphs, n_particles, 3], charges: [n_graphs, n_particles]
        -> Batch with pos, vel [n_nodes, 3], charges [n_nodes], edge_index [2, n_edges],
        batch [n_nodes], ptr [n_graphs + 1]

    Example:
        >>> b = nbody_batch(torch.zeros(2, 5, 3), torch.zeros(2, 5, 3), torch.ones(2, 5))
        >>> b.num_graphs, b.edge_index.shape
        (2, torch.Size([2, 40]))
    """
    if pos.dim() != 3 or pos.shape[-1] != 3 or vel.shape != pos.shape:
        raise ValueError(f"pos and vel must both have shape [n_graphs, n_particles, 3]; got "
                         f"{list(pos.shape)} and {list(vel.shape)}")
    n_graphs, n = pos.shape[:2]
    if charges.shape != (n_graphs, n):
        raise ValueError(f"charges must have shape [{n_graphs}, {n}], got {list(charges.shape)}")
    device = pos.device
    fields = {
        keys.POSITIONS: pos.reshape(-1, 3),
        keys.VELOCITIES: vel.reshape(-1, 3),
        keys.CHARGES: charges.reshape(-1).to(pos.dtype),
        keys.EDGE_INDEX: complete_graph(n_graphs, n, device),
        keys.BATCH: torch.arange(n_graphs, device=device).repeat_interleave(n),
        keys.PTR: torch.arange(n_graphs + 1, device=device) * n,
    }
    if target_pos is not None:
        fields[keys.TARGET_POSITIONS] = target_pos.reshape(-1, 3)
    if target_vel is not None:
        fields[keys.TARGET_VELOCITIES] = target_vel.reshape(-1, 3)
    return Batch(**fields)


class NBodyDataset:
    """One split of the charged N-body benchmark as (input frame, target frame) pairs.

    Each sample is a system at ``input_frame`` with its positions ``horizon`` frames later (and
    velocities, for one-step models used in rollouts). The default is the benchmark: frame 30 ->
    frame 40. ``input_frames=range(0, 49 - horizon)`` gives every pair of a trajectory, to train
    a one-step model for :func:`equivar.simulate.rollout`.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.
        num_trajectories: use the first n trajectories (default: the protocol's split size).
        input_frames: frames the inputs are taken from (default ``(30,)``).
        horizon: frames between input and target (default 10, i.e. 1000 steps).
        dtype: dtype of the tensors (default float32).
        root: cache folder (see :func:`cache_dir`); ``config``: simulation constants.
        trajectories: use these arrays (as from :func:`load_trajectories`) instead of the cache.

    Shapes:
        pos, vel, target_pos, target_vel: [n_samples, n_particles, 3]; charges: [n_samples,
        n_particles]; ``n_samples = n_traj * len(input_frames)``, trajectory-major.

    Example:
        >>> ds = NBodyDataset("test", num_trajectories=4)  # doctest: +SKIP
        >>> batch = next(ds.batches(2)); batch.num_graphs  # doctest: +SKIP
        2
    """

    def __init__(
        self,
        split: str,
        num_trajectories: int | None = None,
        *,
        input_frames: Sequence[int] = (INPUT_FRAME,),
        horizon: int = TARGET_FRAME - INPUT_FRAME,
        dtype: torch.dtype = torch.float32,
        root: str | os.PathLike | None = None,
        config: NBodyConfig = PROTOCOL,
        trajectories: dict[str, np.ndarray] | None = None,
    ) -> None:
        data = trajectories if trajectories is not None else load_trajectories(
            split, num_trajectories, root=root, config=config)
        frames = np.asarray(list(input_frames), dtype=np.int64)
        n_frames = data["pos"].shape[1]
        bad = frames.size == 0 or frames.min() < 0 or frames.max() + horizon >= n_frames
        if horizon < 1 or bad:
            raise ValueError(f"input_frames {frames.tolist()} + horizon {horizon} must lie in the "
                             f"{n_frames} saved frames (0..{n_frames - 1})")
        self.split, self.horizon, self.input_frames = split, int(horizon), frames.tolist()

        def take(a: np.ndarray, f: np.ndarray) -> torch.Tensor:  # [n_traj * n_f, n, 3]
            return torch.as_tensor(a[:, f].reshape(-1, *a.shape[2:]), dtype=dtype)

        self.pos, self.vel = take(data["pos"], frames), take(data["vel"], frames)
        self.target_pos = take(data["pos"], frames + horizon)
        self.target_vel = take(data["vel"], frames + horizon)
        q = np.repeat(data["charges"], len(frames), axis=0)  # [n_samples, n]
        self.charges = torch.as_tensor(q, dtype=dtype)
        self.num_trajectories = int(data["pos"].shape[0])

    def __len__(self) -> int:
        return self.pos.shape[0]

    def subset(self, num_trajectories: int) -> NBodyDataset:
        """The samples of the first ``num_trajectories`` trajectories (tensors are views)."""
        if not 0 < num_trajectories <= self.num_trajectories:
            raise ValueError(f"num_trajectories must be in 1..{self.num_trajectories}, "
                             f"got {num_trajectories}")
        new = copy.copy(self)
        stop = num_trajectories * len(self.input_frames)
        for name in ("pos", "vel", "target_pos", "target_vel", "charges"):
            setattr(new, name, getattr(self, name)[:stop])
        new.num_trajectories = int(num_trajectories)
        return new

    def batch(self, index: torch.Tensor | Sequence[int] | slice) -> Batch:
        """The samples at ``index`` as one :func:`nbody_batch`."""
        return nbody_batch(self.pos[index], self.vel[index], self.charges[index],
                           self.target_pos[index], self.target_vel[index])

    def __getitem__(self, i: int) -> Batch:
        return self.batch(slice(i, i + 1))

    def batches(
        self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[Batch]:
        """Iterate over the split in batches (shuffled with ``generator`` if asked)."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            yield self.batch(order[start : start + batch_size])

    def __repr__(self) -> str:
        f = self.input_frames
        frames = f"{f}" if len(f) < 4 else f"[{f[0]}, ..., {f[-1]}]"
        return (f"{type(self).__name__}(split={self.split!r}, trajectories="
                f"{self.num_trajectories}, input_frames={frames}, horizon={self.horizon}, "
                f"samples={len(self)})")
