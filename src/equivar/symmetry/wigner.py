"""Wigner D matrices of any irreps, exact to float64 rounding (for tight equivariance tests).

:class:`~equivar.symmetry.IrrepsAction` acts with these matrices; the tests of every
equivariant block use them too (re-exported as :func:`equivar.testing.wigner_D`).
"""

from __future__ import annotations

import torch
from e3nn import o3

__all__ = ["wigner_D"]


def wigner_D(irreps: o3.Irreps | str, R: torch.Tensor) -> torch.Tensor:
    r"""Block-diagonal representation matrix of ``irreps`` for an orthogonal matrix ``R``.

    ``x @ wigner_D(irreps, R).T`` is how features of ``irreps`` transform when positions transform
    as ``pos @ R.T``. e3nn's ``Irreps.D_from_matrix`` goes through Euler angles and is accurate to
    about 1e-7 even in float64, too coarse for a 1e-10 check; here each ``D_l`` is solved in
    float64 from the spherical harmonics themselves (``Y_l(R v) = D_l(R) Y_l(v)`` on 64 random
    directions, least squares), which is exact to rounding. Improper ``R`` (det -1) multiply the
    block by the irrep's parity.

    Args:
        irreps: e.g. ``"8x0e+4x1o+2x2e"``.
        R: ``[3, 3]`` orthogonal matrix.

    Returns:
        ``[irreps.dim, irreps.dim]`` in ``R``'s dtype and on its device.

    Raises:
        ValueError: ``R`` is not orthogonal.

    Shapes:
        ``R``: ``[3, 3]``; returns ``[irreps.dim, irreps.dim]``.

    Example:
        >>> R = o3.rand_matrix(dtype=torch.float64)
        >>> torch.allclose(wigner_D("1x1o", R), R)
        True
    """
    irreps = o3.Irreps(irreps)
    r64 = R.detach().to(torch.float64).cpu()
    det = torch.linalg.det(r64)
    if not torch.allclose(r64 @ r64.T, torch.eye(3, dtype=torch.float64), atol=1e-4):
        raise ValueError("wigner_D needs an orthogonal 3x3 matrix R")
    proper = r64 * det.sign()
    v = torch.randn(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    cache: dict[int, torch.Tensor] = {}
    blocks = []
    for mul, ir in irreps:
        if ir.l not in cache:
            y = o3.spherical_harmonics(ir.l, v, normalize=True)  # [64, 2l+1]
            y_rot = o3.spherical_harmonics(ir.l, v @ proper.T, normalize=True)
            cache[ir.l] = torch.linalg.lstsq(y, y_rot).solution.T  # [2l+1, 2l+1]
        d = cache[ir.l] * (ir.p if det < 0 else 1)
        blocks += [d] * mul
    if not blocks:
        return torch.zeros(0, 0, dtype=R.dtype, device=R.device)
    return torch.block_diag(*blocks).to(dtype=R.dtype, device=R.device)
