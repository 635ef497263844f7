"""The convolution as a few dense batched contractions, in plain torch: what ``"auto"`` runs on a
CPU while a model is traced (``torch.export``, ``torch.compile``) or where no C compiler builds
the fused CPU kernel (:mod:`equivar.kernels.cpu_fused`, several times faster).

e3nn evaluates a channel-wise tensor product path by path, each path a handful of small
multiplications, so a training step of a small potential launches thousands of tiny operations
(and as many again in the double backward that forces in the loss need). Here all paths whose
input blocks share a multiplicity ``U`` are evaluated together:

1. ``Yc[e, a, q] = sum_b y[e, b] C[a, b, q]``: the edge harmonics folded into the stacked
   Clebsch-Gordan coefficients of every path (one matrix product, ``a`` runs over the
   ``2l1+1`` components of every input block, ``q`` over the ``2l3+1`` of every path output);
2. ``t[e, u, q] = sum_a x[s(e), u, a] Yc[e, a, q]``: one batched matrix product per edge;
3. ``m = t * w[e, path(q), u]`` (the per-edge path weights, repeated over ``m3``);
4. a sum of ``m`` onto receivers, and one column permutation into e3nn's output layout.

Every step is an ordinary differentiable torch operation, so gradients and the double backward
of forces in the loss come from autograd, and the result equals e3nn's to rounding (the tests
compare value, gradient and second derivatives). It materialises the per-edge messages as e3nn
does (``[n_edges, U, Q]``), so it is no lighter on memory; it is faster because it makes ~10
large calls instead of hundreds of small ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from equivar.kernels.scatter import scatter_sum
from equivar.kernels.spec import ConvSpec


@dataclass(frozen=True)
class _Group:
    """The paths whose input blocks have multiplicity ``mul``, stacked."""

    mul: int
    in_columns: torch.Tensor  # [mul * A]: node-feature columns, ordered (u, a)
    cg: torch.Tensor  # [B, A * Q]: y [E, B] @ cg -> Yc [E, A, Q]
    weight_columns: torch.Tensor  # [mul * Q]: w columns, ordered (u, q)
    a: int
    q: int


@dataclass(frozen=True)
class _Plan:
    groups: tuple[_Group, ...]
    out_order: torch.Tensor  # [out_dim]: columns of cat(groups' [U * Q]) in e3nn's order


def _plan(spec: ConvSpec) -> _Plan:
    """Index maps and stacked coefficients of ``spec`` (float64, CPU; cast by the caller)."""
    groups = []
    source_of_out = torch.empty(spec.out_dim, dtype=torch.long)  # out column <- stacked column
    base = 0
    for mul in sorted({spec.inputs[p.i].mul for p in spec.paths}):
        paths = [p for p in spec.paths if spec.inputs[p.i].mul == mul]
        blocks = sorted({p.i for p in paths})
        a_offset, a = {}, 0
        for i in blocks:
            a_offset[i], a = a, a + spec.inputs[i].d
        q_offset, q = [], 0
        for p in paths:
            q_offset.append(q)
            q += p.out.d
        # node-feature columns in (u, a) order: block i stores [mul, d] channel-major
        in_columns = torch.empty(mul, a, dtype=torch.long)
        for i in blocks:
            block = spec.inputs[i]
            cols = block.offset + torch.arange(mul * block.d).reshape(mul, block.d)
            in_columns[:, a_offset[i] : a_offset[i] + block.d] = cols
        cg = torch.zeros(spec.sh_dim, a, q, dtype=torch.float64)
        weight_columns = torch.empty(mul, q, dtype=torch.long)
        for p, q0 in zip(paths, q_offset, strict=True):
            a0, b0 = a_offset[p.i], spec.harmonics[p.j].offset
            for m1, m2, m3, c in p.terms:
                cg[b0 + m2, a0 + m1, q0 + m3] += c
            weight_columns[:, q0 : q0 + p.out.d] = (p.weight_offset + torch.arange(mul))[:, None]
            # the stacked result is [U, Q]: path p's block [U, d3] sits at columns q0..q0+d3
            stacked = base + torch.arange(mul)[:, None] * q + q0 + torch.arange(p.out.d)[None, :]
            out = p.out.offset + torch.arange(mul * p.out.d).reshape(mul, p.out.d)
            source_of_out[out.reshape(-1)] = stacked.reshape(-1)
        groups.append(_Group(mul, in_columns.reshape(-1), cg.reshape(spec.sh_dim, a * q),
                             weight_columns.reshape(-1), a, q))  # fmt: skip
        base += mul * q
    return _Plan(tuple(groups), source_of_out)


class DensePlan(torch.nn.Module):
    """The stacked coefficients and index maps of one :class:`ConvSpec`, as buffers.

    A convolution holds one, built at construction, so the constants follow ``.to(device,
    dtype)`` with the module and are real tensors when the model is traced (``torch.export``);
    a cache filled lazily inside ``forward`` would capture fake tensors there.

    Args:
        spec: the convolution's paths.
        dtype: of the coefficients (default: torch's default); computed in float64 and cast.
    """

    def __init__(self, spec: ConvSpec, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        plan = _plan(spec)
        dtype = dtype or torch.get_default_dtype()
        self.shapes = [(g.mul, g.a, g.q) for g in plan.groups]
        for k, g in enumerate(plan.groups):
            self.register_buffer(f"in_columns{k}", g.in_columns, persistent=False)
            self.register_buffer(f"cg{k}", g.cg.to(dtype), persistent=False)
            self.register_buffer(f"weight_columns{k}", g.weight_columns, persistent=False)
        self.register_buffer("out_order", plan.out_order, persistent=False)

    def plan(self) -> _Plan:
        groups = tuple(
            _Group(mul, getattr(self, f"in_columns{k}"), getattr(self, f"cg{k}"),
                   getattr(self, f"weight_columns{k}"), a, q)
            for k, (mul, a, q) in enumerate(self.shapes)
        )  # fmt: skip
        return _Plan(groups, self.out_order)


_plans: dict[tuple, DensePlan] = {}


def _cached_plan(spec: ConvSpec, dtype: torch.dtype, device: torch.device) -> _Plan:
    key = (spec.key, dtype, device)
    if key not in _plans:
        _plans[key] = DensePlan(spec, dtype).to(device)
    return _plans[key].plan()


def dense_conv(
    spec: ConvSpec,
    x: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor,
    sender: torch.Tensor,
    receiver: torch.Tensor,
    n_nodes: int,
    plan: DensePlan | None = None,
) -> torch.Tensor:
    """``sum_{e: r(e)=i} TP(x[s(e)], y[e], w[e])`` by stacked dense contractions (see module).

    Differentiable to any order by autograd; inputs in any floating dtype the caller uses
    (float32/float64; half precision computes in its own dtype, as e3nn does). ``plan``: the
    module's :class:`DensePlan` (in the inputs' dtype and device); without it the constants come
    from a per-process cache (eager use only: do not trace that path).

    Shapes:
        x: [n_nodes, in_dim], y: [n_edges, sh_dim], w: [n_edges, weight_numel],
        sender, receiver: [n_edges] -> [n_nodes, out_dim]
    """
    if plan is not None and plan.cg0.dtype == x.dtype and plan.cg0.device == x.device:
        plan = plan.plan()
    else:  # no module plan, or inputs in another dtype than the module's
        plan = _cached_plan(spec, x.dtype, x.device)
    parts = []
    for g in plan.groups:  # (sizes by unflatten/flatten: no symbolic edge count under compile)
        xg = x.index_select(1, g.in_columns)[sender]  # [E, U * A]
        yc = (y @ g.cg).unflatten(1, (g.a, g.q))  # [E, A, Q]
        t = torch.bmm(xg.unflatten(1, (g.mul, g.a)), yc)  # [E, U, Q]
        m = t.flatten(1) * w.index_select(1, g.weight_columns)  # [E, U * Q]
        parts.append(scatter_sum(m, receiver, n_nodes))  # [N, U * Q]
    stacked = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
    return stacked.index_select(1, plan.out_order)  # [N, out_dim]
