"""The E(n)-equivariant graph layer (EGNN): invariant messages, coordinate updates along edges."""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn

from equivar.nn.scatter import scatter_mean, scatter_sum

AGGREGATIONS = ("mean", "sum")


def _mlp(num_in: int, hidden: int, num_out: int, last_bias: bool = True) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(num_in, hidden), nn.SiLU(), nn.Linear(hidden, num_out, bias=last_bias)
    )


class EGNNLayer(nn.Module):
    r"""One E(n)-equivariant layer: scalar messages from distances, positions moved along edges.

    For every edge :math:`j \to i` (``edge_index = (j, i)``),

    .. math::
        m_{ij} &= \phi_e\big(h_i, h_j, |x_i - x_j|^2, a_{ij}\big) \\
        x_i' &= x_i + \operatorname{agg}_j\,(x_i - x_j)\,\phi_x(m_{ij})
                + \phi_v(h_i)\, v_i \\
        h_i' &= h_i + \phi_h\big(h_i, \textstyle\sum_j m_{ij}\big)

    Messages see only invariants (features, squared distances, edge attributes), so ``h`` is
    E(3)-invariant; positions move along relative vectors and the (optional) velocity, so ``x``
    is E(3)-equivariant: it rotates, reflects and translates with the input, while velocities
    rotate but do not translate. Sums and means over neighbours make it permutation-equivariant.
    Nothing here depends on the dimension 3 except the shapes (the paper's E(n)).

    The last layer of :math:`\phi_x` starts at a small scale (``coord_init_scale``), so a deep
    stack starts close to ``x' = x + phi_v v``, which keeps early training stable.

    Args:
        num_features: width of the invariant node features ``h`` (in and out).
        num_edge_attrs: invariant edge attributes ``a_ij`` per edge (default 0).
        hidden: width of the MLPs (default ``num_features``).
        velocity: take a velocity ``v`` and add :math:`\phi_v(h_i) v_i` (default True).
        aggregation: ``"mean"`` (default; the paper's :math:`C = 1 / (M - 1)` on complete graphs)
            or ``"sum"`` over the incoming edges of the coordinate updates.
        normalize: use unit relative vectors :math:`(x_i - x_j) / (|x_i - x_j| + 1)` in the
            coordinate update (default False).
        coord_init_scale: initial weight scale of the last layer of :math:`\phi_x`
            (default 1e-3).

    Shapes:
        node_feats: [n_nodes, num_features], pos: [n_nodes, 3], edge_index: [2, n_edges],
        vel: [n_nodes, 3], edge_attr: [n_edges, num_edge_attrs]
        -> (node_feats [n_nodes, num_features], pos [n_nodes, 3])

    Example:
        >>> layer = EGNNLayer(16, num_edge_attrs=1)
        >>> edge_index = torch.tensor([[0, 1, 2, 0], [1, 0, 0, 2]])
        >>> h, x = layer(torch.randn(3, 16), torch.randn(3, 3), edge_index,
        ...              vel=torch.randn(3, 3), edge_attr=torch.randn(4, 1))
        >>> h.shape, x.shape
        (torch.Size([3, 16]), torch.Size([3, 3]))

    References:
        Satorras, Hoogeboom, Welling, "E(n) equivariant graph neural networks", ICML 2021,
        eqs. 3-7.
    """

    def __init__(
        self,
        num_features: int,
        num_edge_attrs: int = 0,
        hidden: int | None = None,
        velocity: bool = True,
        aggregation: str = "mean",
        normalize: bool = False,
        coord_init_scale: float = 1e-3,
    ) -> None:
        super().__init__()
        if num_features < 1:
            raise ValueError(f"num_features must be >= 1, got {num_features}")
        if num_edge_attrs < 0:
            raise ValueError(f"num_edge_attrs must be >= 0, got {num_edge_attrs}")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        hidden = num_features if hidden is None else int(hidden)
        self.num_features, self.num_edge_attrs = int(num_features), int(num_edge_attrs)
        self.aggregation, self.normalize, self.velocity = aggregation, bool(normalize), velocity
        self.irreps_in = self.irreps_out = o3.Irreps(f"{num_features}x0e")

        self.edge_mlp = nn.Sequential(
            _mlp(2 * num_features + 1 + num_edge_attrs, hidden, hidden), nn.SiLU()
        )
        self.coord_mlp = _mlp(hidden, hidden, 1, last_bias=False)
        with torch.no_grad():
            self.coord_mlp[-1].weight.mul_(coord_init_scale)
        self.vel_mlp = _mlp(num_features, hidden, 1) if velocity else None
        self.node_mlp = _mlp(num_features + hidden, hidden, num_features)

    def forward(
        self,
        node_feats: torch.Tensor,
        pos: torch.Tensor,
        edge_index: torch.Tensor,
        vel: torch.Tensor | None = None,
        edge_attr: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if (vel is None) == self.velocity:
            raise ValueError(f"{type(self).__name__}(velocity={self.velocity}) "
                             f"{'needs' if self.velocity else 'takes no'} vel")
        got = None if edge_attr is None else list(edge_attr.shape)
        if self.num_edge_attrs and (got is None or got[-1] != self.num_edge_attrs):
            raise ValueError(f"edge_attr must have shape [n_edges, {self.num_edge_attrs}], "
                             f"got {got}")
        sender, receiver = edge_index[0], edge_index[1]
        n_nodes = node_feats.shape[0]
        rel = pos[receiver] - pos[sender]  # [n_edges, 3] x_i - x_j
        dist2 = (rel * rel).sum(-1, keepdim=True)  # [n_edges, 1]
        inputs = [node_feats[receiver], node_feats[sender], dist2]
        if self.num_edge_attrs:
            inputs.append(edge_attr)
        messages = self.edge_mlp(torch.cat(inputs, dim=-1))  # [n_edges, hidden]

        if self.normalize:
            rel = rel / (dist2.sqrt() + 1.0)
        trans = rel * self.coord_mlp(messages)  # [n_edges, 3]
        reduce = scatter_mean if self.aggregation == "mean" else scatter_sum
        pos_out = pos + reduce(trans, receiver, n_nodes)  # [n_nodes, 3]
        if self.vel_mlp is not None:
            pos_out = pos_out + self.vel_mlp(node_feats) * vel

        agg = scatter_sum(messages, receiver, n_nodes)  # [n_nodes, hidden]
        node_out = node_feats + self.node_mlp(torch.cat([node_feats, agg], dim=-1))
        return node_out, pos_out

    def __repr__(self) -> str:
        extras = [f"edge_attrs={self.num_edge_attrs}", f"aggregation={self.aggregation}"]
        if self.velocity:
            extras.insert(0, "vel: 1o")
        if self.normalize:
            extras.append("normalize")
        return (f"{type(self).__name__}({self.irreps_in} -> {self.irreps_out} | pos: 1o -> 1o, "
                f"{', '.join(extras)})")
