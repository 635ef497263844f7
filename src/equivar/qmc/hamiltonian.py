r"""The electronic Hamiltonian of clamped nuclei and the local energy (atomic units).

.. math::
    H = -\tfrac12 \sum_i \nabla_i^2 + \sum_{i<j} \frac{1}{r_{ij}}
        - \sum_{i,I} \frac{Z_I}{|r_i - R_I|} + \sum_{I<J} \frac{Z_I Z_J}{|R_I - R_J|}

The local energy ``E_L = (H psi) / psi`` needs only ``log|psi|``:
``-1/2 (nabla^2 psi) / psi = -1/2 [nabla^2 log|psi| + |nabla log|psi||^2]``. The Laplacian is exact
(no finite differences): see :func:`laplacian_logabs`.

Walkers are independent, so ``grad_r sum_w log|psi(r_w)|`` gives every walker's gradient at the
cost of one backward pass; this relies on the wavefunction treating walkers independently (no
batch statistics), which holds for every equivar wavefunction.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vmap

from equivar.qmc.systems import Molecule

__all__ = [
    "LAPLACIAN_METHODS",
    "check_walkers",
    "electron_electron",
    "electron_nucleus",
    "kinetic_energy",
    "laplacian_logabs",
    "local_energy",
    "nucleus_nucleus",
    "potential_energy",
]

LAPLACIAN_METHODS = ("forward_over_backward", "double_backward")


def check_walkers(r: Tensor, system: Molecule) -> None:
    """Raise ``ValueError`` unless ``r`` is finite, floating point, [n_walkers, n_elec, 3].

    Costs a device synchronisation (the finiteness test): call it at entry points, not per step.
    """
    if not isinstance(r, Tensor) or r.dim() != 3 or r.shape[1:] != (system.n_elec, 3):
        shape = list(r.shape) if isinstance(r, Tensor) else type(r).__name__
        raise ValueError(f"walkers r must have shape [n_walkers, n_elec={system.n_elec}, 3] for "
                         f"{system.name}, got {shape}")
    if not r.is_floating_point():
        raise ValueError(f"walkers r must be floating point, got {r.dtype}")
    if not bool(torch.isfinite(r).all()):
        bad = (~torch.isfinite(r)).flatten(1).any(1).nonzero().flatten().tolist()
        raise ValueError(f"walkers r contain NaN or inf at walker(s) {bad[:10]}")


# --- potential energy -----------------------------------------------------------------------------
def electron_electron(r: Tensor) -> Tensor:
    """``sum_{i<j} 1/|r_i - r_j|``. Shapes: r [n_walkers, n_elec, 3] -> [n_walkers]."""
    n = r.shape[1]
    i, j = torch.triu_indices(n, n, 1, device=r.device)
    d = torch.linalg.vector_norm(r[:, i] - r[:, j], dim=-1)  # [n_walkers, n_pairs]
    return (1.0 / d).sum(-1)


def electron_nucleus(r: Tensor, charges: Tensor, nuclei: Tensor) -> Tensor:
    """``-sum_{i,I} Z_I/|r_i - R_I|``.

    Shapes: r [n_walkers, n_elec, 3], charges [n_nuclei], nuclei [n_nuclei, 3] -> [n_walkers].
    """
    d = torch.linalg.vector_norm(r.unsqueeze(2) - nuclei, dim=-1)  # [n_walkers, n_elec, n_nuclei]
    return -(charges / d).sum((-1, -2))


def nucleus_nucleus(charges: Tensor, nuclei: Tensor) -> Tensor:
    """``sum_{I<J} Z_I Z_J/|R_I - R_J|`` (a 0-d tensor; 0 for one nucleus)."""
    i, j = torch.triu_indices(len(charges), len(charges), 1, device=nuclei.device)
    return (charges[i] * charges[j] / torch.linalg.vector_norm(nuclei[i] - nuclei[j], dim=-1)).sum()


def potential_energy(r: Tensor, system: Molecule) -> Tensor:
    """Total Coulomb energy (hartree). Shapes: r [n_walkers, n_elec, 3] -> [n_walkers]."""
    charges, nuclei = system.tensors(r.device, r.dtype)
    return (electron_electron(r) + electron_nucleus(r, charges, nuclei)
            + nucleus_nucleus(charges, nuclei))


# --- kinetic energy -------------------------------------------------------------------------------
def _logabs_fn(wavefunction) -> Callable[[Tensor], Tensor]:
    """``r -> log|psi(r)|`` with the parameters as constants (no graph to them is built)."""
    if isinstance(wavefunction, nn.Module):
        frozen = {k: v.detach() for k, v in wavefunction.named_parameters()}
        frozen.update(dict(wavefunction.named_buffers()))
        return lambda x: functional_call(wavefunction, frozen, (x,))[1]
    return lambda x: wavefunction(x)[1]


def laplacian_logabs(
    wavefunction, r: Tensor, method: str = "forward_over_backward", chunk_size: int | None = None
) -> tuple[Tensor, Tensor]:
    """Exact ``nabla^2 log|psi|`` and ``nabla log|psi|`` at every walker.

    Methods (both exact to rounding; they agree to ~1e-12 in float64 and a test checks both
    against finite differences):

    * ``"forward_over_backward"`` (default): ``g = grad_r sum_w log|psi|`` by reverse mode, then
      one forward-mode JVP of ``g`` per coordinate direction ``e_k`` gives Hessian column ``k``,
      whose ``k``-th entry is kept; the ``3 n_elec`` JVPs run batched with ``torch.func.vmap``
      (``chunk_size`` at a time to bound memory). The wavefunction must be vmap-compatible.
    * ``"double_backward"``: ``g`` with ``create_graph=True`` and one more backward pass per
      coordinate (a Python loop of ``3 n_elec`` passes). Works for any autograd-differentiable
      callable; slower, for small systems and cross-checks.

    Args:
        wavefunction: ``(sign, logabs) = wavefunction(r)``.
        r: [n_walkers, n_elec, 3].
        method: see above.
        chunk_size: directions per vmap batch (default: all ``3 n_elec`` at once).

    Returns:
        ``(laplacian [n_walkers], gradient [n_walkers, n_elec, 3])``, detached.
    """
    if method not in LAPLACIAN_METHODS:
        raise ValueError(f"unknown Laplacian method {method!r}; choose one of {LAPLACIAN_METHODS}")
    f = _logabs_fn(wavefunction)
    n_walkers, n_elec, _ = r.shape
    n = 3 * n_elec
    r = r.detach()
    if method == "forward_over_backward":
        grad_fn = grad(lambda x: f(x).sum())
        # direction k moves coordinate k of every walker: [n, n_walkers, n_elec, 3]
        eye = torch.eye(n, dtype=r.dtype, device=r.device).reshape(n, 1, n_elec, 3)
        eye = eye.expand(n, n_walkers, n_elec, 3)

        def column(v: Tensor) -> tuple[Tensor, Tensor]:
            return jvp(grad_fn, (r,), (v,))  # (gradient, Hessian @ v), each like r

        with torch.no_grad():
            g, hv = vmap(column, chunk_size=chunk_size)(eye)  # [n, n_walkers, n_elec, 3]
        diag = hv.reshape(n, n_walkers, n).diagonal(dim1=0, dim2=2)  # [n_walkers, n]
        return diag.sum(-1), g[0]
    with torch.enable_grad():
        x = r.requires_grad_(True)
        g = torch.autograd.grad(f(x).sum(), x, create_graph=True)[0].reshape(n_walkers, n)
        lap = torch.zeros(n_walkers, dtype=r.dtype, device=r.device)
        for k in range(n):
            lap = lap + torch.autograd.grad(g[:, k].sum(), x, retain_graph=k < n - 1)[0].reshape(
                n_walkers, n)[:, k]
    return lap.detach(), g.detach().reshape(n_walkers, n_elec, 3)


def kinetic_energy(wavefunction, r: Tensor, method: str = "forward_over_backward",
                   chunk_size: int | None = None) -> Tensor:
    """``-1/2 (nabla^2 psi)/psi = -1/2 (nabla^2 log|psi| + |nabla log|psi||^2)`` per walker."""
    lap, g = laplacian_logabs(wavefunction, r, method, chunk_size)
    return -0.5 * (lap + g.square().sum((-1, -2)))


def local_energy(
    wavefunction,
    r: Tensor,
    system: Molecule,
    *,
    method: str = "forward_over_backward",
    chunk_size: int | None = None,
    components: bool = False,
    validate: bool = True,
) -> Tensor | dict[str, Tensor]:
    """Local energy ``(H psi)(r) / psi(r)`` of every walker (hartree), detached.

    Args:
        wavefunction: ``(sign, logabs) = wavefunction(r)``.
        r: electron positions [n_walkers, n_elec, 3] (bohr, spin-up first).
        system: the :class:`~equivar.qmc.Molecule` (nuclear charges and positions).
        method, chunk_size: see :func:`laplacian_logabs`.
        components: return ``{"kinetic", "potential", "total"}`` instead of the total.
        validate: check ``r`` (shape and finiteness; a device sync). The VMC loop passes False.

    Returns:
        [n_walkers] (or the dict of [n_walkers] tensors).

    Example:
        >>> from equivar.qmc import atom
        >>> hydrogen_1s = lambda r: (torch.ones(len(r)), -r.norm(dim=-1).sum(-1))
        >>> local_energy(hydrogen_1s, torch.randn(4, 1, 3), atom("H"))  # doctest: +ELLIPSIS
        tensor([-0.5000, -0.5000, -0.5000, -0.5000]...)
    """
    if validate:
        check_walkers(r, system)
    kinetic = kinetic_energy(wavefunction, r, method, chunk_size)
    potential = potential_energy(r.detach(), system)
    total = kinetic + potential
    if components:
        return {"kinetic": kinetic, "potential": potential, "total": total}
    return total
