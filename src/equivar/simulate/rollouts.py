"""Autoregressive N-body rollouts with a learned one-step model, checked against the simulator.

A one-step model maps the state ``(pos, vel)`` of each system to the state one horizon later
(e.g. 100 integration steps). Feeding its prediction back in simulates arbitrarily long
trajectories; whether the learned dynamics keeps the conserved quantities of the true one
(energy, momentum) is a test of how physical it is beyond the training horizon.
"""

from __future__ import annotations

import numpy as np
import torch

from equivar import keys
from equivar.data.datasets.nbody import (
    PROTOCOL,
    VELOCITIES,
    NBodyConfig,
    nbody_batch,
    simulate,
    total_energy,
    total_momentum,
)

__all__ = ["compare_with_simulator", "conserved_quantities", "rollout"]


@torch.no_grad()
def rollout(
    model: torch.nn.Module,
    pos: torch.Tensor,
    vel: torch.Tensor,
    charges: torch.Tensor,
    num_steps: int,
    *,
    batch_size: int | None = None,
) -> dict[str, torch.Tensor]:
    """Simulate ``num_steps`` model steps: ``state_{k+1} = model(state_k)``, for many systems.

    The model must return velocities as well as positions (build it with
    ``predict_velocity=True``). It is put in ``eval()`` mode and run without gradients; the
    state is kept in the dtype of ``pos``.

    Args:
        model: a one-step model, ``model(batch) -> {"pos", "vel"}`` (e.g.
            ``build("nbody", predict_velocity=True)`` trained on consecutive frames).
        pos, vel: initial states.
        charges: particle charges.
        num_steps: model steps to take.
        batch_size: systems per model call (default: all at once).

    Returns:
        ``{"pos", "vel"}``, each ``[n_traj, num_steps + 1, n_particles, 3]``; index 0 is the
        initial state.

    Shapes:
        pos, vel: [n_traj, n_particles, 3], charges: [n_traj, n_particles]

    Example:
        >>> from equivar.models import build
        >>> model = build("nbody", layer="linear", predict_velocity=True)
        >>> x, v, q = torch.zeros(2, 5, 3), torch.ones(2, 5, 3), torch.ones(2, 5)
        >>> traj = rollout(model, x, v, q, num_steps=3)
        >>> traj["pos"].shape, traj["pos"][0, 3, 0].tolist()  # x + 3 t v with t = 1
        (torch.Size([2, 4, 5, 3]), [3.0, 3.0, 3.0])
    """
    if num_steps < 0:
        raise ValueError(f"num_steps must be >= 0, got {num_steps}")
    if pos.dim() != 3 or pos.shape[-1] != 3 or vel.shape != pos.shape:
        raise ValueError(f"pos and vel must have shape [n_traj, n_particles, 3]; got "
                         f"{list(pos.shape)} and {list(vel.shape)}")
    model.eval()
    n_traj, n = pos.shape[:2]
    size = n_traj if batch_size is None else int(batch_size)
    charges = charges.to(pos.dtype)
    xs, vs = [pos], [vel]
    x, v = pos, vel
    for _ in range(num_steps):
        new_x, new_v = [], []
        for s in range(0, n_traj, size):
            out = model(nbody_batch(x[s : s + size], v[s : s + size], charges[s : s + size]))
            if VELOCITIES not in out:
                raise ValueError("rollout needs a model that predicts velocities too; build it "
                                 "with predict_velocity=True")
            new_x.append(out[keys.POSITIONS].reshape(-1, n, 3))
            new_v.append(out[VELOCITIES].reshape(-1, n, 3))
        x, v = torch.cat(new_x), torch.cat(new_v)
        xs.append(x)
        vs.append(v)
    return {"pos": torch.stack(xs, dim=1), "vel": torch.stack(vs, dim=1)}


def conserved_quantities(
    pos, vel, charges, interaction_strength: float = PROTOCOL.interaction_strength
) -> dict[str, np.ndarray]:
    """Total energy and momentum along trajectories (unit masses; see
    :func:`~equivar.data.datasets.nbody.total_energy`).

    Shapes:
        pos, vel: [n_traj, n_times, n_particles, 3], charges: [n_traj, n_particles]
        -> energy [n_traj, n_times], momentum [n_traj, n_times, 3]
    """
    pos, vel = _numpy(pos), _numpy(vel)
    q = _numpy(charges)[:, None, :]  # [n_traj, 1, n]: the same charges at every time
    return {
        "energy": total_energy(pos, vel, q, interaction_strength),
        "momentum": total_momentum(vel),
    }


def compare_with_simulator(
    model: torch.nn.Module,
    pos,
    vel,
    charges,
    num_steps: int,
    *,
    steps_per_model_step: int = PROTOCOL.save_every,
    config: NBodyConfig = PROTOCOL,
    batch_size: int | None = None,
) -> dict[str, np.ndarray]:
    """Roll out a one-step model and the true simulator from the same states; compare them.

    The simulator takes ``steps_per_model_step`` integration steps of ``config.dt`` per model
    step (100 for a model trained on consecutive saved frames). The states must be saved frames
    of the simulator (velocities half a step behind, as the generator saves them), so that both
    continue the same trajectory.

    Args:
        model: one-step model with ``predict_velocity=True``.
        pos, vel, charges: initial states (tensors or arrays), e.g. frame 0 of test trajectories.
        num_steps: model steps.
        steps_per_model_step: integration steps per model step (default 100).
        config: simulation constants (dt, force clip, interaction strength).
        batch_size: systems per model call.

    Returns:
        arrays over ``t = 0..num_steps`` (index 0: the initial state):

        * ``"time"``: simulated time ``t * steps_per_model_step * dt``;
        * ``"mse"``: position MSE of the rollout against the simulator, mean over systems;
        * ``"energy_drift_model"``, ``"energy_drift_true"``: median over systems of
          ``|E(t) - E(0)|``. The median, because the benchmark's simulator itself breaks energy
          conservation in close encounters (forces are clipped at 100 and dt = 0.001 does not
          resolve a near collision), which about half of the 2000 test systems go through
          within 48 frames; those few jumps dominate a mean;
        * ``"momentum_drift_model"``, ``"momentum_drift_true"``: median of ``|P(t) - P(0)|``
          (clipping breaks Newton's third law slightly, so the simulator's is ~1e-4, not 0);
        * ``"energy_model"``, ``"energy_true"``: [n_traj, num_steps + 1], and
          ``"momentum_model"``, ``"momentum_true"``: [n_traj, num_steps + 1, 3], per system
          (``inf`` where a rollout puts two particles on the same spot);
        * ``"pos_model"``, ``"pos_true"``: the trajectories, [n_traj, num_steps + 1, n, 3].

    Shapes:
        pos, vel: [n_traj, n_particles, 3], charges: [n_traj, n_particles]
    """
    param = next(iter(model.parameters()), None)
    dtype = param.dtype if param is not None else torch.get_default_dtype()
    x0 = torch.as_tensor(pos, dtype=dtype)
    v0 = torch.as_tensor(vel, dtype=dtype)
    q = torch.as_tensor(charges, dtype=dtype)
    learned = rollout(model, x0, v0, q, num_steps, batch_size=batch_size)

    x_np, v_np, q_np = _numpy(pos), _numpy(vel), _numpy(charges)
    true_x, true_v = simulate(x_np, v_np, q_np, num_steps, steps_per_model_step, config.dt,
                              config.max_force, config.interaction_strength)
    true_x = np.concatenate([x_np[:, None], true_x], axis=1)  # [n_traj, num_steps + 1, n, 3]
    true_v = np.concatenate([v_np[:, None], true_v], axis=1)

    model_c = conserved_quantities(learned["pos"], learned["vel"], q_np,
                                   config.interaction_strength)
    true_c = conserved_quantities(true_x, true_v, q_np, config.interaction_strength)

    def drift(c: dict[str, np.ndarray], key: str) -> np.ndarray:
        d = c[key] - c[key][:, :1]  # [n_traj, n_times(, 3)]
        with np.errstate(invalid="ignore"):  # inf - inf where a rollout collapsed a pair
            d = np.abs(d if d.ndim == 2 else np.linalg.norm(d, axis=-1))
        return np.median(np.nan_to_num(d, nan=np.inf), axis=0)

    pos_model = _numpy(learned["pos"])
    return {
        "time": np.arange(num_steps + 1) * steps_per_model_step * config.dt,
        "mse": ((pos_model - true_x) ** 2).mean(axis=(0, 2, 3)),
        "energy_drift_model": drift(model_c, "energy"),
        "energy_drift_true": drift(true_c, "energy"),
        "momentum_drift_model": drift(model_c, "momentum"),
        "momentum_drift_true": drift(true_c, "momentum"),
        "energy_model": model_c["energy"],
        "energy_true": true_c["energy"],
        "momentum_model": model_c["momentum"],
        "momentum_true": true_c["momentum"],
        "pos_model": pos_model,
        "pos_true": true_x,
    }


def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().to(torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)
