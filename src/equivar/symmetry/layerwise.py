"""Layer-wise equivarification: every layer of a network lifted in turn, hidden layers carrying a
group axis (the construction of Bao et al.'s figure 2; G-CNNs are the special case of
convolutions).

Hidden features live in ``Map(G, X_i)``, stored as ``[batch, n_group, *S_i]``, on which ``G``
acts by the induced action ``(h.f)(g) = rho_i(h) f(h^-1 g)`` (:class:`InducedAction`). Each
layer ``L`` is lifted with the same formula as the global lift, applied to what the layer reads:

* ``"lift"`` (the first layer): ``f(g) = rho_1(g) L(g^-1 x)``;
* ``"group"``: the layer reads the whole ``Map(G, X_{i-1})``, the group axis folded into its
  channel axis (``Conv*d``: ``[n_group * C, H, W]``; ``Linear``: ``[..., n_group * C]``):
  ``f'(g) = rho_i(g) L(g^-1 . f)``. For a convolution and ``rho`` rotating feature maps this is
  exactly a group convolution (Cohen & Welling 2016);
* ``"pointwise"``: the layer reads one slice: ``f'(g) = rho_i(g) L(rho_{i-1}(g)^-1 f(g))``; for
  element-wise layers (activations) and actions that permute entries this is ``L(f(g))``.

The same parameters serve every group element, so the lifted network has exactly the parameters
of the layers given. ``hidden="induced"`` (default) keeps the input's action on slices whose
shape it still fits (feature maps stay rotated feature maps, per-point features stay
per-point), ``hidden="regular"`` uses the plain left translation ``(h.f)(g) = f(h^-1 g)`` of the
paper on every hidden layer. Both give exactly equivariant networks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from equivar.symmetry.actions import as_action
from equivar.symmetry.base_action import Action, TrivialAction
from equivar.symmetry.groups import FiniteGroup
from equivar.symmetry.orbits import (
    POOLS,
    check_folded,
    fold_args,
    orbit_folded,
    reduce_group_axis,
)
from equivar.symmetry.regular import InducedAction

__all__ = ["LayerwiseEquivarify", "MODES"]

MODES = ("auto", "lift", "group", "pointwise")

#: layers applied entry by entry: they commute with every action that permutes entries
_ELEMENTWISE = (
    nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid,
    nn.Dropout,
)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


class LayerwiseEquivarify(nn.Module):
    """Lift a sequence of layers one by one: hidden layers carry ``Map(G, X_i)`` on a group axis,
    with weights shared across group elements.

    Modes (``modes``, one per layer, ``"auto"`` by default): the first layer is the ``"lift"``;
    a ``Conv*d`` whose ``in_channels`` (a ``Linear`` whose ``in_features``) is ``n_group`` times
    the incoming channels is a ``"group"`` layer; everything else is ``"pointwise"``. So a
    layer-wise network is written as a plain network whose layers after the first take
    ``n_group`` times more channels where they should mix group elements (see the module
    docstring for the formulas).

    Extra arguments of ``forward`` go to the first layer (tensors with leading dimension
    ``batch`` repeated over the group axis, as invariant inputs).

    Args:
        layers: an ``nn.Sequential`` or a sequence of modules, each mapping ``[batch, ...]`` to
            ``[batch, ...]``.
        group: the finite group.
        action: how ``G`` acts on the input (see :func:`~equivar.symmetry.as_action`; ``"image"``
            for rot90/flips).
        modes: per-layer ``"auto"``, ``"lift"`` (first layer only), ``"group"`` or
            ``"pointwise"``. Default all ``"auto"``.
        hidden: ``"induced"`` (default; G-CNN feature maps) or ``"regular"`` (left translation
            of the group axis only, as in the paper).
        invariant: pool the last layer's group axis (exactly invariant output; slices that
            carry an action, such as feature maps, are first mapped back by ``rho(g)^-1``).
            Default False.
        pool: ``"mean"`` (default), ``"max"`` or ``"sum"`` for ``invariant``.

    Returns (forward):
        ``[batch, n_group, ...]`` (``self.output_action``, set by each call, says how ``G`` acts
        on it), or ``[batch, ...]`` when ``invariant``.

    Raises:
        ValueError: a ``"group"`` layer whose input size does not fit ``n_group`` times the
            incoming channels, a layer that changes the batch size, or a bad mode.

    Shapes:
        ``x``: ``[batch, ...]``; hidden ``[batch, n_group, *S_i]``; output
        ``[batch, n_group, ...]`` or ``[batch, ...]``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from equivar.symmetry import LayerwiseEquivarify, cyclic
        >>> net = LayerwiseEquivarify(
        ...     [nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4 * 4, 8, 3, padding=1),
        ...      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)],
        ...     cyclic(4), action="image", invariant=True)
        >>> x = torch.randn(2, 1, 8, 8)
        >>> torch.allclose(net(torch.rot90(x, 1, dims=(-2, -1))), net(x), atol=1e-5)
        True

    References:
        E. Bao, J. Lu, L. Song, N. Hart-Hodgson, W. Parson, Y. Zhou, "Equivariant neural networks
        and equivarification", arXiv:1906.07172 (layer-wise equivarification, figure 2).
        T. Cohen, M. Welling, "Group equivariant convolutional networks", ICML 2016.
    """

    def __init__(
        self,
        layers: nn.Sequential | Sequence[nn.Module],
        group: FiniteGroup,
        *,
        action: Action | str | None = None,
        modes: Sequence[str] | None = None,
        hidden: str = "induced",
        invariant: bool = False,
        pool: str | None = "mean",
    ) -> None:
        super().__init__()
        layers = list(layers)
        if not layers or not all(isinstance(m, nn.Module) for m in layers):
            raise TypeError("LayerwiseEquivarify needs a non-empty nn.Sequential or list of "
                            "nn.Module layers")
        if not isinstance(group, FiniteGroup):
            raise TypeError(f"group must be a FiniteGroup, got {type(group).__name__}")
        modes = ["auto"] * len(layers) if modes is None else list(modes)
        if len(modes) != len(layers):
            raise ValueError(f"modes has {len(modes)} entries for {len(layers)} layers")
        for k, m in enumerate(modes):
            if m not in MODES:
                raise ValueError(f"mode {m!r} of layer {k} is not one of {MODES}")
            if m == "lift" and k != 0:
                raise ValueError(f"only the first layer is the 'lift'; layer {k} has mode 'lift'")
        if modes[0] not in ("auto", "lift"):
            raise ValueError(f"the first layer is the lift; its mode is {modes[0]!r}")
        if hidden not in ("induced", "regular"):
            raise ValueError(f"hidden must be 'induced' or 'regular', got {hidden!r}")
        if invariant and pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS} for invariant=True, got {pool!r}")
        self.layers = nn.ModuleList(layers)
        self.group = group
        self.input_action = as_action(action, group)
        self.modes = modes
        self.hidden = hidden
        self.invariant = invariant
        self.pool = pool if invariant else None
        self.output_action: Action = TrivialAction(group) if invariant else InducedAction(
            TrivialAction(group))

    # --- helpers ----------------------------------------------------------------------------------
    def _next_inner(self, inner: Action, s_in: torch.Size, y: Tensor) -> Action:
        """The action on the slices of a layer's output (see ``hidden``)."""
        if self.hidden == "regular" or isinstance(inner, TrivialAction):
            return TrivialAction(self.group)
        s_out = y.shape[1:]
        probe = torch.empty((1, *s_out), dtype=y.dtype, device="meta")
        if len(s_out) == len(s_in) and inner.accepts(probe):
            return inner
        return TrivialAction(self.group)

    def _mode(self, k: int, layer: nn.Module, s: torch.Size) -> str:
        mode = self.modes[k]
        if mode == "auto":
            if isinstance(layer, _CONV):
                mode = self._channel_mode(k, layer, layer.in_channels, s[0] if s else None)
            elif isinstance(layer, nn.Linear):
                mode = self._channel_mode(k, layer, layer.in_features, s[-1] if s else None)
            else:
                mode = "pointwise"
        return mode

    def _channel_mode(self, k: int, layer: nn.Module, n_in: int, c: int | None) -> str:
        n = len(self.group)
        if c is not None and n_in == n * c:
            return "group"
        if c is not None and n_in == c:
            return "pointwise"
        raise ValueError(
            f"layer {k} ({layer}) takes {n_in} input channels but receives Map(G, X) with "
            f"n_group = {n} slices of {c} channels: build it with {c} inputs to apply it to each "
            f"group element ('pointwise') or with {n} * {c} = {n * (c or 0)} to mix them "
            f"('group')")

    # --- forward ----------------------------------------------------------------------------------
    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        n, batch = len(self.group), x.shape[0]
        group_elements = torch.arange(n, device=x.device)
        elements = group_elements.repeat(batch)  # [batch * n_group]: slice g of each sample
        inverse = self.group.inverses().to(x.device).repeat(batch)
        args, kwargs = fold_args(args, kwargs, batch, n)

        # the lift: f(g) = rho_1(g) L(g^-1 x)
        inner = self.input_action
        y = check_folded(self.layers[0](orbit_folded(inner, x), *args, **kwargs), batch, n,
                         "layer 0")
        inner = self._next_inner(inner, x.shape[1:], y)
        y = inner.act_each(y, elements)  # [batch * n_group, *S_1]

        for k in range(1, len(self.layers)):
            layer, s = self.layers[k], y.shape[1:]
            mode = self._mode(k, layer, s)
            if mode == "pointwise":
                if isinstance(layer, _ELEMENTWISE) and inner.is_permutation:
                    out = check_folded(layer(y), batch, n, f"layer {k}")  # commutes: L(f(g))
                    new_inner = inner if out.shape == y.shape else self._next_inner(inner, s, out)
                else:
                    canonical = inner.act_each(y, inverse)  # rho(g)^-1 f(g)
                    out = check_folded(layer(canonical), batch, n, f"layer {k}")
                    new_inner = self._next_inner(inner, s, out)
                    out = new_inner.act_each(out, elements)
            elif mode == "group":
                hidden = y.reshape(batch, n, *s)  # [batch, n_group, *S]
                tiled = hidden.unsqueeze(1).expand(batch, n, n, *s).reshape(batch * n, n, *s)
                moved = InducedAction(inner).act_each(tiled, inverse)  # g^-1 . f, every g
                if isinstance(layer, nn.Linear) or not s:
                    # group axis into the last (feature) axis: [..., n_group * C]
                    flat = moved.movedim(1, -2) if s else moved
                    flat = flat.reshape(batch * n, *s[:-1], -1)
                else:
                    flat = moved.reshape(batch * n, n * s[0], *s[1:])  # [n_group * C, ...]
                out = check_folded(layer(flat), batch, n, f"layer {k}")
                new_inner = self._next_inner(inner, s, out)
                out = new_inner.act_each(out, elements)
            else:
                raise ValueError(f"layer {k}: mode {mode!r} is not valid after the first layer")
            y, inner = out, new_inner

        if self.invariant:
            # pool rho(g)^-1 f(g), which transforms by the regular action alone, so the pooled
            # output is invariant even when the last slices carry an action (feature maps)
            y = inner.act_each(y, inverse).reshape(batch, n, *y.shape[1:])
            self.output_action = TrivialAction(self.group)
            return reduce_group_axis(y, self.pool)
        y = y.reshape(batch, n, *y.shape[1:])  # [batch, n_group, *S_last]
        self.output_action = InducedAction(inner)
        return y

    def extra_repr(self) -> str:
        return (f"group={self.group.name} (n_group={len(self.group)}), "
                f"action={self.input_action!r}, hidden={self.hidden}, modes={self.modes}, "
                f"invariant={self.invariant}" + (f", pool={self.pool}" if self.pool else ""))
