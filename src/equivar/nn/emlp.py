"""EMLP layers for any matrix group: linear and bilinear maps in the solved equivariant basis,
and gated nonlinearities on invariant gates.

Every layer declares ``rep_in`` / ``rep_out`` (:class:`~equivar.symmetry.Rep`) and maps
``[..., rep_in.size] -> [..., rep_out.size]``. Weights are coefficients in the basis of
:func:`~equivar.symmetry.equivariant_blocks` (solved once per pair of summand kinds, cached),
so the map is equivariant by construction for every group element, not only the generators.

References:
    M. Finzi, M. Welling, A. G. Wilson, "A practical method for constructing equivariant
    multilayer perceptrons for arbitrary matrix groups", ICML 2021.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from equivar.symmetry.constraints import EquivariantBlock, equivariant_blocks
from equivar.symmetry.reps import Rep, Scalar, Vector

__all__ = [
    "ACTIVATIONS",
    "EMLPBlock",
    "EquivariantBilinear",
    "EquivariantLinear",
    "GatedNonlinearity",
    "gated",
    "hidden_rep",
]

#: activation name -> function applied to the scalar channels
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "silu": nn.functional.silu,
    "relu": torch.relu,
    "tanh": torch.tanh,
    "gelu": nn.functional.gelu,
}


class BlockMatrix(nn.Module):
    """A learned ``[size_out, size_in]`` matrix in the span of equivariant blocks.

    Args:
        blocks: from :func:`~equivar.symmetry.equivariant_blocks`.
        size_out, size_in: the matrix shape.
        gain: standard deviation scale of the initial coefficients (0 starts at zero); 1 gives
            each output coordinate about the variance of a unit-variance input.

    Shapes:
        ``forward()``: ``[size_out, size_in]``.
    """

    def __init__(self, blocks: list[EquivariantBlock], size_out: int, size_in: int,
                 gain: float = 1.0) -> None:  # fmt: skip
        super().__init__()
        self.size_out, self.size_in = size_out, size_in
        # fan-in per output kind: sum over its blocks of n_basis * input copies
        fan: dict[int, int] = {}
        for b in blocks:
            key = int(b.out_index[0, 0])
            fan[key] = fan.get(key, 0) + b.basis.shape[0] * b.in_index.shape[0]
        self.weights = nn.ParameterList()
        flat = []
        for j, b in enumerate(blocks):
            k, m, n = b.basis.shape[0], b.out_index.shape[0], b.in_index.shape[0]
            std = gain * (b.basis.shape[1] / fan[int(b.out_index[0, 0])]) ** 0.5
            init = torch.randn(k, m, n, dtype=torch.float64) * std
            self.weights.append(nn.Parameter(init.to(torch.get_default_dtype())))
            self.register_buffer(f"basis{j}", b.basis.to(torch.get_default_dtype()),
                                 persistent=False)  # fmt: skip
            # [m, s_out, n, s_in]: where each entry of the block lands in the flat matrix
            cells = b.out_index[:, :, None, None] * size_in + b.in_index[None, None, :, :]
            flat.append(cells.reshape(-1))
        index = torch.cat(flat) if flat else torch.zeros(0, dtype=torch.long)
        self.register_buffer("index", index, persistent=False)
        # follows .to() even without blocks (an all-zero map), so the zeros get its dtype
        self.register_buffer("anchor", torch.zeros(0), persistent=False)

    @property
    def n_params(self) -> int:
        return sum(w.numel() for w in self.weights)

    def forward(self) -> Tensor:
        """The matrix ``[size_out, size_in]``."""
        dtype, device = self.anchor.dtype, self.anchor.device
        values = [torch.einsum("kmn,kst->msnt", w, getattr(self, f"basis{j}")).reshape(-1)
                  for j, w in enumerate(self.weights)]
        out = torch.zeros(self.size_out * self.size_in, dtype=dtype, device=device)
        if values:
            out = out.index_put((self.index,), torch.cat(values))
        return out.view(self.size_out, self.size_in)


def _check_reps(rep_in: Rep, rep_out: Rep, where: str) -> None:
    for name, rep in (("rep_in", rep_in), ("rep_out", rep_out)):
        if not isinstance(rep, Rep):
            raise TypeError(f"{where}: {name} must be a Rep (equivar.symmetry), got "
                            f"{type(rep).__name__}")
    rep_in.check_same_group(rep_out)


class EquivariantLinear(nn.Module):
    """``y = W x + b`` with ``W`` any equivariant map ``rep_in -> rep_out`` and ``b`` any
    invariant vector of ``rep_out``, parametrised by their basis coefficients.

    Args:
        rep_in: the input :class:`~equivar.symmetry.Rep`.
        rep_out: the output representation (same group).
        bias: learn the invariant bias (default True; starts at zero).
        method, cache: passed to :func:`~equivar.symmetry.equivariant_blocks`.

    Raises:
        TypeError, ValueError: not representations, or of different groups.

    Shapes:
        x: ``[..., rep_in.size]`` -> ``[..., rep_out.size]``

    Example:
        >>> import torch
        >>> from equivar.symmetry import Vector, special_orthogonal
        >>> V = Vector(special_orthogonal(3))
        >>> layer = EquivariantLinear(2 * V + 1, V**2)
        >>> layer(torch.randn(4, 7)).shape
        torch.Size([4, 9])

    References:
        M. Finzi, M. Welling, A. G. Wilson, ICML 2021 (section 4).
    """

    def __init__(self, rep_in: Rep, rep_out: Rep, *, bias: bool = True, method: str = "auto",
                 cache: bool | None = None) -> None:  # fmt: skip
        super().__init__()
        _check_reps(rep_in, rep_out, "EquivariantLinear")
        self.rep_in, self.rep_out = rep_in, rep_out
        blocks = equivariant_blocks(rep_in, rep_out, method=method, cache=cache)
        self.weight = BlockMatrix(blocks, rep_out.size, rep_in.size)
        self.bias = None
        if bias:
            bias_blocks = equivariant_blocks(Scalar(rep_in.group), rep_out, method=method,
                                             cache=cache)  # fmt: skip
            self.bias = BlockMatrix(bias_blocks, rep_out.size, 1, gain=0.0)

    def forward(self, x: Tensor) -> Tensor:
        y = x @ self.weight().T  # [..., rep_out.size]
        if self.bias is not None:
            y = y + self.bias()[:, 0]
        return y

    def __repr__(self) -> str:
        n = self.weight.n_params + (self.bias.n_params if self.bias is not None else 0)
        return (f"{type(self).__name__}({self.rep_in.group.name}: {self.rep_in} -> "
                f"{self.rep_out}, n_params={n})")


class EquivariantBilinear(nn.Module):
    """``y = B(x, x)`` with ``B`` an equivariant bilinear map: an equivariant linear map of
    ``u (x) v``, where ``u = x`` and ``v = x`` (``mid=None``: every bilinear map, at a cost of
    ``rep_in.size ** 2`` inputs) or ``u = L_1 x`` and ``v = L_2 x`` with two equivariant linear
    maps into a smaller ``mid`` (a low-rank bilinear map, ``mid.size ** 2`` inputs).

    The bilinear term is what lets an EMLP form invariants of vectors (a Minkowski product, a
    norm): no linear map takes a vector of O(3) or O(1,3) to a scalar.

    Args:
        rep_in, rep_out: as for :class:`EquivariantLinear`.
        mid: the representation of ``u`` and ``v`` (default None: ``rep_in`` itself).
        gain: scale of the initial coefficients of the map on ``u (x) v`` (default 1).
        method, cache: passed to :func:`~equivar.symmetry.equivariant_blocks`.

    Shapes:
        x: ``[..., rep_in.size]`` -> ``[..., rep_out.size]``

    Example:
        >>> import torch
        >>> from equivar.symmetry import Vector, special_orthogonal
        >>> V = Vector(special_orthogonal(3))
        >>> EquivariantBilinear(V, V)(torch.randn(2, 3)).shape  # a multiple of x cross x = 0
        torch.Size([2, 3])
    """

    def __init__(self, rep_in: Rep, rep_out: Rep, *, mid: Rep | None = None, gain: float = 1.0,
                 method: str = "auto", cache: bool | None = None) -> None:  # fmt: skip
        super().__init__()
        _check_reps(rep_in, rep_out, "EquivariantBilinear")
        self.rep_in, self.rep_out, self.mid = rep_in, rep_out, mid
        self.left = self.right = None
        if mid is not None:
            rep_in.check_same_group(mid)
            self.left = EquivariantLinear(rep_in, mid, bias=False, method=method, cache=cache)
            self.right = EquivariantLinear(rep_in, mid, bias=False, method=method, cache=cache)
        inner = rep_in if mid is None else mid
        square = inner * inner
        blocks = equivariant_blocks(square, rep_out, method=method, cache=cache)
        self.weight = BlockMatrix(blocks, rep_out.size, square.size, gain=gain)

    def forward(self, x: Tensor) -> Tensor:
        u, v = (x, x) if self.left is None else (self.left(x), self.right(x))
        outer = (u[..., :, None] * v[..., None, :]).flatten(-2)  # [..., inner.size ** 2]
        return outer @ self.weight().T

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.parameters())
        via = "" if self.mid is None else f" via {self.mid}"
        return (f"{type(self).__name__}({self.rep_in.group.name}: {self.rep_in} -> "
                f"{self.rep_out}{via}, n_params={n})")


def _gated_terms(rep: Rep) -> int:
    return sum(1 for atoms, _ in rep.terms() if atoms)


def gated(rep: Rep) -> Rep:
    """``rep`` plus one scalar gate per non-scalar summand: what a layer feeding
    :class:`GatedNonlinearity` ``(rep)`` must output.

    Example:
        >>> from equivar.symmetry import Vector, special_orthogonal
        >>> V = Vector(special_orthogonal(3))
        >>> str(gated(2 * V + 3))
        '2*V + 5'
    """
    n = _gated_terms(rep)
    return rep + n if n else rep


class GatedNonlinearity(nn.Module):
    """The activation on scalar summands, ``v * sigmoid(gate)`` on every other summand, each
    with its own invariant gate (equivariant for any group: the gate is a scalar).

    Args:
        rep: the representation after the nonlinearity.
        activation: for the scalars, a name in :data:`ACTIVATIONS` (default ``"silu"``).

    Shapes:
        x: ``[..., gated(rep).size]`` (``rep``'s coordinates, then the gates in the order of
        ``rep``'s non-scalar summands) -> ``[..., rep.size]``

    Example:
        >>> import torch
        >>> from equivar.symmetry import Vector, orthogonal
        >>> V = Vector(orthogonal(1, 3))
        >>> GatedNonlinearity(V + 2)(torch.randn(5, 7)).shape
        torch.Size([5, 6])
    """

    def __init__(self, rep: Rep, activation: str = "silu") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of "
                             f"{sorted(ACTIVATIONS)}")
        self.rep_out, self.rep_in = rep, gated(rep)
        self.activation = activation
        gate = torch.zeros(rep.size, dtype=torch.long)  # gate column of each coordinate
        scalar = torch.zeros(rep.size, dtype=torch.bool)
        j = 0
        for atoms, index in rep.terms():
            if atoms:
                gate[index] = rep.size + j
                j += 1
            else:
                scalar[index] = True
        self.register_buffer("gate", gate, persistent=False)
        self.register_buffer("scalar", scalar, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        values = x[..., : self.rep_out.size]  # [..., rep.size]
        gates = torch.sigmoid(x.index_select(-1, self.gate))  # [..., rep.size]
        return torch.where(self.scalar, ACTIVATIONS[self.activation](values), values * gates)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.rep_out}, activation={self.activation!r})"


class EMLPBlock(nn.Module):
    """One EMLP layer: :class:`EquivariantLinear` (plus :class:`EquivariantBilinear` when
    ``bilinear``) to ``gated(rep_out)``, then :class:`GatedNonlinearity`.

    Args:
        rep_in, rep_out: the block's input and output representations.
        bilinear: add the bilinear term (default False).
        bilinear_mid: the bilinear term's ``mid`` (default None: the full bilinear map).
        bilinear_scale: fixed factor on the bilinear term (default 0.1, as EMLP's reference
            code): at 1 the products compound from layer to layer (a 3-layer model started
            ~20x the spread of a standardised target and trained to a poor fit), and the small
            factor also slows its learning relative to the linear term.
        activation: for the scalar channels (default ``"silu"``).
        method, cache: passed to the solver.

    Shapes:
        x: ``[..., rep_in.size]`` -> ``[..., rep_out.size]``
    """

    def __init__(self, rep_in: Rep, rep_out: Rep, *, bilinear: bool = False,
                 bilinear_mid: Rep | None = None, bilinear_scale: float = 0.1,
                 activation: str = "silu", method: str = "auto",
                 cache: bool | None = None) -> None:  # fmt: skip
        super().__init__()
        self.rep_in, self.rep_out = rep_in, rep_out
        self.bilinear_scale = float(bilinear_scale)
        self.linear = EquivariantLinear(rep_in, gated(rep_out), method=method, cache=cache)
        self.bilinear = None
        if bilinear:
            self.bilinear = EquivariantBilinear(rep_in, gated(rep_out), mid=bilinear_mid,
                                                method=method, cache=cache)  # fmt: skip
        self.nonlinearity = GatedNonlinearity(rep_out, activation)

    def forward(self, x: Tensor) -> Tensor:
        h = self.linear(x)  # [..., gated(rep_out).size]
        if self.bilinear is not None:
            h = h + self.bilinear_scale * self.bilinear(x)
        return self.nonlinearity(h)


def hidden_rep(group, num_channels: int, max_order: int = 2) -> Rep:
    """A hidden representation of about ``num_channels`` coordinates spread evenly over the
    tensor orders ``V**0 .. V**max_order`` (EMLP's uniform allocation): order ``r`` gets
    ``num_channels // ((max_order + 1) * d**r)`` copies; scalars and ``V`` at least one.

    Args:
        group: the :class:`~equivar.symmetry.MatrixGroup`.
        num_channels: the target size.
        max_order: the highest tensor order (default 2).

    Returns:
        A :class:`~equivar.symmetry.Rep`.

    Example:
        >>> from equivar.symmetry import special_orthogonal
        >>> str(hidden_rep(special_orthogonal(3), 96))
        '32 + 10*V + 3*V**2'
    """
    if num_channels < 1 or max_order < 0:
        raise ValueError(f"hidden_rep needs num_channels >= 1 and max_order >= 0, got "
                         f"{num_channels} and {max_order}")
    V = Vector(group)  # noqa: N806 - the paper's name
    parts = []
    for r in range(max_order + 1):
        copies = num_channels // ((max_order + 1) * group.d**r)
        copies = max(copies, 1) if r <= 1 else copies
        if copies:
            parts.append((copies, r))
    rep = None
    for copies, r in sorted(parts, key=lambda p: p[1] != 0):
        term = copies * V**r if r else copies * Scalar(group)
        rep = term if rep is None else rep + term
    return rep
