"""The charged N-body system of the NRI / EGNN benchmark: forces, integrator, initial states.

Five particles with charges +-1 move under pairwise Coulomb-like forces
:math:`F_i = c \\sum_{j \\ne i} q_i q_j (x_i - x_j) / |x_i - x_j|^3` (unit masses, no walls). This
module reimplements the benchmark's generator in numpy, vectorised over trajectories;
:mod:`equivar.data.datasets.nbody` draws the benchmark's splits from it, caches them on disk and
serves them as graphs.

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
* ``seed = 43`` (``--seed 43`` of "nbody_small"). No observation noise (``noise_var = 0``).

Random stream: the initial states are drawn here with the legacy ``np.random.RandomState(43)`` in
the generator's order (per trajectory: charges, positions, velocities, then the two zero-scaled
noise arrays, which still consume draws), so they follow the published files draw for draw. This
was not checked against the published ``.npy`` files (not available offline), and trajectories
integrated with a different summation order can drift apart after close encounters (the system is
chaotic), so treat the data as statistically, not bitwise, identical to the published set.

Layout: states ``pos``/``vel`` [n_traj, n_particles, 3] (float64), ``charges``
[n_traj, n_particles]; saved frames add an axis: [n_traj, n_frames, n_particles, 3].

References:
    Kipf et al., "Neural relational inference for interacting systems", ICML 2018;
    Satorras, Hoogeboom, Welling, "E(n) equivariant graph neural networks", ICML 2021.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "NBodyConfig",
    "PROTOCOL",
    "forces",
    "sample_initial_states",
    "simulate",
    "total_energy",
    "total_momentum",
]


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
