"""Plain-torch evaluation of a :class:`~equivar.kernels.spec.ConvSpec` (the check for the others).

It materialises the per-edge messages, as e3nn does, so it is a correctness reference and a
self-test, not a fast path.
"""

from __future__ import annotations

import torch

from equivar.kernels.scatter import scatter_sum
from equivar.kernels.spec import ConvSpec, dense_cg


def conv_reference(
    spec: ConvSpec,
    x: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor,
    sender: torch.Tensor,
    receiver: torch.Tensor,
    n_nodes: int,
) -> torch.Tensor:
    """``sum_{e: r(e)=i} TP(x[s(e)], y[e], w[e])`` from the spec's sparse paths.

    Shapes:
        x: [n_nodes, in_dim], y: [n_edges, sh_dim], w: [n_edges, weight_numel],
        sender, receiver: [n_edges] -> [n_nodes, out_dim]
    """
    xs = x[sender]  # [n_edges, in_dim]
    blocks = []
    for path in spec.paths:
        bi, bj = spec.inputs[path.i], spec.harmonics[path.j]
        xi = xs[:, bi.offset : bi.offset + bi.mul * bi.d].reshape(-1, bi.mul, bi.d)
        yj = y[:, bj.offset : bj.offset + bj.d]  # [n_edges, 2l2+1]
        wk = w[:, path.weight_offset : path.weight_offset + path.out.mul]  # [n_edges, mul]
        cg = dense_cg(path, spec, x.dtype, x.device)
        msg = torch.einsum("eua,eb,abc,eu->euc", xi, yj, cg, wk)  # [n_edges, mul, 2l3+1]
        blocks.append(msg.reshape(msg.shape[0], -1))
    messages = torch.cat(blocks, dim=1)  # [n_edges, out_dim]
    return scatter_sum(messages, receiver, n_nodes)
