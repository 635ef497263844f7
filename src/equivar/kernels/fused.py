"""Autograd for the fused convolutions: every derivative, to any order, from four kernels.

An *engine* is a module with ``evaluate(spec, slot, ops, layout)`` and ``evaluate_edge_pair(spec,
g, x, y, w, layout)``, and optionally ``evaluate_node_jvp(spec, slot, src, y, w, y2, w2,
layout)`` (a node slot of ``T(., y, w) + T(., y2, w2)`` in one pass):
:mod:`equivar.kernels.triton_conv` (GPU, Triton) and :mod:`equivar.kernels.cpu_fused` (CPU, C).

Passes over the edges per convolution in a training step on energy and forces (forward, the
forces' backward with ``create_graph``, the loss' backward): 1 + 2 + 7 = 10. The forces'
backward takes ``dT/dx`` and the per-edge pair ``(dT/dy, dT/dw)`` in one pass
(:class:`_EdgePair`, differentiable); in the loss' backward, the ``dT/dx`` node costs 2 passes
(``dT/dg``, and the edge pair), the edge pair 3 (two node passes of the JVP form, one edge
pair) and the forward node 2 (``dT/dx``, the edge pair). With the y and w slots apart it was
1 + 3 + 10 = 14.
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
        if set(wanted) >= {_Y, _W}:
            # both per-edge gradients in one pass over the edges (differentiable under
            # create_graph: the forces' backward)
            pair = _EdgePair.apply if torch.is_grad_enabled() else _edge_pair
            grads[_Y], grads[_W] = pair(ctx.engine, ctx.spec, ctx.layout, ops[_G], ops[_X],
                                        ops[_Y], ops[_W])  # fmt: skip
            wanted = [b for b in wanted if b not in (_Y, _W)]
        for b in wanted:
            sub = list(ops)
            sub[b] = None
            grads[b] = _Partial.apply(ctx.engine, b, ctx.spec, ctx.layout, *sub)
        return (None, None, None, None, *grads)


def _edge_pair(engine, spec: ConvSpec, layout: EdgeLayout, g, x, y, w):
    """``(dT/dy, dT/dw)`` in one pass over the edges, not differentiable."""
    return engine.evaluate_edge_pair(spec, g, x, y, w, layout)


class _EdgePair(torch.autograd.Function):
    """``(dT/dy, dT/dw) = (T(g, x, ., w), T(g, x, y, .))`` in one pass over the edges.

    Its vector-Jacobian product with cotangents ``(cy, cw)`` is the gradient of
    ``T(g, x, cy, w) + T(g, x, y, cw)``: in ``g`` and in ``x`` one node pass each of that sum
    (the engine's ``evaluate_node_jvp``), in ``(y, w)`` the edge pair again with ``y := cy,
    w := cw``. Under ``create_graph`` (third derivatives) the same terms are built from
    :class:`_Partial` and this function, so it is differentiable to any order.
    """

    @staticmethod
    def forward(ctx, engine, spec: ConvSpec, layout: EdgeLayout, g, x, y, w):
        ctx.engine, ctx.spec, ctx.layout = engine, spec, layout
        ctx.save_for_backward(g, x, y, w)
        return engine.evaluate_edge_pair(spec, g, x, y, w, layout)

    @staticmethod
    def backward(ctx, cy, cw):
        g, x, y, w = ctx.saved_tensors
        engine, spec, layout = ctx.engine, ctx.spec, ctx.layout
        needs = ctx.needs_input_grad[3:]
        differentiable = torch.is_grad_enabled()
        jvp = None if differentiable else getattr(engine, "evaluate_node_jvp", None)
        grads: list = [None] * 4
        for slot, src in ((_G, x), (_X, g)):
            if not needs[slot]:
                continue
            if jvp is not None:
                grads[slot] = jvp(spec, slot, src, cy, w, y, cw, layout)
                continue
            first = [g, x, cy, w]
            second = [g, x, y, cw]
            first[slot] = second[slot] = None
            grads[slot] = (_Partial.apply(engine, slot, spec, layout, *first)
                           + _Partial.apply(engine, slot, spec, layout, *second))  # fmt: skip
        if needs[_Y] or needs[_W]:
            pair = _EdgePair.apply if differentiable else _edge_pair
            grads[_Y], grads[_W] = pair(engine, spec, layout, g, x, cy, cw)
        return (None, None, None, *grads)


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
