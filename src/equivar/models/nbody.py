"""Particle dynamics: predict where interacting particles will be (the charged N-body task)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from equivar import keys
from equivar._suggest import did_you_mean
from equivar.data.datasets.nbody import VELOCITIES
from equivar.models.backbone import hidden_irreps
from equivar.models.build import check_options, construct
from equivar.nn.attention import SE3TransformerBlock
from equivar.nn.egnn import EGNNLayer
from equivar.nn.harmonics import EdgeSphericalHarmonics
from equivar.nn.interaction import InteractionBlock
from equivar.nn.linear import IrrepsLinear
from equivar.nn.radial import GaussianBasis

__all__ = ["EDGE_FEATURES", "LAYERS", "NBODY_PRESETS", "NBodyModel", "build_nbody"]

#: size presets of the N-body model ("M" is the EGNN paper's 64 features x 4 layers)
NBODY_PRESETS: dict[str, dict[str, Any]] = {
    "S": dict(num_channels=32, num_layers=3, lmax=1, sh_lmax=2, radial_hidden=(32,)),
    "M": dict(num_channels=64, num_layers=4, lmax=1, sh_lmax=2, radial_hidden=(64,)),
    "L": dict(num_channels=128, num_layers=6, lmax=2, sh_lmax=3, radial_hidden=(64, 64)),
    # our best on the charged N-body benchmark: EGNN as a learned 8-step integrator with
    # softened Coulomb features and one shared layer (benchmarks/RESULTS.md, nbody.py)
    "integrator": dict(num_channels=64, num_layers=8, lmax=1, sh_lmax=2, radial_hidden=(64,),
                       edge_features="coulomb", carry_velocity=True, share_weights=True),
}

#: message-passing layers the model can stack
LAYERS = ("egnn", "tfn", "se3_transformer", "linear")


#: invariant edge features of the EGNN trunk (see ``NBodyModel``'s ``edge_features``)
EDGE_FEATURES = ("charges", "coulomb")


class _EGNNTrunk(nn.Module):
    """EGNN with velocities: h from speeds, invariant edge attributes, positions updated per layer.

    ``edge_features="charges"`` gives every layer the paper's ``q_i q_j``; ``"coulomb"`` adds the
    softened ``q_i q_j / (r^2 + s)``, ``1 / (r^2 + s)`` and ``q_i q_j / (r^2 + s)^(3/2)``
    (``s = softening``), recomputed at every layer from the updated positions, so a layer can
    express a Coulomb-like force without learning ``1/r^3`` from ``r^2``.

    ``carry_velocity=False`` is the paper's form: every layer moves the positions by
    ``phi_v(h) v_in + sum_j (x_i - x_j) phi_x(m_ij)`` with the input velocity ``v_in``. With
    ``carry_velocity=True`` the trunk is a learned integrator of ``L`` steps: the displacement of
    layer ``l`` is the velocity ``v_l`` that layer ``l + 1`` rescales and updates,
    ``v_{l+1} = phi_v(h) v_l + sum_j (x_i - x_j) phi_x(m_ij)``, ``x_{l+1} = x_l + v_{l+1}``,
    from ``v_0 = v_in / L``; ``phi_v`` starts at 1 (its last layer's weights at 1e-3 of their
    initial scale, its bias at 1), so the untrained trunk is the constant-velocity step
    ``x + v_in`` over one unit of time. (Without that start the product of ``L`` random
    ``phi_v`` factors shrinks the velocity, and deep stacks trained badly in our N-body runs.)

    ``share_weights=True`` applies one layer ``num_layers`` times (the same learned force law at
    every step of the integrator; 1/L of the parameters).

    The optional velocity head is one more EGNN layer whose coordinate update (along the edges
    plus a learned multiple of the velocity) is read as the predicted velocity.
    """

    def __init__(self, num_channels: int, num_layers: int, predict_velocity: bool,
                 aggregation: str, edge_features: str = "charges", softening: float = 0.1,
                 carry_velocity: bool = False, share_weights: bool = False) -> None:
        super().__init__()
        if edge_features not in EDGE_FEATURES:
            hint = did_you_mean(str(edge_features), EDGE_FEATURES)
            hint = f" ({hint})" if hint else ""
            raise ValueError(f"unknown edge_features {edge_features!r}{hint}; choose one of "
                             f"{EDGE_FEATURES}")
        if not softening > 0:
            raise ValueError(f"softening must be > 0, got {softening}")
        self.edge_features, self.softening = edge_features, float(softening)
        self.carry_velocity = bool(carry_velocity)
        n_attrs = 1 if edge_features == "charges" else 4
        self.embed = nn.Linear(1, num_channels)
        self.num_steps, self.share_weights = int(num_layers), bool(share_weights)
        self.layers = nn.ModuleList(
            EGNNLayer(num_channels, num_edge_attrs=n_attrs, aggregation=aggregation)
            for _ in range(1 if share_weights else num_layers)
        )
        self.vel_head = (EGNNLayer(num_channels, num_edge_attrs=n_attrs, aggregation=aggregation,
                                   coord_init_scale=1.0) if predict_velocity else None)
        if self.carry_velocity:
            with torch.no_grad():
                for layer in self.layers:
                    layer.vel_mlp[-1].weight.mul_(1e-3)
                    layer.vel_mlp[-1].bias.fill_(1.0)

    @property
    def steps(self) -> list[EGNNLayer]:
        """The layer applied at each of the ``num_layers`` steps."""
        return [self.layers[0 if self.share_weights else k] for k in range(self.num_steps)]

    def _edge_attr(self, x: torch.Tensor, qq: torch.Tensor, edge_index: torch.Tensor):
        """Invariant edge attributes at positions ``x``: [n_edges, 1] or [n_edges, 4]."""
        if self.edge_features == "charges":
            return qq
        rel = x[edge_index[1]] - x[edge_index[0]]  # [n_edges, 3]
        inv = 1.0 / ((rel * rel).sum(-1, keepdim=True) + self.softening)  # [n_edges, 1]
        return torch.cat([qq, qq * inv, inv, qq * inv * inv.sqrt()], dim=-1)

    def forward(self, pos, vel, charges, edge_index):
        h = self.embed(torch.linalg.vector_norm(vel, dim=-1, keepdim=True))  # [n_nodes, C]
        qq = (charges[edge_index[0]] * charges[edge_index[1]]).unsqueeze(-1)  # [n_edges, 1]
        x, v = pos, (vel / self.num_steps if self.carry_velocity else vel)
        for layer in self.steps:
            h, x_new = layer(h, x, edge_index, v, self._edge_attr(x, qq, edge_index))
            if self.carry_velocity:
                v = x_new - x
            x = x_new
        vel_out = None
        if self.vel_head is not None:
            vel_out = self.vel_head(h, x, edge_index, v, self._edge_attr(x, qq, edge_index))[1]
            vel_out = vel_out - x  # [n_nodes, 3]
        return x, vel_out

    def extra_repr(self) -> str:
        return (f"edge_features={self.edge_features!r}"
                + (f", softening={self.softening}" if self.edge_features == "coulomb" else "")
                + (", carry_velocity=True" if self.carry_velocity else "")
                + (f", one layer shared by {self.num_steps} steps" if self.share_weights else ""))


class _SteerableTrunk(nn.Module):
    """Tensor-field network (``tfn``) or SE(3)-Transformer blocks on l <= lmax features.

    Node inputs: the speed (0e) and the velocity (1o); edge invariants: a Gaussian basis of the
    distance and q_i q_j; outputs: a displacement (and a velocity change) read out as 1o.
    """

    def __init__(self, layer: str, num_channels: int, num_layers: int, lmax: int, sh_lmax: int,
                 radial_hidden: Sequence[int], num_basis: int, max_radius: float,
                 num_heads: int, predict_velocity: bool, backend: str) -> None:
        super().__init__()
        if lmax < 1:
            raise ValueError(f"lmax must be >= 1 for layer={layer!r} (vectors in, vectors out)")
        hidden = hidden_irreps(num_channels, lmax)
        self.sh = EdgeSphericalHarmonics(sh_lmax)
        self.radial = GaussianBasis(max_radius, num_basis)
        num_radial = num_basis + 1  # + q_i q_j
        self.embed = IrrepsLinear("1x0e+1x1o", hidden)
        blocks = []
        for _ in range(num_layers):
            if layer == "tfn":
                blocks.append(InteractionBlock(hidden, hidden, self.sh.irreps_out, num_radial,
                                               radial_hidden, avg_num_neighbors=4.0,
                                               backend=backend))
            else:
                blocks.append(SE3TransformerBlock(hidden, hidden, self.sh.irreps_out, num_radial,
                                                  num_heads, radial_hidden=radial_hidden,
                                                  backend=backend))
        self.blocks = nn.ModuleList(blocks)
        self.readout = IrrepsLinear(hidden, "2x1o" if predict_velocity else "1x1o")
        self.predict_velocity = predict_velocity

    def forward(self, pos, vel, charges, edge_index):
        sender, receiver = edge_index[0], edge_index[1]
        edge_vec = pos[sender] - pos[receiver]  # [n_edges, 3] (keys.py convention)
        edge_len = torch.linalg.vector_norm(edge_vec, dim=-1)  # [n_edges]
        qq = (charges[sender] * charges[receiver]).unsqueeze(-1)  # [n_edges, 1]
        edge_radial = torch.cat([self.radial(edge_len), qq], dim=-1)  # [n_edges, num_radial]
        edge_sh = self.sh(edge_vec)  # [n_edges, sh.dim]
        speed = torch.linalg.vector_norm(vel, dim=-1, keepdim=True)  # [n_nodes, 1]
        h = self.embed(torch.cat([speed, vel], dim=-1))  # [n_nodes, hidden.dim]
        for block in self.blocks:
            h = block(h, edge_sh, edge_radial, edge_index)
        out = self.readout(h)  # [n_nodes, 3] or [n_nodes, 6] (two 1o blocks)
        vel_out = vel + out[:, 3:6] if self.predict_velocity else None
        return pos + out[:, :3], vel_out


class _LinearTrunk(nn.Module):
    """The constant-velocity baseline ``x + t v`` with one learned time ``t`` (and ``v`` kept)."""

    def __init__(self, predict_velocity: bool) -> None:
        super().__init__()
        self.time = nn.Parameter(torch.ones(()))
        self.predict_velocity = predict_velocity

    def forward(self, pos, vel, charges, edge_index):
        return pos + self.time * vel, (vel if self.predict_velocity else None)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(x + t v, t = {self.time.item():.4g})"


class NBodyModel(nn.Module):
    """Future positions (and velocities) of interacting particles from their current state.

    E(3)-equivariant and permutation-equivariant: rotating, reflecting or translating the input
    system, or relabelling its particles, moves the prediction the same way; velocities rotate
    but do not translate; charges are invariant, and only products ``q_i q_j`` enter, so flipping
    every charge changes nothing (as in the physics). Build it with
    ``equivar.models.build("nbody", ...)`` (see :func:`build_nbody` for the options).

    Input convention: a PyG ``Batch`` (e.g. from
    :func:`equivar.data.datasets.nbody.nbody_batch`) whose graphs connect every pair of particles
    of a system in both directions, with ``pos`` [n_nodes, 3], ``vel`` [n_nodes, 3], ``charges``
    [n_nodes] and ``edge_index`` [2, n_edges] (sender, receiver). Other fields are ignored.

    Returns (from ``forward``):
        ``{"pos": [n_nodes, 3]}`` (positions one horizon later), plus ``"vel"`` [n_nodes, 3]
        when built with ``predict_velocity=True`` (needed by :func:`equivar.simulate.rollout`).

    Example:
        >>> import torch
        >>> from equivar.models import build
        >>> from equivar.data.datasets.nbody import nbody_batch
        >>> model = build("nbody", layer="egnn", preset="S")
        >>> batch = nbody_batch(torch.randn(2, 5, 3), torch.randn(2, 5, 3),
        ...                     torch.tensor([[1.0, -1, 1, 1, -1]] * 2))
        >>> model(batch)["pos"].shape
        torch.Size([10, 3])
    """

    output_specs = {
        keys.POSITIONS: keys.FieldSpec("node", "1o", translates=True),
        VELOCITIES: keys.FieldSpec("node", "1o"),
    }

    def __init__(
        self,
        *,
        layer: str,
        num_channels: int,
        num_layers: int,
        lmax: int,
        sh_lmax: int,
        radial_hidden: Sequence[int],
        num_basis: int = 8,
        max_radius: float = 10.0,
        num_heads: int = 4,
        aggregation: str = "mean",
        edge_features: str = "charges",
        softening: float = 0.1,
        carry_velocity: bool = False,
        share_weights: bool = False,
        predict_velocity: bool = False,
        backend: str = "auto",
        config: Mapping | None = None,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if layer != "egnn" and (edge_features != "charges" or carry_velocity or share_weights):
            raise ValueError(f"edge_features={edge_features!r}, carry_velocity={carry_velocity} "
                             f"and share_weights={share_weights} are options of layer='egnn', "
                             f"not {layer!r}")
        self.layer = layer
        self.predict_velocity = bool(predict_velocity)
        if layer == "egnn":
            self.trunk = _EGNNTrunk(num_channels, num_layers, self.predict_velocity, aggregation,
                                    edge_features, softening, carry_velocity, share_weights)
        elif layer in ("tfn", "se3_transformer"):
            self.trunk = _SteerableTrunk(layer, num_channels, num_layers, lmax, sh_lmax,
                                         radial_hidden, num_basis, max_radius, num_heads,
                                         self.predict_velocity, backend)
        elif layer == "linear":
            self.trunk = _LinearTrunk(self.predict_velocity)
        else:
            hint = did_you_mean(str(layer), LAYERS)
            hint = f" ({hint})" if hint else ""
            raise ValueError(f"unknown layer {layer!r}{hint}; choose one of {LAYERS}")
        #: the options this model was built with (a checkpoint stores them to rebuild it)
        self.config = dict(config or {})

    def forward(self, data) -> dict[str, torch.Tensor]:
        """Predict the state one horizon ahead for every system in ``data``."""
        pos, vel, charges, edge_index = _read(data)
        pos_out, vel_out = self.trunk(pos, vel, charges, edge_index)
        out = {keys.POSITIONS: pos_out}
        if vel_out is not None:
            out[VELOCITIES] = vel_out
        return out

    def __repr__(self) -> str:
        extra = self.trunk.extra_repr() if isinstance(self.trunk, _EGNNTrunk) else ""
        lines = [f"{type(self).__name__}(layer={self.layer!r}, "
                 f"predict_velocity={self.predict_velocity}" + (f", {extra}" if extra else "")]
        body = getattr(self.trunk, "layers", None) or getattr(self.trunk, "blocks", None)
        body = list(body) if body is not None else [self.trunk]
        lines += [f"  {b!r}".replace("\n", "\n  ") for b in body]
        if getattr(self.trunk, "vel_head", None) is not None:
            lines.append(f"  velocity head: {self.trunk.vel_head!r}")
        return "\n".join(lines) + "\n)"


def _read(data) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``pos, vel, charges, edge_index`` of a batch, with errors that name the field."""
    out = []
    for key in (keys.POSITIONS, VELOCITIES, keys.CHARGES, keys.EDGE_INDEX):
        value = getattr(data, key, None)
        if value is None:
            raise ValueError(f"the batch has no field {key!r}; build N-body batches with "
                             f"equivar.data.datasets.nbody.nbody_batch")
        out.append(value)
    pos, vel, charges, edge_index = out
    n = pos.shape[0]
    if pos.dim() != 2 or pos.shape[1] != 3 or vel.shape != pos.shape:
        raise ValueError(f"'pos' and 'vel' must have shape [n_nodes, 3]; got {list(pos.shape)} "
                         f"and {list(vel.shape)}")
    if charges.shape != (n,):
        raise ValueError(f"'charges' must have shape [{n}], got {list(charges.shape)}")
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"'edge_index' must have shape [2, n_edges], got "
                         f"{list(edge_index.shape)}")
    return pos, vel, charges.to(pos.dtype), edge_index


_OPTIONS = (
    "preset", "layer", "num_channels", "num_layers", "lmax", "sh_lmax", "radial_hidden",
    "num_basis", "max_radius", "num_heads", "aggregation", "edge_features", "softening",
    "carry_velocity", "share_weights", "predict_velocity", "backend", "dtype",
)  # fmt: skip


def build_nbody(**options: Any) -> NBodyModel:
    """N-body dynamics model; ``build("nbody", ...)`` calls this.

    Options (keyword-only; explicit options override the preset):
        layer: ``"egnn"`` (default; Satorras et al. 2021 with velocities), ``"tfn"`` (tensor
            field network: our gated tensor-product interaction blocks), ``"se3_transformer"``
            (equivariant attention, :class:`~equivar.nn.SE3TransformerBlock`) or ``"linear"``
            (``x + t v`` with a learned ``t``: the equivariant linear-dynamics baseline).
        preset: ``"S"``, ``"M"`` (default; 64 channels, 4 layers), ``"L"`` or
            ``"integrator"`` (EGNN, 64 channels, one layer applied 8 times, ``coulomb``
            features, ``carry_velocity``: our best on the charged N-body task; see
            ``NBODY_PRESETS``).
        num_channels, num_layers: width and depth.
        lmax, sh_lmax, radial_hidden, num_basis (8), max_radius (10.0, range of the Gaussian
            distance basis), num_heads (4): steerable layers only.
        aggregation: ``"mean"`` (default) or ``"sum"`` of EGNN coordinate updates.
        edge_features: EGNN only: ``"charges"`` (default; ``q_i q_j``, as in the EGNN paper) or
            ``"coulomb"`` (also softened ``q_i q_j / (r^2 + s)``, ``1 / (r^2 + s)`` and
            ``q_i q_j / (r^2 + s)^(3/2)`` at every layer's positions, ``s = softening``).
        softening: ``s`` above (default 0.1, in squared length units of the data).
        carry_velocity: EGNN only: each layer's displacement is the velocity the next layer
            updates (a learned integrator; default False, the paper's form, where every layer
            rescales the input velocity).
        share_weights: EGNN only: one layer applied ``num_layers`` times (default False).
        predict_velocity: also output ``"vel"`` (default False), for rollouts.
        backend: convolution backend, see :mod:`equivar.kernels` (default ``"auto"``).
        dtype: ``"float32"``/``"float64"`` or a torch dtype (default: torch's default); the model
            is built in float64 and cast.

    Example:
        >>> from equivar.models import build
        >>> build("nbody", layer="tfn", preset="S").config["num_channels"]
        32

    Raises:
        ValueError: unknown option or layer (naming the closest valid one), bad values.
    """
    check_options(options, _OPTIONS, "nbody")
    preset = options.pop("preset", "M")
    if preset not in NBODY_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(NBODY_PRESETS)}")
    opts = {"layer": "egnn", **NBODY_PRESETS[preset], **options}
    opts["radial_hidden"] = tuple(opts["radial_hidden"])
    return construct(NBodyModel, opts, "nbody")
