"""Frame averaging: exact O(3)/SO(3) (and translation) invariance or equivariance for any model
of point clouds, from PCA frames (Puny et al. 2022).

A frame of a point cloud ``x [n, 3]`` is a set ``F(x)`` of rigid motions ``(R, t)`` with
``F(Q x + b) = (Q, b) F(x)``. Averaging a model ``phi`` over the frame,
``<phi>(x) = mean_{(R, t) in F(x)} rho(R, t) phi((x - t) R)``, is then exactly invariant
(``rho`` trivial) or equivariant (``rho`` rotating vectors, points or tensors), for the whole
continuous group and not only for a finite subgroup.

The PCA frame: ``t`` the centroid, ``R = V S`` with ``V`` the eigenvectors of the covariance
(ascending eigenvalues) and ``S`` every diagonal sign matrix (8 for O(3); the 4 with
``det(V S) = +1`` for SO(3)); the signs are what makes the set equivariant, since an eigenvector
is defined only up to sign. When two or three eigenvalues coincide (symmetric tops, spherical
tops such as methane), the eigenvectors inside the degenerate eigenspace are arbitrary and the
frame is no longer equivariant; such samples are detected (relative eigenvalue gap below
``tol``) and, by default, averaged over extra frames: ``n_degenerate`` rotations inside a
degenerate plane, or the 120 elements of I_h (60 of I for SO(3)) for a fully degenerate
spectrum. That fallback is approximate; its error is measured in the tests and benchmark.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from equivar.symmetry.orbits import fold_args

__all__ = ["FrameAveraging", "Frames", "pca_frames"]

GROUPS = ("O3", "SO3")
OUTPUTS = ("invariant", "vector", "points", "tensor")
POLICIES = ("average", "ignore", "raise")


@dataclass
class Frames:
    """PCA frames of a batch of point clouds, with what the degeneracy check found.

    Attributes:
        rotations: ``[batch, n_frames, 3, 3]`` orthogonal matrices ``R = V S`` (columns are the
            frame axes); a frame element maps canonical coordinates ``y`` to ``y @ R^T + t``.
        origins: ``[batch, 3]`` centroids ``t`` (zeros when not centring).
        eigenvalues: ``[batch, 3]`` covariance eigenvalues, ascending.
        gaps: ``[batch, 2]`` relative gaps ``(l2 - l1) / l3`` and ``(l3 - l2) / l3``.
        degenerate: ``[batch]`` int64: 0 simple spectrum, 1 two equal eigenvalues, 2 all equal.
    """

    rotations: Tensor
    origins: Tensor
    eigenvalues: Tensor
    gaps: Tensor
    degenerate: Tensor


def _signs(group: str, dtype: torch.dtype, device) -> Tensor:
    s = torch.tensor(list(_product_pm(3)), dtype=dtype, device=device)  # [8, 3]
    if group == "SO3":
        s = s[s.prod(-1) > 0]  # [4, 3]: det(V S) = det(V) = +1
    return s


def _product_pm(k: int):
    for bits in range(2**k):
        yield [(-1.0) ** ((bits >> i) & 1) for i in range(k)]


def _check(pos: Tensor, mask: Tensor | None, group: str) -> None:
    if not isinstance(pos, Tensor) or not pos.is_floating_point():
        raise TypeError(f"frames need floating-point positions, got "
                        f"{getattr(pos, 'dtype', type(pos).__name__)}")
    if pos.dim() != 3 or pos.shape[-1] != 3:
        raise ValueError(f"frames need point clouds [batch, n_nodes, 3], got shape "
                         f"{list(pos.shape)}")
    if mask is not None and mask.shape != pos.shape[:2]:
        raise ValueError(f"mask must have shape [batch, n_nodes] = {list(pos.shape[:2])}, got "
                         f"{list(mask.shape)}")
    if group not in GROUPS:
        raise ValueError(f"group must be one of {GROUPS}, got {group!r}")


def pca_frames(
    pos: Tensor,
    *,
    group: str = "O3",
    center: bool = True,
    mask: Tensor | None = None,
    tol: float = 1e-6,
) -> Frames:
    """PCA frames of point clouds with every sign choice, and a degeneracy report.

    Eigenvectors are computed in float64 whatever the dtype of ``pos``.

    Args:
        pos: ``[batch, n_nodes, 3]`` positions.
        group: ``"O3"`` (8 sign choices) or ``"SO3"`` (the 4 proper ones).
        center: subtract the centroid (E(3) frames; default True). False keeps the origin,
            e.g. for the environment of an atom given relative to it.
        mask: optional ``[batch, n_nodes]`` bool, False for padding points (ignored by the PCA).
        tol: eigenvalues closer than ``tol`` times the largest count as equal.

    Returns:
        :class:`Frames` (the non-degenerate frame of every sample; see :class:`FrameAveraging`
        for the degenerate fallback).

    Shapes:
        ``pos``: ``[batch, n_nodes, 3]``; ``rotations``: ``[batch, n_frames, 3, 3]`` with
        ``n_frames`` 8 (O3) or 4 (SO3).

    Example:
        >>> import torch
        >>> frames = pca_frames(torch.randn(2, 10, 3, dtype=torch.float64))
        >>> frames.rotations.shape, frames.degenerate.tolist()
        (torch.Size([2, 8, 3, 3]), [0, 0])

    References:
        O. Puny, M. Atzmon, H. Ben-Hamu, I. Misra, A. Grover, E. J. Smith, Y. Lipman, "Frame
        averaging for invariant and equivariant network design", ICLR 2022.
    """
    _check(pos, mask, group)
    x = pos.detach().to(torch.float64)
    w = torch.ones(x.shape[:2], dtype=torch.float64, device=x.device) if mask is None else (
        mask.to(torch.float64))
    count = w.sum(1, keepdim=True).clamp_min(1.0)  # [batch, 1]
    origin = (w[..., None] * x).sum(1) / count if center else torch.zeros_like(x[:, 0])
    rel = (x - origin[:, None]) * w[..., None]  # [batch, n_nodes, 3]
    cov = rel.transpose(1, 2) @ rel / count[..., None]  # [batch, 3, 3]
    vals, vecs = torch.linalg.eigh(cov)  # ascending; columns are eigenvectors
    if group == "SO3":
        flip = torch.linalg.det(vecs) < 0
        vecs = torch.where(flip[:, None, None], vecs * vecs.new_tensor([1.0, 1.0, -1.0]), vecs)
    top = vals[:, 2:].clamp_min(torch.finfo(torch.float64).tiny)
    gaps = (vals[:, 1:] - vals[:, :2]) / top  # [batch, 2]
    small = gaps < tol
    degenerate = small.sum(1)  # 0, 1 (one pair equal) or 2 (all equal)
    signs = _signs(group, torch.float64, x.device)  # [n_frames, 3]
    rotations = vecs[:, None] * signs[None, :, None, :]  # V S: scale the columns
    return Frames(rotations.to(pos.dtype), origin.to(pos.dtype), vals, gaps, degenerate)


def _plane_rotations(k: int, i: int, j: int) -> Tensor:
    """``[k, 3, 3]`` rotations by ``2 pi m / k`` in the coordinate plane ``(i, j)``."""
    out = torch.eye(3, dtype=torch.float64).repeat(k, 1, 1)
    a = torch.arange(k, dtype=torch.float64) * (2 * math.pi / k)
    out[:, i, i], out[:, j, j] = torch.cos(a), torch.cos(a)
    out[:, i, j], out[:, j, i] = -torch.sin(a), torch.sin(a)
    return out


class FrameAveraging(nn.Module):
    """Exactly O(3)- or SO(3)-invariant/equivariant wrapper of any point-cloud model, by averaging
    it over PCA frames (``n_frames`` = 8 or 4 evaluations per sample, in one batched call).

    ``forward(pos, *args, mask=None, **kwargs)``: ``module`` is called on the canonicalised
    positions ``(pos - t) @ R`` of every frame element, folded into the batch axis; tensor
    arguments with leading dimension ``batch`` are repeated over the frames (invariant
    features, e.g. species); ``mask`` (if given) excludes padding points from the PCA and is
    passed on to ``module``. Outputs are mapped back with ``rho(R, t)`` and averaged:

    * ``"invariant"``: as is (energies, charges, class logits);
    * ``"vector"``: ``[..., 3]`` rotated, ``y @ R^T`` (forces, dipoles);
    * ``"points"``: ``[..., 3]`` rotated and translated, ``y @ R^T + t`` (positions);
    * ``"tensor"``: ``[..., 3, 3]`` as ``R y R^T``.

    Args:
        module: maps ``[batch, n_nodes, 3]`` (and the extra arguments) to ``[batch, ...]``.
        group: ``"O3"`` (default; rotations and reflections) or ``"SO3"``.
        output: one of ``"invariant"`` (default), ``"vector"``, ``"points"``, ``"tensor"``.
        center: frames centred at the centroid (translation invariance; default True).
        degenerate: what to do with samples whose covariance has equal eigenvalues (relative
            gap below ``tol``): ``"average"`` (default) over ``n_degenerate`` rotations inside
            the degenerate plane, or over I_h / I when all three are equal (approximate);
            ``"ignore"`` (use the arbitrary eigenvectors); ``"raise"`` (ValueError).
        tol: relative eigenvalue gap below which a spectrum counts as degenerate. Default 1e-6.
        n_degenerate: in-plane rotations for a doubly degenerate spectrum. Default 16.

    Shapes:
        ``pos``: ``[batch, n_nodes, 3]``; output ``[batch, ...]``.

    Example:
        >>> import torch
        >>> from equivar.symmetry import FrameAveraging
        >>> mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(15, 1)).double()
        >>> model = FrameAveraging(mlp)
        >>> pos = torch.randn(3, 5, 3, dtype=torch.float64)
        >>> Q = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64)).Q
        >>> torch.allclose(model(pos @ Q.T + 1.0), model(pos))
        True

    References:
        O. Puny, M. Atzmon, H. Ben-Hamu, I. Misra, A. Grover, E. J. Smith, Y. Lipman, "Frame
        averaging for invariant and equivariant network design", ICLR 2022.
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        group: str = "O3",
        output: str = "invariant",
        center: bool = True,
        degenerate: str = "average",
        tol: float = 1e-6,
        n_degenerate: int = 16,
    ) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"FrameAveraging wraps an nn.Module, got {type(module).__name__}")
        if group not in GROUPS:
            raise ValueError(f"group must be one of {GROUPS}, got {group!r}")
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if degenerate not in POLICIES:
            raise ValueError(f"degenerate must be one of {POLICIES}, got {degenerate!r}")
        if not isinstance(n_degenerate, int) or n_degenerate < 1:
            raise ValueError(f"n_degenerate must be a positive integer, got {n_degenerate!r}")
        self.module = module
        self.group = group
        self.output = output
        self.center = center
        self.degenerate = degenerate
        self.tol = float(tol)
        self.n_degenerate = n_degenerate

    def frames(self, pos: Tensor, mask: Tensor | None = None) -> Frames:
        """The PCA frames and degeneracy report this wrapper uses for ``pos``."""
        return pca_frames(pos, group=self.group, center=self.center, mask=mask, tol=self.tol)

    def _extra(self, frames: Frames, rows: Tensor, kind: int) -> Tensor:
        """Frames of the degenerate samples ``rows``: ``[len(rows), n_frames', 3, 3]``."""
        base = frames.rotations[rows, 0].to(torch.float64)  # V (S = identity first)
        if kind == 2:
            from equivar.symmetry.point_groups import icosahedral, with_inversion

            g = icosahedral() if self.group == "SO3" else with_inversion(icosahedral())
            extra = g.matrices().to(base.device)  # [60 or 120, 3, 3]
            return (base[:, None] @ extra[None]).to(frames.rotations.dtype)
        # one pair equal: rotate inside the plane of the pair, then every sign choice
        low = frames.gaps[rows, 0] < self.tol  # [rows]: l1 == l2, else l2 == l3
        planes = torch.stack([_plane_rotations(self.n_degenerate, 0, 1),
                              _plane_rotations(self.n_degenerate, 1, 2)]).to(base.device)
        spin = planes[(~low).long()]  # [rows, n_degenerate, 3, 3]
        signs = _signs(self.group, torch.float64, base.device)  # [n_signs, 3]
        rot = base[:, None] @ spin  # [rows, n_degenerate, 3, 3]
        out = rot[:, :, None] * signs[None, None, :, None, :]  # scale columns
        return out.reshape(len(rows), -1, 3, 3).to(frames.rotations.dtype)

    def _average(self, pos: Tensor, rot: Tensor, origin: Tensor, args, kwargs) -> Tensor:
        batch, n_frames = rot.shape[:2]
        canonical = (pos - origin[:, None])[:, None] @ rot  # [batch, n_frames, n_nodes, 3]
        folded = canonical.reshape(batch * n_frames, *pos.shape[1:])
        args, kwargs = fold_args(args, kwargs, batch, n_frames)
        y = self.module(folded, *args, **kwargs)
        if not isinstance(y, Tensor) or y.dim() < 1 or y.shape[0] != batch * n_frames:
            raise ValueError(f"FrameAveraging: the module must map [batch, ...] to [batch, ...]; "
                             f"called on {batch * n_frames} samples it returned "
                             f"{list(y.shape) if isinstance(y, Tensor) else type(y).__name__}")
        y = y.reshape(batch, n_frames, *y.shape[1:])  # [batch, n_frames, ...]
        if self.output == "invariant":
            return y.mean(1)
        r = rot.to(y.dtype)
        if self.output == "tensor":
            if y.dim() < 4 or y.shape[-2:] != (3, 3):
                raise ValueError(f"output='tensor' needs [..., 3, 3], got {list(y.shape[2:])}")
            flat = y.reshape(batch, n_frames, -1, 3, 3)
            out = r[:, :, None] @ flat @ r[:, :, None].transpose(-1, -2)
            return out.reshape(y.shape).mean(1)
        if y.shape[-1] != 3:
            raise ValueError(f"output={self.output!r} needs [..., 3], got {list(y.shape[2:])}")
        flat = y.reshape(batch, n_frames, -1, 3) @ r.transpose(-1, -2)  # y @ R^T
        if self.output == "points":
            flat = flat + origin[:, None, None].to(y.dtype)
        return flat.reshape(y.shape).mean(1)

    def forward(self, pos: Tensor, *args: Any, mask: Tensor | None = None, **kwargs: Any) -> Tensor:
        frames = self.frames(pos, mask)
        if mask is not None:
            kwargs["mask"] = mask
        kinds = frames.degenerate if self.degenerate != "ignore" else torch.zeros_like(
            frames.degenerate)
        if self.degenerate == "raise" and bool((kinds > 0).any()):
            rows = (kinds > 0).nonzero().flatten().tolist()
            raise ValueError(f"FrameAveraging: samples {rows[:10]} have degenerate covariance "
                             f"eigenvalues (relative gap < {self.tol:g}); their PCA frame is not "
                             f"defined (use degenerate='average')")
        if not bool((kinds > 0).any()):  # the common case: one call
            return self._average(pos, frames.rotations, frames.origins, args, kwargs)
        pieces, order = [], []
        batch = pos.shape[0]
        for kind in (0, 1, 2):  # at most three batched calls, one per kind of spectrum
            rows = (kinds == kind).nonzero().flatten()
            if not len(rows):
                continue
            rot = frames.rotations[rows] if kind == 0 else self._extra(frames, rows, kind)
            sub_args = tuple(a[rows] if _per_sample(a, batch) else a for a in args)
            sub_kwargs = {k: v[rows] if _per_sample(v, batch) else v for k, v in kwargs.items()}
            pieces.append(self._average(pos[rows], rot, frames.origins[rows], sub_args,
                                        sub_kwargs))
            order.append(rows)
        return torch.cat(pieces)[torch.argsort(torch.cat(order))]

    def extra_repr(self) -> str:
        return (f"group={self.group}, output={self.output}, center={self.center}, "
                f"degenerate={self.degenerate}, tol={self.tol:g}")


def _per_sample(v: Any, batch: int) -> bool:
    return isinstance(v, Tensor) and v.dim() >= 1 and v.shape[0] == batch
