"""Autograd for the fused convolution: every derivative, to any order, from four kernels."""

from __future__ import annotations

import torch

from equivar.kernels import triton_conv
from equivar.kernels.layout import EdgeLayout
from equivar.kernels.spec import ConvSpec, compute_dtype

_G, _X, _Y, _W = range(4)


class _Partial(torch.autograd.Function):
    """``dT/d(operand slot)`` of the 4-linear form ``T(g, x, y, w)``, the other three given.

    ``T`` is linear in each operand, so the vector-Jacobian product of ``dT/da`` (cotangent
    ``v``) with respect to another operand ``b`` is ``dT/db`` with ``a := v``: the backward is
    this same function in another slot, which makes it differentiable again (double backward
    for forces in the loss, and beyond).
    """

    @staticmethod
    def forward(ctx, slot: int, spec: ConvSpec, layout: EdgeLayout, g, x, y, w):
        ops = [g, x, y, w]
        ctx.slot, ctx.spec, ctx.layout = slot, spec, layout
        ctx.save_for_backward(*ops)
        return triton_conv.evaluate(spec, slot, ops, layout)

    @staticmethod
    def backward(ctx, cotangent):
        ops = list(ctx.saved_tensors)
        ops[ctx.slot] = cotangent
        wanted = [b for b in range(4) if b != ctx.slot and ctx.needs_input_grad[3 + b]]
        grads: list = [None] * 4
        if set(wanted) >= {_Y, _W} and not torch.is_grad_enabled():
            # a first-order backward needs both per-edge gradients: one pass over the edges
            grads[_Y], grads[_W] = triton_conv.evaluate_edge_pair(ctx.spec, ops[_G], ops[_X],
                                                                  ops[_Y], ops[_W], ctx.layout)
            wanted = [b for b in wanted if b not in (_Y, _W)]
        for b in wanted:
            sub = list(ops)
            sub[b] = None
            grads[b] = _Partial.apply(b, ctx.spec, ctx.layout, *sub)
        return (None, None, None, *grads)


def fused_conv(spec: ConvSpec, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
               layout: EdgeLayout) -> torch.Tensor:
    """The convolution ``out[i] = sum_{e: r(e)=i} TP(x[s(e)], y[e], w[e])`` on the fused kernels.

    Half-precision inputs are computed in float32 and cast back.

    Shapes:
        x: [n_nodes, in_dim], y: [n_edges, sh_dim], w: [n_edges, weight_numel]
        -> [n_nodes, out_dim]
    """
    dtype = x.dtype
    x, y, w = compute_dtype(x, y, w)
    return _Partial.apply(_G, spec, layout, None, x, y, w).to(dtype)
