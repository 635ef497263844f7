"""The many-body product basis' Clebsch-Gordan product for CPUs: one fused C kernel, any order.

A power of :class:`equivar.nn.ProductBasis` couples, per node ``n`` and channel ``u``, two
feature vectors ``b`` and ``a`` with the Clebsch-Gordan coefficients of every path ``(l1, l2)
-> L`` and weights the result per species, path and channel. Written as plain torch, that is an
outer product ``[n_nodes, mul, d, d]``, a dense matrix product with the ``[d^2, n_q]``
coefficients (almost all zero) and a sum of path components into outputs; the forces' backward
and the loss' backward of it (second derivatives) write and read those tensors about a dozen
times per training step. Here the same numbers come from the 4-linear form

.. math::
    P(g, b, a, w) = \\sum_n \\sum_t c_t \\sum_u g_{n k_t u}\\, b_{n i_t u}\\, a_{n j_t u}\\,
        w_{n p_t u}

over the non-zero coefficients ``t`` (83 for ``lmax = 2``, against ``d^2 n_q = 2835`` dense
multiply-adds per channel): its derivative in any operand is one pass of the C kernel
``product_slot`` over the nodes (features in a channel-innermost layout, so the channel loop
vectorises; each output column summed in registers; nothing stored per node but the result),
and the derivative of that derivative is the same form in another slot (:class:`_Slot`), so
gradients of every order come from one C function, as for the fused convolution
(:mod:`equivar.kernels.fused`). A power costs 13 passes per training step with forces
(forward 1, forces' backward 3, loss' backward 9). The function lives in ``cpu_fused.c`` and
is compiled with it (:func:`equivar.kernels.cpu_fused.library`); where that library is not
available the product basis runs its plain-torch path.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field

import torch

from equivar.kernels import cpu_fused

_G, _B, _A, _W = range(4)
_P = ctypes.c_void_p
_I = ctypes.c_int64


@dataclass(frozen=True)
class ProductPlan:
    """The non-zero Clebsch-Gordan terms of a product basis and its feature layouts.

    The kernel works in the *t-layout* ``[n, d, mul]`` (component-major, channel innermost);
    :func:`to_t_layout` and :func:`from_t_layout` convert from and to e3nn's layout (each block
    ``[mul, 2l + 1]``). Build a plan with :meth:`from_dense`; its tensors live on the CPU.
    """

    mul: int  # channels per block
    dim: int  # feature columns, mul * (sum of block dimensions)
    n_paths: int
    to_t: torch.Tensor  # [dim] int64: e3nn column of each t-layout column (component, channel)
    from_t: torch.Tensor  # [dim] int64: t-layout column of each e3nn column
    cols: torch.Tensor  # [4, n_terms] int32: component k (out), i (b), j (a), path p of a term
    coef: torch.Tensor  # [n_terms] float64
    _sorted: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dense(
        cls,
        cg: torch.Tensor,
        component_of_q: torch.Tensor,
        path_of_q: torch.Tensor,
        cd_to_e3nn: torch.Tensor,
        mul: int,
    ) -> ProductPlan:
        """The plan of the dense description a product basis keeps for its torch path.

        Args:
            cg: the coefficients of each path component ``q``, ``cg[i, j, q]``.
            component_of_q: the output component each ``q`` is summed into.
            path_of_q: the path (weight row) of each ``q``.
            cd_to_e3nn: the e3nn column of each ``(channel, component)``, flattened.
            mul: the channels per block.

        Shapes:
            cg: [d, d, n_q], component_of_q: [n_q], path_of_q: [n_q], cd_to_e3nn: [mul * d]
        """
        d = cg.shape[0]
        if cg.shape[:2] != (d, d) or cd_to_e3nn.numel() != mul * d:
            raise ValueError(f"inconsistent product plan: cg {tuple(cg.shape)}, "
                             f"{cd_to_e3nn.numel()} columns for mul={mul}")  # fmt: skip
        i, j, q = torch.nonzero(cg, as_tuple=True)
        cols = torch.stack([component_of_q[q], i, j, path_of_q[q]]).to(torch.int32)
        to_t = cd_to_e3nn.reshape(mul, d).t().reshape(-1).long().contiguous()  # [d * mul]
        return cls(mul=mul, dim=mul * d, n_paths=int(path_of_q.max()) + 1 if q.numel() else 0,
                   to_t=to_t, from_t=torch.argsort(to_t), cols=cols.contiguous(),
                   coef=cg[i, j, q].to(torch.float64))  # fmt: skip

    @property
    def n_terms(self) -> int:
        return self.coef.numel()

    def terms_for(self, slot: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``(cols, coef)`` sorted by the column the ``slot`` derivative writes (the kernel sums
        each output column in registers), coefficients in ``dtype``; made once per key."""
        key = (slot, dtype)
        if key not in self._sorted:
            order = torch.argsort(self.cols[slot], stable=True)
            self._sorted[key] = (self.cols[:, order].contiguous(),
                                 self.coef[order].to(dtype).contiguous())  # fmt: skip
        return self._sorted[key]


def _library():
    """The compiled library with ``product_slot_*`` bound, or None."""
    lib = cpu_fused.library()
    if lib is None or not hasattr(lib, "product_slot_f32"):
        return None
    for suffix in ("f32", "f64"):
        fn = getattr(lib, f"product_slot_{suffix}")
        if fn.argtypes is None:
            fn.argtypes = [_I, _I, _I, _I, _P, _P, _P, _P, _P, ctypes.c_int32, _I, _P, _P]
            fn.restype = None
    return lib


def _tracing() -> bool:
    """True under ``torch.compile``, ``make_fx``/``torch.export`` or a ``torch.func`` transform:
    their fake or batched tensors cannot be handed to C (the torch path runs instead)."""
    if torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active():
        return True
    from torch.fx.experimental.proxy_tensor import get_proxy_mode

    return get_proxy_mode() is not None


def usable(*tensors: torch.Tensor) -> bool:
    """Whether the kernel can run on ``tensors``: real CPU tensors of one dtype, float32 or
    float64, outside tracing, with the C library compiled here."""
    dtype = tensors[0].dtype
    if dtype not in (torch.float32, torch.float64):
        return False
    if any(t.device.type != "cpu" or t.dtype != dtype for t in tensors) or _tracing():
        return False
    return _library() is not None


def _suffix(dtype: torch.dtype) -> str:
    return "f32" if dtype == torch.float32 else "f64"


def evaluate(plan: ProductPlan, slot: int, ops: list) -> torch.Tensor:
    """``dP/d(ops[slot])`` given the other three operands (``ops[slot]`` is None).

    Shapes:
        g, b, a: [n_nodes, dim] (t-layout), w: [n_nodes, n_paths, mul]; the result has the
        shape of the missing operand.
    """
    lib = _library()
    if lib is None:
        raise RuntimeError(f"the CPU product kernel is unavailable: {cpu_fused.available()[1]}")
    ref = next(t for t in ops if t is not None)
    n, dtype = ref.shape[0], ref.dtype
    for t in ops:
        if t is not None and (t.dtype != dtype or t.device.type != "cpu"):
            raise ValueError(f"the CPU product kernel takes CPU tensors of one dtype, got "
                             f"{t.dtype} on {t.device} beside {dtype}")  # fmt: skip
    shape = (n, plan.n_paths, plan.mul) if slot == _W else (n, plan.dim)
    if n == 0 or plan.n_terms == 0:
        return torch.zeros(shape, dtype=dtype)
    ops = [None if t is None else t.contiguous() for t in ops]
    out = torch.empty(shape, dtype=dtype)
    cols, coef = plan.terms_for(slot, dtype)
    fn = getattr(lib, f"product_slot_{_suffix(dtype)}")
    fn(n, plan.mul, plan.dim, plan.n_paths * plan.mul,
       *(None if t is None else t.data_ptr() for t in ops), out.data_ptr(), slot, plan.n_terms,
       cols.data_ptr(), coef.data_ptr())  # fmt: skip
    return out


class _Columns(torch.autograd.Function):
    """``t[:, columns]`` for a permutation ``columns`` (``inverse`` its inverse), in C; the
    backward is the inverse permutation, so it is differentiable to any order."""

    @staticmethod
    def forward(ctx, t, columns, inverse):
        ctx.columns, ctx.inverse = columns, inverse
        t = t.contiguous()
        out = torch.empty(t.shape[0], columns.numel(), dtype=t.dtype)
        getattr(_library(), f"gather_cols_{_suffix(t.dtype)}")(
            t.shape[0], t.data_ptr(), t.shape[1], out.data_ptr(), columns.numel(),
            columns.data_ptr())  # fmt: skip
        return out

    @staticmethod
    def backward(ctx, grad):
        return _Columns.apply(grad, ctx.inverse, ctx.columns), None, None


def to_t_layout(plan: ProductPlan, x: torch.Tensor) -> torch.Tensor:
    """Node features from e3nn's layout to the kernel's t-layout (differentiable).

    Shapes:
        x: [n_nodes, dim] (blocks [mul, 2l + 1]) -> [n_nodes, dim] ([d, mul])
    """
    return _Columns.apply(x, plan.to_t, plan.from_t)


def from_t_layout(plan: ProductPlan, x: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`to_t_layout`.

    Shapes:
        x: [n_nodes, dim] ([d, mul]) -> [n_nodes, dim] (blocks [mul, 2l + 1])
    """
    return _Columns.apply(x, plan.from_t, plan.to_t)


class _Slot(torch.autograd.Function):
    """``dP/d(operand slot)`` of the 4-linear form ``P(g, b, a, w)``, the other three given.

    ``P`` is linear in each operand, so the vector-Jacobian product of ``dP/ds`` (cotangent
    ``v``) with respect to another operand ``r`` is ``dP/dr`` with ``s := v``: the backward is
    this function in another slot, differentiable again (forces in the loss). When ``b`` and
    ``a`` are one tensor (the first power), autograd adds the two slots' gradients.
    """

    @staticmethod
    def forward(ctx, plan: ProductPlan, slot: int, g, b, a, w):
        ctx.plan, ctx.slot = plan, slot
        ctx.save_for_backward(g, b, a, w)
        return evaluate(plan, slot, [g, b, a, w])

    @staticmethod
    def backward(ctx, cotangent):
        ops = list(ctx.saved_tensors)
        ops[ctx.slot] = cotangent
        grads: list = [None] * 4
        for s in range(4):
            if s != ctx.slot and ctx.needs_input_grad[2 + s]:
                sub = list(ops)
                sub[s] = None
                grads[s] = _Slot.apply(ctx.plan, s, *sub)
        return (None, None, *grads)


def cpu_product(
    plan: ProductPlan, b: torch.Tensor, a: torch.Tensor, w: torch.Tensor
) -> torch.Tensor:
    """One power of the product basis: ``out[n, k, u] = sum over terms t with k_t = k of
    c_t w[n, p_t, u] b[n, i_t, u] a[n, j_t, u]``, differentiable to any order.

    Args:
        plan: the basis' terms (:meth:`ProductPlan.from_dense`).
        b: the previous power (or ``a`` itself for the second power).
        a: the node features.
        w: the per-node path weights (species rows already gathered).

    Shapes:
        b, a: [n_nodes, dim] (t-layout, :func:`to_t_layout`), w: [n_nodes, n_paths, mul]
        -> [n_nodes, dim] (t-layout)
    """
    return _Slot.apply(plan, _G, None, b, a, w)
