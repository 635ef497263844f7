"""Autograd for the fused convolutions: every derivative, to any order, from four kernels.

An *engine* is a module with ``evaluate(spec, slot, ops, layout)`` and ``evaluate_edge_pair(spec,
g, x, y, w, layout)``: :mod:`equivar.kernels.triton_conv` (GPU, Triton) and
:mod:`equivar.kernels.cpu_fused` (CPU, C).
"""

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
    def forward(ctx, engine, slot: int, spec: ConvSpec, layout: EdgeLayout, g, x, y, w):
        ops = [g, x, y, w]
        ctx.engine, ctx.slot, ctx.spec, ctx.layout = engine, slot, spec, layout
        ctx.save_for_backward(*ops)
        return engine.evaluate(spec, slot, ops, layout)

    @staticmethod
    def backward(ctx, cotangent):
        ops = list(ctx.saved_tensors)
        ops[ctx.slot] = cotangent
        wanted = [b for b in range(4) if b != ctx.slot and ctx.needs_input_grad[4 + b]]
        grads: list = [None] * 4
        if set(wanted) >= {_Y, _W} and not torch.is_grad_enabled():
            # a first-order backward needs both per-edge gradients: one pass over the edges
            grads[_Y], grads[_W] = ctx.engine.evaluate_edge_pair(ctx.spec, ops[_G], ops[_X],
                                                                 ops[_Y], ops[_W], ctx.layout)
            wanted = [b for b in wanted if b not in (_Y, _W)]
        for b in wanted:
            sub = list(ops)
            sub[b] = None
            grads[b] = _Partial.apply(ctx.engine, b, ctx.spec, ctx.layout, *sub)
        return (None, None, None, None, *grads)


def fused_conv(spec: ConvSpec, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
               layout: EdgeLayout, engine=None) -> torch.Tensor:
    """The convolution ``out[i] = sum_{e: r(e)=i} TP(x[s(e)], y[e], w[e])`` on the fused kernels.

    ``engine``: :mod:`~equivar.kernels.triton_conv` (default) or
    :mod:`~equivar.kernels.cpu_fused`. Half-precision inputs are computed in float32 and cast
    back.

    Shapes:
        x: [n_nodes, in_dim], y: [n_edges, sh_dim], w: [n_edges, weight_numel]
        -> [n_nodes, out_dim]
    """
    dtype = x.dtype
    x, y, w = compute_dtype(x, y, w)
    return _Partial.apply(engine or triton_conv, _G, spec, layout, None, x, y, w).to(dtype)
