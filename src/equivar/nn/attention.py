"""Equivariant graph attention: the SE(3)-Transformer block on our tensor-product convolution."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from e3nn import o3
from torch import nn

from equivar.nn.conv import TensorProductConv
from equivar.nn.gate import GatedActivation
from equivar.nn.linear import IrrepsLinear
from equivar.nn.scatter import scatter_sum

__all__ = ["SE3TransformerBlock", "segment_softmax"]


def segment_softmax(logits: torch.Tensor, index: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Softmax of ``logits`` over the rows that share an ``index`` (e.g. the edges into a node).

    Each segment's maximum is subtracted first (a constant per segment, so the result is the
    same, but ``exp`` cannot overflow); empty segments produce nothing and rows of a segment sum
    to one. The result does not depend on the order of the rows.

    Shapes:
        logits: [n_edges, n_heads], index: [n_edges] -> [n_edges, n_heads]

    Example:
        >>> w = segment_softmax(torch.tensor([[0.0], [0.0], [5.0]]), torch.tensor([0, 0, 1]), 2)
        >>> w.squeeze(-1).tolist()
        [0.5, 0.5, 1.0]
    """
    expanded = index.unsqueeze(-1).expand_as(logits)  # [n_edges, n_heads]
    seg_max = logits.new_zeros((num_segments, logits.shape[-1])).scatter_reduce(
        0, expanded, logits.detach(), reduce="amax", include_self=False
    )  # [num_segments, n_heads]; detached: a shift does not change the softmax
    exp = torch.exp(logits - seg_max[index])  # [n_edges, n_heads]
    return exp / scatter_sum(exp, index, num_segments)[index]


def _head_of_channels(irreps: o3.Irreps, num_heads: int, what: str) -> torch.Tensor:
    """Head of every component: channel ``u`` of a block ``mul x l`` goes to head
    ``u // (mul / num_heads)``, all ``2l + 1`` components of a channel to the same head."""
    heads = []
    for mul, ir in irreps:
        if mul % num_heads:
            raise ValueError(f"{what} irreps {irreps}: every multiplicity must be divisible by "
                             f"num_heads={num_heads}, but {mul}x{ir} is not")
        per = mul // num_heads
        heads.append(torch.arange(mul).div(per, rounding_mode="floor").repeat_interleave(ir.dim))
    return torch.cat(heads) if heads else torch.zeros(0, dtype=torch.long)


class _MessageConv(TensorProductConv):
    """A :class:`TensorProductConv` that also exposes its per-edge messages (before the sum).

    Same construction, parameters and paths; attention reweights the messages per edge, which the
    fused ``forward`` (gather -> product -> sum) cannot do.
    """

    def edge_messages(
        self, node_feats: torch.Tensor, edge_sh: torch.Tensor, edge_radial: torch.Tensor,
        sender: torch.Tensor,
    ) -> torch.Tensor:
        h = self.linear_in(node_feats)  # [n_nodes, irreps_in.dim]
        weights = self.radial(edge_radial)  # [n_edges, tp.weight_numel]
        return self.tp(h[sender], edge_sh, weights)  # [n_edges, irreps_mid.dim]


class SE3TransformerBlock(nn.Module):
    r"""Multi-head equivariant self-attention over graph neighbours, gated, with a residual.

    For an edge :math:`j \to i`, keys and values are tensor-product convolutions of the sender's
    features with the edge harmonics (radial weights per edge), the query a linear map of the
    receiver's features:

    .. math::
        k_{ij} = W_k\big(h_j \otimes_{R_k(r_{ij})} Y(\hat r_{ij})\big), \quad
        q_i = W_q h_i, \quad
        \alpha_{ij}^{(c)} = \operatorname{softmax}_{j \in N(i)}
            \Big(\langle q_i^{(c)}, k_{ij}^{(c)} \rangle / \sqrt{d_c}\Big)

    .. math::
        h_i' = h_i + \operatorname{Gate}\Big(W_v \sum_j \alpha_{ij}^{(c)}\,
                \big(h_j \otimes_{R_v(r_{ij})} Y(\hat r_{ij})\big)^{(c)} + W_s h_i\Big)

    where :math:`(c)` selects the channels of head ``c``. The logits are inner products of
    features of equal irreps, hence invariant; weighting each equivariant value by an invariant
    keeps equivariance. The softmax runs over the edges into each receiver (a segment softmax on
    ``edge_index[1]``), so it costs O(n_edges), never a dense n x n matrix, and it is independent
    of the order of edges and nodes. The residual applies where ``irreps_in == irreps_out``.

    Args:
        irreps_in: node features in.
        irreps_out: node features out (after the gate).
        irreps_sh: edge spherical harmonics.
        num_radial: invariant edge features.
        num_heads: attention heads (default 4); every multiplicity of ``irreps_in`` and
            ``irreps_key`` must be divisible by it.
        irreps_key: irreps of keys and queries (default: the scalars and vectors of
            ``irreps_in``).
        radial_hidden: radial MLP widths (default ``(64, 64)``).
        backend: convolution backend, see :mod:`equivar.kernels` (default ``"auto"``).

    Shapes:
        node_feats: [n_nodes, irreps_in.dim], edge_sh: [n_edges, irreps_sh.dim],
        edge_radial: [n_edges, num_radial], edge_index: [2, n_edges] -> [n_nodes, irreps_out.dim]

    Example:
        >>> block = SE3TransformerBlock("8x0e+4x1o", "8x0e+4x1o", "1x0e+1x1o", 4, num_heads=2)
        >>> edge_index = torch.tensor([[0, 1, 2], [1, 2, 0]])
        >>> sh = o3.spherical_harmonics("1x0e+1x1o", torch.randn(3, 3), True)
        >>> block(torch.randn(3, 20), sh, torch.randn(3, 4), edge_index).shape
        torch.Size([3, 20])

    References:
        Fuchs, Worrall, Fischer, Welling, "SE(3)-Transformers: 3D roto-translation equivariant
        attention networks", NeurIPS 2020; Liao, Smidt, "Equiformer", ICLR 2023 (attention on
        e3nn tensor products).
    """

    def __init__(
        self,
        irreps_in: o3.Irreps | str,
        irreps_out: o3.Irreps | str,
        irreps_sh: o3.Irreps | str,
        num_radial: int,
        num_heads: int = 4,
        irreps_key: o3.Irreps | str | None = None,
        radial_hidden: Sequence[int] = (64, 64),
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if num_heads < 1:
            raise ValueError(f"num_heads must be >= 1, got {num_heads}")
        self.irreps_in = o3.Irreps(irreps_in)
        if irreps_key is None:
            irreps_key = o3.Irreps([(m, ir) for m, ir in self.irreps_in if ir.l <= 1])
        self.irreps_key = o3.Irreps(irreps_key)
        if self.irreps_key.dim == 0:
            raise ValueError("irreps_key is empty: attention needs keys and queries")
        self.num_heads = int(num_heads)
        self.gate = GatedActivation(irreps_out)
        self.irreps_out = self.gate.irreps_out

        self.key_conv = _MessageConv(self.irreps_in, irreps_sh, self.irreps_key, num_radial,
                                     radial_hidden, backend=backend)
        self.value_conv = _MessageConv(self.irreps_in, irreps_sh, self.gate.irreps_in,
                                       num_radial, radial_hidden, backend=backend)
        self.query = IrrepsLinear(self.irreps_in, self.irreps_key)
        self.self_interaction = IrrepsLinear(self.irreps_in, self.gate.irreps_in)
        self.residual = self.irreps_in == self.irreps_out

        # value messages (irreps_mid) keep the channel index of irreps_in in every path
        value_heads = _head_of_channels(self.value_conv.irreps_mid, num_heads, "irreps_in")
        key_heads = _head_of_channels(self.irreps_key, num_heads, "irreps_key")
        self.register_buffer("value_heads", value_heads, persistent=False)  # [irreps_mid.dim]
        one_hot = torch.nn.functional.one_hot(key_heads, num_heads).to(torch.get_default_dtype())
        scale = one_hot.sum(0).rsqrt()  # 1 / sqrt(dims per head)
        self.register_buffer("key_pool", one_hot * scale, persistent=False)  # [key.dim, heads]

    def forward(
        self,
        node_feats: torch.Tensor,
        edge_sh: torch.Tensor,
        edge_radial: torch.Tensor,
        edge_index: torch.Tensor,
    ) -> torch.Tensor:
        sender, receiver = edge_index[0], edge_index[1]
        n_nodes = node_feats.shape[0]
        key = self.key_conv.edge_messages(node_feats, edge_sh, edge_radial, sender)
        key = self.key_conv.linear_out(key)  # [n_edges, irreps_key.dim]
        query = self.query(node_feats)[receiver]  # [n_edges, irreps_key.dim]
        logits = (query * key) @ self.key_pool  # [n_edges, num_heads]
        alpha = segment_softmax(logits, receiver, n_nodes)  # [n_edges, num_heads]

        value = self.value_conv.edge_messages(node_feats, edge_sh, edge_radial, sender)
        value = value * alpha[:, self.value_heads]  # [n_edges, irreps_mid.dim]
        agg = scatter_sum(value, receiver, n_nodes)  # [n_nodes, irreps_mid.dim]
        pre = self.value_conv.linear_out(agg) + self.self_interaction(node_feats)
        update = self.gate(pre)  # [n_nodes, irreps_out.dim]
        return node_feats + update if self.residual else update

    def __repr__(self) -> str:
        extra = ", residual" if self.residual else ""
        return (
            f"{type(self).__name__}({self.irreps_in} -> {self.irreps_out} | "
            f"heads={self.num_heads}, key={self.irreps_key}{extra})\n"
            f"  key: {self.key_conv!r}\n  value: {self.value_conv!r}"
        )

