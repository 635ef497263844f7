"""``equivarify``: the global lift that makes any module equivariant for a finite group.

For a map ``F: X -> Z`` and a finite group ``G`` acting on ``X``, the lift
``F^: X -> Map(G, Z)``, ``F^(x)(g) = F(g^-1 x)``, is G-equivariant for the action
``(h.f)(g) = f(h^-1 g)`` on ``Map(G, Z)`` (left translation), and evaluating it at the identity
gives ``F`` back (``F^(x)(e) = F(x)``). It is the unique such lift (Bao et al., the universal
property of ``Map(G, Z)``). Mapping the group axis further gives invariant outputs (pooling) or
outputs in any representation ``rho`` of ``G`` on ``Z``: ``x -> pool_g rho(g) F(g^-1 x)``.

The ``n_group`` evaluations run as one call of the module on a batch ``n_group`` times larger
(the group axis is folded into the batch axis), so the module must map ``[batch, ...]`` to
``[batch, ...]``.
"""

from __future__ import annotations

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
from equivar.symmetry.regular import InducedAction, RegularAction

__all__ = ["Equivarify", "equivarify"]


def _input_actions(action, group: FiniteGroup) -> tuple[Action, ...]:
    """One action per acted input: ``action`` may be a tuple/list for several inputs."""
    if isinstance(action, (tuple, list)):
        if not action:
            raise ValueError("action=() names no input; give at least one action")
        return tuple(as_action(a, group) for a in action)
    return (as_action(action, group),)


class Equivarify(nn.Module):
    """The lift of ``module`` to a G-equivariant module: ``F^(x)(g) = F(g^-1 x)``.

    Output, by option:

    * default: ``[batch, n_group, ...]`` with ``out[:, g] = F(g^-1 x)``; ``G`` acts on it by left
      translation of the group axis (``output_action`` is a :class:`RegularAction`);
    * ``invariant=True``: ``pool_g F(g^-1 x)``, ``[batch, ...]``, exactly G-invariant;
    * ``output=rho``: ``pool_g rho(g) F(g^-1 x)``, equivariant for ``rho`` (e.g. ``"vectors"``
      to predict vectors that rotate with the input); with ``pool=None`` the group axis is
      kept: ``out[:, g] = rho(g) F(g^-1 x)``, which transforms by the induced action (the
      lifting layer of a G-CNN when ``rho`` rotates feature maps).

    The lifted module holds exactly the parameters of ``module`` (the same tensors): weights are
    shared across group elements. With several input actions (``action=("points", "set")``)
    the first positional inputs are transformed jointly (e.g. positions and the species that
    move with the atoms under relabelling). Further tensor arguments whose leading dimension is
    ``batch`` are repeated over the group axis (they are treated as invariant, e.g. atom types
    under rotations); other arguments are passed through unchanged.

    Args:
        module: the ``nn.Module`` to lift; it must map ``[batch, ...]`` to ``[batch, ...]``.
        group: the finite group.
        invariant: pool over the group axis to an invariant output. Default False.
        action: how ``G`` acts on the input ``x``: an :class:`Action` or a name (see
            :func:`~equivar.symmetry.as_action`); default: rotate points ``[batch, n, 3]``
            for matrix groups, relabel them for permutation groups. A tuple gives one action
            per leading positional input.
        output: how ``G`` acts on the module's output ``Z`` (an Action or a name such as
            ``"vectors"``, ``"image"``, ``"0e+1o"``); default None (the plain lift).
        pool: ``"mean"`` (default), ``"max"`` or ``"sum"`` over the group axis when ``invariant``
            or ``output`` is given; ``None`` keeps the group axis (only with ``output``). ``"max"``
            needs an ``output`` action that permutes entries (max does not commute with
            rotations of vectors).

    Returns (forward):
        ``[batch, n_group, ...]``, or ``[batch, ...]`` when pooled; ``self.output_action`` says
        how ``G`` acts on it.

    Shapes:
        ``x``: ``[batch, ...]`` as ``action`` needs (e.g. ``[batch, n_nodes, 3]`` points,
        ``[batch, channels, H, W]`` images); output ``[batch, n_group, ...]`` or ``[batch, ...]``.

    Example:
        >>> import torch
        >>> from equivar.symmetry import equivarify, octahedral
        >>> mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 1))
        >>> model = equivarify(mlp, octahedral(), invariant=True)
        >>> pos = torch.randn(2, 4, 3)
        >>> R = octahedral().matrices()[5].float()
        >>> torch.allclose(model(pos @ R.T), model(pos), atol=1e-6)
        True

    References:
        E. Bao, J. Lu, L. Song, N. Hart-Hodgson, W. Parson, Y. Zhou, "Equivariant neural networks
        and equivarification", arXiv:1906.07172 (the lift and its universal property).
    """

    def __init__(
        self,
        module: nn.Module,
        group: FiniteGroup,
        *,
        invariant: bool = False,
        action: Action | str | None = None,
        output: Action | str | None = None,
        pool: str | None = "mean",
    ) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"equivarify lifts an nn.Module, got {type(module).__name__}")
        if not isinstance(group, FiniteGroup):
            raise TypeError(f"group must be a FiniteGroup, got {type(group).__name__}")
        if invariant and output is not None:
            raise ValueError("give either invariant=True or an output action, not both "
                             "(invariant is the trivial output action)")
        self.module = module
        self.group = group
        self.input_actions = _input_actions(action, group)
        #: the action on the first input (all of them: ``input_actions``)
        self.input_action = self.input_actions[0]
        reducing = invariant or output is not None
        if reducing and pool is not None and pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS} or None, got {pool!r}")
        if invariant and pool is None:
            raise ValueError("invariant=True pools over the group axis; pool=None would keep it "
                             "(use invariant=False for the plain lift)")
        self.rho = TrivialAction(group) if output is None else as_action(output, group)
        self.pool = pool if reducing else None
        if self.pool == "max" and not self.rho.is_permutation:
            raise ValueError(f"pool='max' commutes only with actions that permute entries; "
                             f"{self.rho!r} does not (use 'mean' or 'sum')")
        if self.pool is not None:
            self.output_action: Action = self.rho
        elif isinstance(self.rho, TrivialAction):
            self.output_action = RegularAction(group)
        else:
            self.output_action = InducedAction(self.rho)

    def lift(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        """The raw lift ``F^(x)``: ``[batch, n_group, ...]`` with ``out[:, g] = F(g^-1 x)``."""
        n, batch = len(self.group), x.shape[0]
        acted, rest = (x, *args)[: len(self.input_actions)], args[len(self.input_actions) - 1:]
        if len(acted) < len(self.input_actions):
            raise ValueError(f"the lift has {len(self.input_actions)} input actions but got "
                             f"{len(acted)} positional inputs")
        folded = [orbit_folded(a, v) for a, v in zip(self.input_actions, acted, strict=True)]
        rest, kwargs = fold_args(rest, kwargs, batch, n)
        y = check_folded(self.module(*folded, *rest, **kwargs), batch, n,
                         f"the module {type(self.module).__name__}")
        return y.reshape(batch, n, *y.shape[1:])  # [batch, n_group, ...]

    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        y = self.lift(x, *args, **kwargs)  # [batch, n_group, ...]
        if not isinstance(self.rho, TrivialAction):
            batch, n = y.shape[:2]
            self.rho.check(y[:, 0])
            elements = torch.arange(n, device=y.device).repeat(batch)  # slice g gets rho(g)
            y = self.rho.act_each(y.reshape(batch * n, *y.shape[2:]), elements).reshape(y.shape)
        if self.pool is None:
            return y
        return reduce_group_axis(y, self.pool)

    def extra_repr(self) -> str:
        out = "regular" if self.pool is None and isinstance(self.rho, TrivialAction) else (
            f"{self.output_action!r}" + (f", pool={self.pool}" if self.pool else ""))
        return (f"group={self.group.name} (n_group={len(self.group)}), "
                f"action={self.input_action!r}, output={out}")


def equivarify(
    module: nn.Module,
    group: FiniteGroup,
    invariant: bool = False,
    *,
    action: Action | str | None = None,
    output: Action | str | None = None,
    pool: str | None = "mean",
    layerwise: bool = False,
    **layerwise_options: Any,
) -> nn.Module:
    """Make ``module`` G-equivariant (or invariant) by the lift ``F^(x)(g) = F(g^-1 x)``.

    Global (default): the whole module is lifted at once, see :class:`Equivarify`.
    ``layerwise=True``: the layers of an ``nn.Sequential`` are lifted one by one and the hidden
    layers carry a group axis, see :class:`~equivar.symmetry.LayerwiseEquivarify` (G-CNNs are the
    special case of convolutions).

    Args:
        module: an ``nn.Module`` mapping ``[batch, ...]`` to ``[batch, ...]`` (an
            ``nn.Sequential`` or a list of layers for ``layerwise=True``).
        group: the finite group, e.g. ``cyclic(4)``, ``octahedral()``, ``symmetric(4)``.
        invariant: pool over the group axis (exactly invariant output). Default False.
        action: how ``G`` acts on the input (default: points for matrix groups, relabelling for
            permutation groups; ``"image"`` for rot90/flips of images).
        output: the representation the output is mapped to (global lift only), e.g.
            ``"vectors"``.
        pool: ``"mean"`` (default), ``"max"`` or ``"sum"``.
        layerwise: lift layer by layer. Default False.
        **layerwise_options: ``modes`` and ``hidden`` of :class:`LayerwiseEquivarify`.

    Returns:
        The lifted module (:class:`Equivarify` or :class:`LayerwiseEquivarify`), holding exactly
        the parameters of ``module``.

    Shapes:
        ``x``: ``[batch, ...]``; output ``[batch, n_group, ...]``, or ``[batch, ...]`` when pooled.

    Example:
        >>> import torch
        >>> from equivar.symmetry import cyclic, equivarify
        >>> cnn = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(),
        ...                           torch.nn.LazyLinear(10))
        >>> model = equivarify(cnn, cyclic(4), invariant=True, action="image")
        >>> x = torch.randn(2, 1, 8, 8)
        >>> torch.allclose(model(torch.rot90(x, 1, dims=(-2, -1))), model(x), atol=1e-5)
        True

    References:
        E. Bao, J. Lu, L. Song, N. Hart-Hodgson, W. Parson, Y. Zhou, "Equivariant neural networks
        and equivarification", arXiv:1906.07172.
    """
    if layerwise:
        if output is not None:
            raise ValueError("output= is for the global lift; the layer-wise lift ends in a "
                             "group axis (or invariant pooling)")
        from equivar.symmetry.layerwise import LayerwiseEquivarify

        return LayerwiseEquivarify(module, group, invariant=invariant, action=action, pool=pool,
                                   **layerwise_options)
    if layerwise_options:
        raise TypeError(f"unexpected options {sorted(layerwise_options)} for the global lift "
                        f"(they belong to layerwise=True)")
    return Equivarify(module, group, invariant=invariant, action=action, output=output, pool=pool)
