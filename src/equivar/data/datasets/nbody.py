"""The charged N-body system of the NRI / EGNN benchmark: simulator, cached splits, batches.

Five particles with charges +-1 move under pairwise Coulomb-like forces
:math:`F_i = c \\sum_{j \\ne i} q_i q_j (x_i - x_j) / |x_i - x_j|^3` (unit masses, no walls). The
benchmark (Satorras et al. 2021, "nbody_small") gives a model the positions, velocities and
charges at frame 30 of a simulated trajectory and asks for the positions at frame 40, 1000
integration steps later. This module reimplements the generator in numpy, vectorised over
trajectories, and caches the splits on disk.

Protocol constants (all from the EGNN generator, ``n_body_system/dataset`` of
github.com/vgsatorras/egnn, itself the 3-D version of NRI's ``ChargedParticlesSim``, Kipf et al.
2018; cross-checked with ``BENCHMARKS.md``):

* ``num_particles = 5``, ``dim = 3``;
* charges drawn from ``(-1, 0, +1)`` with probabilities ``(1/2, 0, 1/2)``: +-1 each w.p. 1/2;
* ``loc_std = 1.0``: initial positions ~ N(0, 1) per coordinate (the generator scales the std by
  ``(n / 5) ** (1/3)``, which is 1 for five particles);
* ``vel_norm = 0.5``: initial velocities have a uniformly random direction and speed exactly 0.5
  (a Gaussian vector rescaled per particle);
* ``box_size = 5.0``: walls reflect coordinates beyond +-5 (and flip that velocity component)
  once, on the initial state only (the clamp inside the integration loop is disabled upstream);
  with N(0, 1) positions this almost never triggers;
* ``interaction_strength = 1.0``;
* ``dt = 0.001`` and force components clipped to ``+-max_force = +-0.1 / dt = +-100``;
* integrator: one kick ``v += dt F(x)`` from the initial state, then per step a drift
  ``x += dt v``, a save when due, and a kick; so saved velocities lag positions by half a step;
* ``num_steps = 5000`` saved every ``save_every = 100``: 49 frames, the first save overwriting the
  initial state, so frame ``k`` is the state after step ``100 (k + 1)``;
* inputs at frame 30 and targets at frame 40 (``dataset_nbody.py``, ``nbody_small``);
* splits: the generator draws 10000 training, 2000 validation and 2000 test trajectories, in that
  order, from ``np.random.seed(43)`` (``--seed 43`` of "nbody_small"); the benchmark trains on the
  first 3000 (``--max_training_samples 3000``). No observation noise (``noise_var = 0``).

Random stream: the initial states are drawn here with the legacy ``np.random.RandomState(43)`` in
the generator's order (per trajectory: charges, positions, velocities, then the two zero-scaled
noise arrays, which still consume draws), so they follow the published files draw for draw. This
was not checked against the published ``.npy`` files (not available offline), and trajectories
integrated with a different summation order can drift apart after close encounters (the system is
chaotic), so treat the data as statistically, not bitwise, identical to the published set.

Layout: trajectories ``pos``/``vel`` [n_traj, n_frames, n_particles, 3] (float64), ``charges``
[n_traj, n_particles]. As graphs (:func:`nbody_batch`), every trajectory is a complete directed
graph without self loops: fields ``pos``, ``vel``, ``charges``, ``edge_index``, ``batch``, ``ptr``
and, for training, ``target_pos`` (and ``target_vel``).

References:
    Kipf et al., "Neural relational inference for interacting systems", ICML 2018;
    Fuchs et al., "SE(3)-Transformers", NeurIPS 2020; Satorras, Hoogeboom, Welling,
    "E(n) equivariant graph neural networks", ICML 2021 (table 2).
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Batch

from equivar import keys
from equivar.cache import cache_dir as equivar_cache_dir

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

# --- fields -----------------------------------------------------------------------------------
VELOCITIES = keys.VELOCITIES  # [n_nodes, 3] float | particle velocities (length / time)
TARGET_POSITIONS = "target_pos"  # [n_nodes, 3] float | positions to predict (training target)
TARGET_VELOCITIES = "target_vel"  # [n_nodes, 3] float | velocities to predict (training target)

#: frames of the benchmark: inputs at 30, targets at 40 (1000 steps later)
INPUT_FRAME, TARGET_FRAME = 30, 40
#: trajectories used per split (the benchmark's training set is the first 3000 generated)
SPLIT_SIZES = {"train": 3000, "val": 2000, "test": 2000}
#: trajectories the generator draws per split, in this order (fixes the random stream)
_DRAWN = {"train": 10000, "val": 2000, "test": 2000}
_CACHE_VERSION = 1


@dataclass(frozen=True)
class NBodyConfig:
    """Constants of the charged-particle simulation (defaults: the benchmark; see module doc).

    Args:
        num_particles: particles per system (5).
        loc_std: std of the initial positions per coordinate (1.0).
        vel_norm: initial speed of every particle (0.5).
        box_size: walls at +-box_size, applied to the initial state only (5.0).
        interaction_strength: prefactor ``c`` of the forces (1.0).
        dt: time step (0.001).
        max_force: clip of every force component (``0.1 / dt = 100``); None disables it.
        num_steps: integration steps of a trajectory (5000).
        save_every: steps between saved frames (100); ``num_steps / save_every - 1`` frames.
        seed: seed of the legacy ``RandomState`` stream (43).
    """

    num_particles: int = 5
    loc_std: float = 1.0
    vel_norm: float = 0.5
    box_size: float = 5.0
    interaction_strength: float = 1.0
    dt: float = 0.001
    max_force: float | None = 100.0
    num_steps: int = 5000
    save_every: int = 100
    seed: int = 43

    def __post_init__(self) -> None:
        if self.num_particles < 2:
            raise ValueError(f"num_particles must be >= 2, got {self.num_particles}")
        if self.save_every < 1 or self.num_steps % self.save_every:
            raise ValueError(f"num_steps ({self.num_steps}) must be a positive multiple of "
                             f"save_every ({self.save_every})")
        if self.num_frames < 1:
            raise ValueError("num_steps / save_every must be >= 2 (at least one saved frame)")
        if not self.dt > 0:
            raise ValueError(f"dt must be > 0, got {self.dt}")

    @property
    def num_frames(self) -> int:
        """Saved frames: ``num_steps / save_every - 1`` (49 for the benchmark)."""
        return self.num_steps // self.save_every - 1


#: the benchmark's configuration
PROTOCOL = NBodyConfig()


# --- physics ----------------------------------------------------------------------------------
def forces(
    pos: np.ndarray, charges: np.ndarray, interaction_strength: float = 1.0,
    max_force: float | None = None,
) -> np.ndarray:
    """Coulomb-like forces ``c sum_j q_i q_j (x_i - x_j) / r_ij^3``, components clipped.

    Shapes:
        pos: [..., n_particles, 3], charges: [..., n_particles] -> [..., n_particles, 3]
    """
    diff = pos[..., :, None, :] - pos[..., None, :, :]  # [..., n, n, 3] x_i - x_j
    r2 = np.einsum("...k,...k->...", diff, diff)  # [..., n, n]
    n = pos.shape[-2]
    r2 = r2 + np.diag(np.full(n, np.inf))  # self pairs -> r = inf -> no force, no warning
    size = interaction_strength * charges[..., :, None] * charges[..., None, :] * r2**-1.5
    f = np.einsum("...ij,...ijk->...ik", size, diff)  # [..., n, 3]
    if max_force is not None:
        np.clip(f, -max_force, max_force, out=f)
    return f


def total_energy(
    pos: np.ndarray, vel: np.ndarray, charges: np.ndarray, interaction_strength: float = 1.0
) -> np.ndarray:
    """Kinetic plus pair energy ``sum_i |v_i|^2 / 2 + c sum_{i<j} q_i q_j / r_ij`` (unit masses).

    Particles on the same spot give +-inf (no warning).

    Shapes:
        pos, vel: [..., n_particles, 3], charges: [..., n_particles] (broadcast against pos)
        -> [...]
    """
    pos, vel, charges = np.asarray(pos), np.asarray(vel), np.asarray(charges)
    kinetic = 0.5 * (vel**2).sum(axis=(-1, -2))
    diff = pos[..., :, None, :] - pos[..., None, :, :]  # [..., n, n, 3]
    r = np.sqrt((diff**2).sum(-1) + np.diag(np.full(pos.shape[-2], np.inf)))  # [..., n, n]
    qq = charges[..., :, None] * charges[..., None, :]  # [..., n, n]
    with np.errstate(divide="ignore", invalid="ignore"):
        potential = 0.5 * interaction_strength * (qq / r).sum(axis=(-1, -2))
    return kinetic + potential


def total_momentum(vel: np.ndarray) -> np.ndarray:
    """Total momentum ``sum_i v_i`` (unit masses). Shapes: [..., n_particles, 3] -> [..., 3]."""
    return np.asarray(vel).sum(axis=-2)


def simulate(
    pos: np.ndarray,
    vel: np.ndarray,
    charges: np.ndarray,
    num_frames: int,
    save_every: int = PROTOCOL.save_every,
    dt: float = PROTOCOL.dt,
    max_force: float | None = PROTOCOL.max_force,
    interaction_strength: float = PROTOCOL.interaction_strength,
) -> tuple[np.ndarray, np.ndarray]:
    """Integrate many systems at once with the benchmark's kick-drift leapfrog.

    ``v += dt F(x)`` once, then per step ``x += dt v``, save every ``save_every`` steps, and
    ``v += dt F(x)``. Frame ``k`` is the state after step ``save_every (k + 1)``. Because a saved
    velocity is the one before the next kick, calling ``simulate`` on a saved frame continues the
    trajectory exactly: frame ``k`` of a run started at saved frame ``m`` is frame ``m + k + 1``.

    Args:
        pos, vel, charges: initial states (not modified).
        num_frames: frames to save.
        save_every: steps between frames (default 100).
        dt: time step (default 0.001).
        max_force: clip of each force component (default 100); None for exact Coulomb forces.
        interaction_strength: force prefactor (default 1).

    Returns:
        ``(pos, vel)`` at the saved frames.

    Shapes:
        pos, vel: [n_traj, n_particles, 3], charges: [n_traj, n_particles]
        -> [n_traj, num_frames, n_particles, 3] each

    Example:
        >>> x0 = np.array([[[0.0, 0, 0], [1, 0, 0]]]); v0 = np.zeros_like(x0)
        >>> x, v = simulate(x0, v0, np.array([[1.0, -1.0]]), num_frames=2, save_every=10)
        >>> x.shape, np.allclose(v.sum(-2), 0.0)  # opposite charges attract; momentum stays 0
        ((1, 2, 2, 3), True)
    """
    x = np.array(pos, dtype=np.float64)
    v = np.array(vel, dtype=np.float64)
    q = np.asarray(charges, dtype=np.float64)
    if x.ndim != 3 or x.shape[-1] != 3 or v.shape != x.shape or q.shape != x.shape[:2]:
        raise ValueError(f"simulate needs pos, vel [n_traj, n, 3] and charges [n_traj, n]; got "
                         f"{list(x.shape)}, {list(v.shape)}, {list(q.shape)}")
    out_x = np.empty((x.shape[0], num_frames, *x.shape[1:]))
    out_v = np.empty_like(out_x)
    v += dt * forces(x, q, interaction_strength, max_force)
    for step in range(1, num_frames * save_every + 1):
        x += dt * v
        if step % save_every == 0:
            k = step // save_every - 1
            out_x[:, k], out_v[:, k] = x, v
        v += dt * forces(x, q, interaction_strength, max_force)
    return out_x, out_v


# --- data generation --------------------------------------------------------------------------
def _reflect_into_box(x: np.ndarray, v: np.ndarray, box: float) -> None:
    """The generator's wall, in place: coordinates beyond +-box reflect, velocities turn back."""
    over, under = x > box, x < -box
    x[over] = 2 * box - x[over]
    v[over] = -np.abs(v[over])
    x[under] = -2 * box - x[under]
    v[under] = np.abs(v[under])


def sample_initial_states(
    counts: Sequence[int], config: NBodyConfig = PROTOCOL
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Initial states of consecutive blocks of trajectories from the generator's random stream.

    The legacy ``RandomState(config.seed)`` is consumed exactly as the EGNN generator consumes
    the global one: per trajectory, the charges, positions ``[3, n]``, velocities ``[3, n]`` and
    two zero-scaled noise arrays ``[n_frames, 3, n]``. Only the draws run per trajectory (a few
    microseconds each); the simulation is vectorised.

    Args:
        counts: trajectories in each block, e.g. ``[10000, 2000, 2000]`` for train/val/test.
        config: simulation constants.

    Returns:
        one ``(pos [n, n_particles, 3], vel [n, n_particles, 3], charges [n, n_particles])`` per
        block, after the initial wall reflection.
    """
    rs = np.random.RandomState(config.seed)
    n, frames = config.num_particles, config.num_frames
    blocks = []
    for count in counts:
        x = np.empty((count, n, 3))
        v = np.empty((count, n, 3))
        q = np.empty((count, n))
        for t in range(count):
            q[t] = rs.choice(np.array([-1.0, 0.0, 1.0]), size=(n, 1), p=[0.5, 0.0, 0.5])[:, 0]
            x[t] = rs.randn(3, n).T * config.loc_std * (n / 5.0) ** (1.0 / 3.0)
            vt = rs.randn(3, n).T
            v[t] = vt * config.vel_norm / np.linalg.norm(vt, axis=-1, keepdims=True)
            rs.randn(frames, 3, n)  # observation noise of positions, scaled by noise_var = 0
            rs.randn(frames, 3, n)  # ... and of velocities
        _reflect_into_box(x, v, config.box_size)
        blocks.append((x, v, q))
    return blocks


def _check_split(split: str) -> None:
    if split not in _DRAWN:
        close = difflib.get_close_matches(str(split), list(_DRAWN), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
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
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **data, meta=json.dumps(meta))
        os.replace(tmp, path)  # atomic: readers never see a partial file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
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
        VELOCITIES: vel.reshape(-1, 3),
        keys.CHARGES: charges.reshape(-1).to(pos.dtype),
        keys.EDGE_INDEX: complete_graph(n_graphs, n, device),
        keys.BATCH: torch.arange(n_graphs, device=device).repeat_interleave(n),
        "ptr": torch.arange(n_graphs + 1, device=device) * n,
    }
    if target_pos is not None:
        fields[TARGET_POSITIONS] = target_pos.reshape(-1, 3)
    if target_vel is not None:
        fields[TARGET_VELOCITIES] = target_vel.reshape(-1, 3)
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
