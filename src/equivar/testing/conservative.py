"""``assert_conservative``: check that a model's forces (and stress) derive from its energy.

A force field is conservative when ``F = -dE/dx`` for the energy the model returns. Three
independent consequences are checked, each of which catches a different way to get it wrong:

* finite differences of the energy equal the forces (wrong sign, scale, missing term);
* the Hessian ``-dF/dx`` is symmetric (a curl in the force field, even where ``F = -dE/dx``);
* the work of the forces around a closed loop is zero (a curl, integrated over a finite path);

and, for periodic graphs that return a stress, finite differences of the energy under a symmetric
strain equal ``stress * volume`` (ASE's sign).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from equivar.keys import CELL, ENERGY, FORCES, PBC, POSITIONS, STRESS
from equivar.testing.measurement import (
    SymmetryAssertionError,
    default_tolerances,
    detached,
    evaluate_outputs,
)
from equivar.testing.transforms import graph_index, num_graphs

__all__ = ["assert_conservative"]

#: Default (rtol, atol) by dtype; atol is in the units of the compared quantity (eV/Angstrom for
#: forces) and only matters when that quantity is ~0.
CONSERVATIVE_TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-6, 1e-8),
    torch.float32: (1e-2, 1e-4),
}
#: The loop work involves no finite-difference truncation, only rounding, so its default
#: tolerance can be tighter than ``rtol`` (in float32 the general 1e-2 would hide a real curl).
LOOP_RTOL: dict[torch.dtype, float] = {torch.float64: 1e-6, torch.float32: 1e-4}
#: Default finite-difference step (Angstrom) and loop amplitude (Angstrom) by dtype.
DEFAULT_EPS: dict[torch.dtype, float] = {torch.float64: 1e-3, torch.float32: 1e-2}
DEFAULT_LOOP_AMPLITUDE: dict[torch.dtype, float] = {torch.float64: 0.02, torch.float32: 0.05}
#: Default random coordinates (and random directions) per graph, and points on the closed loop.
DEFAULT_N_CHECKS, DEFAULT_LOOP_POINTS = 6, 64

_STENCIL = ((-2, 1.0 / 12.0), (-1, -8.0 / 12.0), (1, 8.0 / 12.0), (2, -1.0 / 12.0))
_CHECK_DOC = {
    "forces_fd": "forces vs -dE/dx by finite differences along random coordinates",
    "forces_fd_directional": "forces vs -dE/dx by finite differences along random directions",
    "hessian_symmetry": "Hessian -dF/dx (finite differences of the forces) is not symmetric",
    "loop_work": "work of the forces around a closed loop is not zero",
    "stress_fd": "stress vs dE/d(strain) / volume by finite differences",
}


def _graph_sum(values: Tensor, graph: Tensor, n_graphs: int) -> Tensor:
    """Sum ``values [..., n_nodes]`` over the nodes of each graph -> ``[..., n_graphs]``."""
    out = values.new_zeros(*values.shape[:-1], n_graphs)
    return out.index_add_(-1, graph, values)


class _Probe:
    """The model evaluated at moved positions (and cell) of one batch, checked and in float64.

    Shapes:
        ``pos``: ``[n_nodes, 3]``; ``cell``: ``[n_graphs, 3, 3]``; returns energy
        ``[n_graphs]``, forces ``[n_nodes, 3]`` and every output.
    """

    def __init__(self, model, base, energy_key: str, forces_key: str) -> None:
        self.model, self.base = model, base
        self.energy_key, self.forces_key = energy_key, forces_key
        self.dtype = base[POSITIONS].dtype
        self.n_graphs, self.n_nodes = num_graphs(base), base.num_nodes
        self.graph = graph_index(base)  # [n_nodes]

    def __call__(self, pos: Tensor, cell: Tensor | None = None):
        moved = self.base.clone()
        moved[POSITIONS] = pos.to(self.dtype)
        if cell is not None:
            moved[CELL] = cell.to(self.dtype)
        out = evaluate_outputs(self.model, moved)
        n_graphs, n_nodes = self.n_graphs, self.n_nodes
        for key in (self.energy_key, self.forces_key):
            if key not in out:
                raise ValueError(f"assert_conservative: the model returned no {key!r} output "
                                 f"(got {sorted(out)}); pass energy_key=/forces_key=")
        energy = out[self.energy_key]
        if energy.numel() != n_graphs:
            raise ValueError(f"assert_conservative: {self.energy_key!r} must have shape "
                             f"[n_graphs] = [{n_graphs}], got {list(energy.shape)}")
        forces = out[self.forces_key]
        if forces.shape != (n_nodes, 3):
            raise ValueError(f"assert_conservative: {self.forces_key!r} must have shape "
                             f"[n_nodes, 3] = [{n_nodes}, 3], got {list(forces.shape)}")
        return energy.reshape(n_graphs).to(torch.float64), forces.to(torch.float64), out


def _directions(probe: _Probe, n_checks: int, generator: torch.Generator, device) -> Tensor:
    """Whole atoms' coordinates, then random unit directions, per graph.

    Shapes:
        returns ``[2 * n_checks, n_nodes, 3]`` float64.
    """
    n_graphs, n_nodes = probe.n_graphs, probe.n_nodes
    graph_cpu = probe.graph.cpu()
    coords = torch.zeros(n_checks, n_nodes, 3, dtype=torch.float64)
    for g in range(n_graphs):
        nodes = torch.nonzero(graph_cpu == g).flatten()
        if nodes.numel() == 0:
            continue
        order = nodes[torch.randperm(nodes.numel(), generator=generator)]
        flat = torch.stack([order.repeat_interleave(3), torch.arange(3).repeat(order.numel())])
        for j in range(n_checks):
            node, comp = flat[:, j % flat.shape[1]]
            coords[j, node, comp] = 1.0
    randoms = torch.randn(n_checks, n_nodes, 3, dtype=torch.float64, generator=generator)
    norms = _graph_sum(randoms.pow(2).sum(-1), graph_cpu, n_graphs).sqrt()  # [n_checks, n_graphs]
    randoms = randoms / norms[:, graph_cpu].clamp_min(1e-300).unsqueeze(-1)
    return torch.cat([coords, randoms]).to(device)  # [2 n_checks, n_nodes, 3]


def _force_errors(probe: _Probe, x0: Tensor, f0: Tensor, dirs: Tensor, eps: float,
                  floor: float) -> dict[str, float]:
    """(a) forces vs finite differences of the energy, (b) symmetry of the Hessian.

    Shapes:
        ``x0``, ``f0``: ``[n_nodes, 3]``; ``dirs``: ``[2 * n_checks, n_nodes, 3]``.
    """
    graph, n_graphs, n_nodes = probe.graph, probe.n_graphs, probe.n_nodes
    n_checks = dirs.shape[0] // 2
    d_energy = torch.zeros(dirs.shape[0], n_graphs, dtype=torch.float64, device=x0.device)
    d_forces = torch.zeros(dirs.shape[0], n_nodes, 3, dtype=torch.float64, device=x0.device)
    for j, u in enumerate(dirs):
        for step, weight in _STENCIL:
            energy, forces, _ = probe(x0 + (step * eps) * u)
            d_energy[j] += weight / eps * energy  # [n_graphs]
            d_forces[j] += weight / eps * forces  # [n_nodes, 3]
    predicted = -_graph_sum((f0.unsqueeze(0) * dirs).sum(-1), graph, n_graphs)  # F . u per graph
    f_max = f0.new_zeros(n_graphs).scatter_reduce(0, graph, f0.abs().amax(-1), "amax")
    f_norm = _graph_sum(f0.pow(2).sum(-1), graph, n_graphs).sqrt()  # [n_graphs]
    diff = (d_energy - predicted).abs()  # [2 n_checks, n_graphs]
    errors = {"forces_fd": (diff[:n_checks] / f_max.clamp_min(floor)).max().item(),
              "forces_fd_directional": (diff[n_checks:] / f_norm.clamp_min(floor)).max().item()}
    # M[a, b, g] = u_a . H u_b within graph g, with H u_b = -dF/du_b
    hess = -_graph_sum(torch.einsum("anc,bnc->abn", dirs, d_forces), graph, n_graphs)
    asym = (hess - hess.transpose(0, 1)).abs().amax(dim=(0, 1))  # [n_graphs]
    scale = hess.abs().amax(dim=(0, 1)).clamp_min(floor)
    errors["hessian_symmetry"] = (asym / scale).max().item()
    return errors


def _loop_work_error(probe: _Probe, x0: Tensor, generator: torch.Generator, amplitude: float,
                     loop_points: int, floor: float) -> float:
    """(c) the work of the forces around a closed loop, relative to ``integral |F . dx|``.

    Shapes:
        ``x0``: ``[n_nodes, 3]``.
    """
    graph, n_graphs, n_nodes = probe.graph, probe.n_graphs, probe.n_nodes
    d = torch.randn(2, n_nodes, 3, dtype=torch.float64, generator=generator).to(x0.device)
    sizes = _graph_sum(torch.ones(n_nodes, dtype=torch.float64, device=x0.device), graph, n_graphs)
    dot = _graph_sum((d[1] * d[0]).sum(-1), graph, n_graphs) / _graph_sum(
        d[0].pow(2).sum(-1), graph, n_graphs).clamp_min(1e-300)
    d[1] = d[1] - dot[graph].unsqueeze(-1) * d[0]  # Gram-Schmidt within each graph
    for k in range(2):  # norm sqrt(n_atoms): per-atom RMS displacement 1
        norm = _graph_sum(d[k].pow(2).sum(-1), graph, n_graphs).sqrt().clamp_min(1e-300)
        d[k] = d[k] * (sizes.sqrt() / norm)[graph].unsqueeze(-1)
    work = torch.zeros(n_graphs, dtype=torch.float64, device=x0.device)
    total = torch.zeros_like(work)
    for m in range(loop_points):
        t = 2.0 * math.pi * m / loop_points
        _, forces, _ = probe(x0 + amplitude * (math.cos(t) * d[0] + math.sin(t) * d[1]))
        velocity = amplitude * (-math.sin(t) * d[0] + math.cos(t) * d[1])  # dx/dt
        power = _graph_sum((forces * velocity).sum(-1), graph, n_graphs)  # F . dx/dt
        work += power * (2.0 * math.pi / loop_points)
        total += power.abs() * (2.0 * math.pi / loop_points)
    path = 2.0 * math.pi * amplitude * sizes.sqrt()  # loop length in configuration space
    return (work.abs() / torch.maximum(total, floor * path)).max().item()


def _stress_error(probe: _Probe, x0: Tensor, stress: Tensor | None, eps: float,
                  floor: float) -> float | None:
    """(d) stress vs finite differences of the energy under the six symmetric unit strains;
    None when there is nothing to check (no stress output, or no periodic graph).

    Shapes:
        ``x0``: ``[n_nodes, 3]``; ``stress``: the model's output, ``[n_graphs, 3, 3]``.
    """
    graph, n_graphs, base = probe.graph, probe.n_graphs, probe.base
    if stress is None or PBC not in base or CELL not in base:
        return None
    periodic = base[PBC].reshape(n_graphs, 3).any(-1)  # [n_graphs]
    if not bool(periodic.any()):
        return None
    cell0 = probe.base[CELL].reshape(n_graphs, 3, 3).to(torch.float64)
    volume = torch.linalg.det(cell0).abs()  # [n_graphs]
    stress = stress.reshape(n_graphs, 3, 3).to(torch.float64)
    stress = 0.5 * (stress + stress.transpose(-1, -2))
    h = eps / max(1.0, cell0.norm(dim=-1).max().item())  # strain step: moves ~eps Angstrom
    fd = torch.zeros_like(stress)
    eye = torch.eye(3, dtype=torch.float64, device=x0.device)
    mask = periodic.to(torch.float64).view(n_graphs, 1, 1)
    for a, b in ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)):
        sym = torch.zeros(3, 3, dtype=torch.float64, device=x0.device)
        sym[a, b] += 0.5
        sym[b, a] += 0.5
        for step, weight in _STENCIL:
            deform = eye + (step * h) * sym * mask  # [n_graphs, 3, 3]; 0 strain if open
            pos = torch.bmm(x0.unsqueeze(1), deform[graph]).squeeze(1)  # [n_nodes, 3]
            energy, _, _ = probe(pos, torch.bmm(cell0, deform))
            fd[:, a, b] += weight / h * energy
        fd[:, b, a] = fd[:, a, b]
    fd = fd / volume.clamp_min(1e-300).view(n_graphs, 1, 1)
    sel = periodic.to(x0.device)
    scale = max(stress[sel].abs().max().item(), floor)
    return (fd[sel] - stress[sel]).abs().max().item() / scale


def assert_conservative(
    model,
    batch,
    *,
    n_checks: int = DEFAULT_N_CHECKS,
    eps: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
    loop_points: int = DEFAULT_LOOP_POINTS,
    loop_amplitude: float | None = None,
    check_stress: bool = True,
    energy_key: str = ENERGY,
    forces_key: str = FORCES,
    stress_key: str = STRESS,
) -> dict[str, float]:
    """Assert that the model's forces are ``-dE/dpos`` of its energy and its stress is
    ``dE/d(strain) / volume``.

    Use float64 (``batch.pos`` and the model): finite differences in float32 lose most digits, so
    the float32 defaults are loose and only catch gross errors.

    Checks (every graph of the batch is perturbed at once along its own directions, which is exact
    because graphs do not interact):

    * ``"forces_fd"``: for ``n_checks`` random coordinates ``x_c`` per graph, ``F_c`` equals
      ``-dE/dx_c`` by a fourth-order central difference with step ``eps``; error relative to
      ``max|F|`` of the graph;
    * ``"forces_fd_directional"``: the same along ``n_checks`` random unit directions ``u``,
      ``F . u = -dE/du``; error relative to ``|F|`` of the graph;
    * ``"hessian_symmetry"``: with ``H u`` from finite differences of the forces along the same
      ``2 * n_checks`` directions (whole atoms' coordinates and random directions), the matrix
      ``u_a . H u_b`` is symmetric; error ``max|M - M^T| / max|M|``;
    * ``"loop_work"``: along ``x(t) = x0 + a (cos t d1 + sin t d2)``, ``t in [0, 2 pi)`` with
      ``d1, d2`` random orthogonal directions (per-atom RMS size 1) and ``a = loop_amplitude``,
      the work ``W = integral F . dx`` (periodic trapezoid rule with ``loop_points`` points, which
      converges exponentially fast) is zero relative to ``integral |F . dx|``;
    * ``"stress_fd"`` (only if ``check_stress``, the model returns ``stress_key`` and a graph is
      periodic): for the six symmetric unit strains ``S``, ``pos -> pos @ (I + h S)``,
      ``cell -> cell @ (I + h S)``, the finite difference ``dE/dh / volume`` equals
      ``sum(stress * S)``; error relative to ``max|stress|``.

    A check passes when its error is ``<= rtol`` (with ``atol / rtol`` as a floor on the scale,
    for quantities that are ~0). Only positions (and, for the stress, the cell) change: the edges
    of ``batch`` are kept, so they must come from a cutoff that these small moves do not cross
    (or cross where the model's cutoff envelope is smooth and ~0, as it should be anyway).
    Call ``model.eval()`` first; gradients are enabled during the calls.

    Args:
        model: callable ``model(batch) -> Mapping[str, Tensor]`` returning energy and forces.
        batch: a ``torch_geometric`` ``Data``/``Batch`` with the fields of :mod:`equivar.keys`.
        n_checks: random coordinates and random directions per graph. Default 6.
        eps: finite-difference step in Angstrom; default float64 ``1e-3``, float32 ``1e-2``.
        rtol: tolerance on every error; default float64 ``1e-6``, float32 ``1e-2`` (and
            ``1e-4`` for ``"loop_work"``, which has no finite-difference truncation error).
        atol: absolute floor (units of the compared quantity); default float64 ``1e-8``,
            float32 ``1e-4``.
        seed: seed of the random coordinates, directions and loop.
        loop_points: points on the closed loop. Default 64.
        loop_amplitude: loop radius ``a`` in Angstrom; default float64 ``0.02``, float32 ``0.05``.
        check_stress: check the stress of periodic graphs when the model returns one.
        energy_key: name of the energy output (default ``keys.ENERGY``).
        forces_key: name of the forces output (default ``keys.FORCES``).
        stress_key: name of the stress output (default ``keys.STRESS``).

    Returns:
        ``{check: worst error}`` for every check that ran (see the names above).

    Raises:
        SymmetryAssertionError: (an ``AssertionError``) naming every failing check, its error and
            the tolerance.
        ValueError: the model's outputs lack the energy or forces or have wrong shapes.

    Shapes:
        ``energy``: ``[n_graphs]``; ``forces``: ``[n_nodes, 3]``; ``stress``: ``[n_graphs, 3, 3]``.

    Example:
        >>> import torch
        >>> from torch_geometric.data import Data
        >>> from equivar.testing import assert_conservative
        >>> class Springs(torch.nn.Module):  # E = sum_ij |x_i - x_j|^2 / 2
        ...     def forward(self, batch):
        ...         pos = batch.pos.requires_grad_(True)
        ...         energy = 0.5 * torch.cdist(pos, pos).pow(2).sum().view(1)
        ...         (grad,) = torch.autograd.grad(energy.sum(), pos)
        ...         return {"energy": energy, "forces": -grad}
        >>> data = Data(pos=torch.randn(4, 3, dtype=torch.float64))
        >>> errors = assert_conservative(Springs(), data)
        >>> sorted(errors)
        ['forces_fd', 'forces_fd_directional', 'hessian_symmetry', 'loop_work']
    """
    dtype = batch[POSITIONS].dtype
    d_rtol, d_atol = default_tolerances(dtype, CONSERVATIVE_TOLERANCES, "assert_conservative")
    tolerances = dict.fromkeys(_CHECK_DOC, d_rtol if rtol is None else float(rtol))
    if rtol is None:
        tolerances["loop_work"] = LOOP_RTOL[dtype]
    rtol = tolerances["forces_fd"]
    atol = d_atol if atol is None else float(atol)
    eps = DEFAULT_EPS[dtype] if eps is None else float(eps)
    amplitude = DEFAULT_LOOP_AMPLITUDE[dtype] if loop_amplitude is None else float(loop_amplitude)
    if n_checks < 1 or loop_points < 8:
        raise ValueError(f"need n_checks >= 1 and loop_points >= 8, got {n_checks}, {loop_points}")
    floor = atol / rtol
    generator = torch.Generator().manual_seed(seed)

    base = detached(batch)
    probe = _Probe(model, base, energy_key, forces_key)
    x0 = base[POSITIONS].to(torch.float64)  # [n_nodes, 3]
    _, f0, out0 = probe(x0)
    dirs = _directions(probe, n_checks, generator, x0.device)  # [2 n_checks, n_nodes, 3]
    errors = _force_errors(probe, x0, f0, dirs, eps, floor)
    errors["loop_work"] = _loop_work_error(probe, x0, generator, amplitude, loop_points, floor)
    stress = out0.get(stress_key) if check_stress else None
    stress_error = _stress_error(probe, x0, stress, eps, floor)
    if stress_error is not None:
        errors["stress_fd"] = stress_error

    _raise_failures(errors, tolerances, f"positions {dtype}, eps={eps:g}, rtol={rtol:g}, "
                    f"atol={atol:g}")
    return errors


def _raise_failures(errors: dict[str, float], tolerances: dict[str, float], setting: str) -> None:
    """Raise :class:`SymmetryAssertionError` naming every check whose error exceeds its
    tolerance (``setting``: dtype, step and tolerances, for the first line)."""
    failures = [(name, None, err, tolerances[name]) for name, err in errors.items()
                if not err <= tolerances[name]]
    if failures:
        lines = [f"assert_conservative: {len(failures)} check(s) failed ({setting}):"]
        for name, _, err, tol in failures:
            lines.append(f"  {name} ({_CHECK_DOC[name]}): error {err:.3g} > rtol {tol:.3g}")
        raise SymmetryAssertionError("\n".join(lines), errors, failures)
