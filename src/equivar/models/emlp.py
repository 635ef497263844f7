"""``EMLP``: an equivariant multilayer perceptron for any matrix group (Finzi et al. 2021), and
its builder ``build("emlp", group=..., rep_in=..., rep_out=...)``.

The model maps a flat feature vector that transforms by ``rep_in`` to one that transforms by
``rep_out``: ``num_layers`` :class:`~equivar.nn.emlp.EMLPBlock` s on a hidden representation
spread over the tensor orders ``V**0 .. V**max_order``
(:func:`~equivar.nn.emlp.hidden_rep`), then an :class:`~equivar.nn.emlp.EquivariantLinear`
readout. Every weight is a coefficient in a solved equivariant basis, so the model is
equivariant for every group element by construction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from equivar.models.build import check_options, construct
from equivar.nn.emlp import EMLPBlock, EquivariantLinear, hidden_rep
from equivar.symmetry.classical_groups import matrix_group
from equivar.symmetry.reps import Rep, as_rep

__all__ = ["EMLP", "EMLP_PRESETS", "build_emlp"]

#: size presets of ``build("emlp")``: hidden size and depth (the paper used 384 channels and
#: 3 layers)
EMLP_PRESETS: dict[str, dict[str, Any]] = {
    "S": dict(num_channels=64, num_layers=2),
    "M": dict(num_channels=128, num_layers=3),
    "L": dict(num_channels=384, num_layers=3),
}

_OPTIONS = ("group", "rep_in", "rep_out", "preset", "num_channels", "num_layers", "max_order",
            "bilinear", "bilinear_channels", "activation", "dtype")  # fmt: skip


class EMLP(nn.Module):
    """Equivariant MLP: ``rep_in -> hidden -> ... -> hidden -> rep_out``.

    Args:
        group: a :class:`~equivar.symmetry.MatrixGroup`, a group name (``"SO(3)"``,
            ``"O(1,3)"``, ``"S(5)xSO(3)"``, see :func:`~equivar.symmetry.matrix_group`) or a
            :class:`~equivar.symmetry.FiniteGroup`.
        rep_in: the input representation: a :class:`~equivar.symmetry.Rep` or an expression
            such as ``"2*V"`` (see :func:`~equivar.symmetry.as_rep`).
        rep_out: the output representation (``"1"``: an invariant scalar).
        num_channels: hidden size (default 128).
        num_layers: gated blocks (default 3, >= 1).
        max_order: highest tensor order in the hidden representation (default 2).
        bilinear: add a bilinear term to every block (default True, as in the paper: without
            it no layer can form invariants of vectors, such as a Minkowski product).
        bilinear_channels: size of the representation the bilinear term multiplies (its
            ``mid``, from :func:`~equivar.nn.emlp.hidden_rep`; default 32).
        activation: for the scalar channels (default ``"silu"``).
        config: the plain-data options that rebuild the model (set by the builder).

    Raises:
        ValueError: bad sizes, unknown activation, unreadable group or representations.

    Shapes:
        x: ``[batch, rep_in.size]`` -> ``[batch, rep_out.size]``

    Example:
        >>> import torch
        >>> model = EMLP(group="O(1,3)", rep_in="2*V", rep_out="1", num_channels=32,
        ...              num_layers=1)
        >>> model(torch.randn(5, 8)).shape
        torch.Size([5, 1])

    References:
        M. Finzi, M. Welling, A. G. Wilson, "A practical method for constructing equivariant
        multilayer perceptrons for arbitrary matrix groups", ICML 2021.
    """

    def __init__(
        self,
        *,
        group,
        rep_in: Rep | str | int,
        rep_out: Rep | str | int,
        num_channels: int = 128,
        num_layers: int = 3,
        max_order: int = 2,
        bilinear: bool = True,
        bilinear_channels: int = 32,
        activation: str = "silu",
        config: Mapping | None = None,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.group = matrix_group(group)
        self.rep_in = as_rep(rep_in, self.group)
        self.rep_out = as_rep(rep_out, self.group)
        hidden = hidden_rep(self.group, int(num_channels), int(max_order))
        mid = hidden_rep(self.group, int(bilinear_channels), int(max_order))
        reps = [self.rep_in] + [hidden] * num_layers
        self.blocks = nn.ModuleList(
            EMLPBlock(a, b, bilinear=bilinear, bilinear_mid=mid, activation=activation)
            for a, b in zip(reps[:-1], reps[1:], strict=True)
        )
        self.readout = EquivariantLinear(hidden, self.rep_out)
        #: the options this model was built with (a checkpoint stores them to rebuild it)
        self.config = dict(config or {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.rep_in.size:
            raise ValueError(f"EMLP: x must be [batch, {self.rep_in.size}] (rep_in = "
                             f"{self.rep_in}), got {list(x.shape)}")
        for block in self.blocks:
            x = block(x)  # [batch, hidden.size]
        return self.readout(x)  # [batch, rep_out.size]


def _plain_group(group) -> str | Any:
    """The group's name when :func:`matrix_group` rebuilds the same group from it (so the
    config is plain data), else the object itself."""
    group = matrix_group(group)
    try:
        if matrix_group(group.name) == group:
            return group.name
    except ValueError:
        pass
    return group


def build_emlp(**options: Any) -> EMLP:
    """Equivariant MLP for any matrix group; ``build("emlp", ...)`` calls this.

    Options (keyword-only; explicit options override the preset):
        group: required; a name (``"SO(3)"``, ``"O(1,3)"``, ``"Sp(4)"``, ``"S(5)xSO(3)"``), a
            :class:`~equivar.symmetry.MatrixGroup` or a :class:`~equivar.symmetry.FiniteGroup`.
            Named groups are stored by name, so checkpoints rebuild them.
        rep_in, rep_out: required; representations or expressions (``"3*V + V**2"``,
            ``"V[0]*V[1]"``, ``"1"``), stored as expressions.
        preset: ``"S"``, ``"M"`` (default) or ``"L"`` (see ``EMLP_PRESETS``).
        num_channels, num_layers: hidden size and depth (from the preset).
        max_order: highest hidden tensor order (default 2).
        bilinear, bilinear_channels: low-rank bilinear term in every block (default True) and
            its size (default 32).
        activation: ``"silu"`` (default), ``"relu"``, ``"tanh"`` or ``"gelu"``.
        dtype: ``"float32"``/``"float64"`` or a torch dtype (default: torch's default); built
            in float64 and cast.

    Example:
        >>> from equivar.models import build
        >>> build("emlp", group="SO(3)", rep_in="2*V", rep_out="V", preset="S").config["group"]
        'SO(3)'

    Raises:
        ValueError: unknown option (naming the closest valid one), missing group or
            representations, bad values.
    """
    check_options(options, _OPTIONS, "emlp")
    missing = [k for k in ("group", "rep_in", "rep_out") if k not in options]
    if missing:
        raise ValueError(f"build('emlp') needs {', '.join(missing)}, e.g. group='SO(3)', "
                         f"rep_in='2*V', rep_out='1'")
    preset = options.pop("preset", "M")
    if preset not in EMLP_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(EMLP_PRESETS)}")
    opts = {"max_order": 2, "bilinear": True, "bilinear_channels": 32, "activation": "silu",
            **EMLP_PRESETS[preset], **options}  # fmt: skip
    group = matrix_group(opts["group"])
    opts["group"] = _plain_group(group)
    opts["rep_in"] = str(as_rep(opts["rep_in"], group))
    opts["rep_out"] = str(as_rep(opts["rep_out"], group))
    return construct(EMLP, opts, "emlp")
