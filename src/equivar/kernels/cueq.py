"""The cuEquivariance backend of the channel-wise tensor-product convolution.

The :class:`~equivar.kernels.spec.ConvSpec` is rewritten as one cuEquivariance
``SegmentedTensorProduct`` with four operands, per-edge weights ``w``, sender features ``x``,
edge harmonics ``y`` and the message; path ``k`` joins weight segment ``k`` (``[mul]``), input
segment ``i_k``, harmonic segment ``j_k`` (``[2l2+1]``) and output segment ``k`` with the path's
dense Clebsch-Gordan tensor (path weight folded in) as coefficients. Wrapped as a
``cue.SegmentedPolynomial`` that evaluates the last operand, it runs through
``cuequivariance_torch.SegmentedPolynomial`` with the gather by sender as an input index and the
sum onto receivers as an output index, so on a GPU one fused kernel does gather, tensor product
and scatter, and its derivatives.

Two methods of ``cuequivariance_torch`` are used:

* ``"uniform_1d"`` (CUDA, the default on GPU): the only method whose kernel takes the indices
  itself (``"fused_tp"`` gathers ``x[sender]`` and scatters the messages in PyTorch around its
  kernel, materialising two ``[n_edges, dim]`` tensors). It wants scalar coefficients and one
  uniform 1-d mode, so the polynomial is written in cuEquivariance's ``ir_mul`` layout
  (``"u,iu,j,ku+ijk"``), its coefficient modes flattened and the channel mode split to the
  greatest common divisor of the multiplicities; node features are permuted from e3nn's
  ``mul_ir`` layout into ``ir_mul`` and the output back (node-sized index_selects, not
  edge-sized).
* ``"naive"`` (plain PyTorch, the default on CPU): the polynomial in e3nn's own layout
  (``"u,ui,j,uk+ijk"``), evaluated path by path with einsum, gather and ``scatter_add``. Every
  derivative to any order is ordinary autograd.

The math and the memory layout are exactly those of
:func:`~equivar.kernels.reference.conv_reference`, so a model's ``state_dict`` does not depend on
the backend.

cuEquivariance itself falls back to its naive method with only a warning when its CUDA ops
(``cuequivariance_ops_torch``) fail to import; here a CUDA tensor without the ops raises
:class:`CueqUnsupportedError` instead (see :func:`available` and :func:`cuda_ops_available`), so
the dispatcher can fall back knowingly.
"""

from __future__ import annotations

import functools
import math
import threading

import numpy as np
import torch

from equivar.kernels.layout import EdgeLayout
from equivar.kernels.scatter import scatter_sum
from equivar.kernels.spec import ConvSpec, compute_dtype, dense_cg

METHODS = ("naive", "uniform_1d")
LAYOUTS = ("mul_ir", "ir_mul", "ir_mul_uniform")


class CueqUnsupportedError(RuntimeError):
    """cuEquivariance cannot run this combination (device, dtype, method or missing CUDA ops)."""


# --------------------------------------------------------------------------- availability


@functools.cache
def available() -> tuple[bool, str]:
    """Whether ``cuequivariance_torch`` imports, and a precise note on its CUDA ops.

    Returns:
        ``(False, why)`` when ``cuequivariance`` / ``cuequivariance_torch`` cannot be imported;
        ``(True, "")`` when they and the CUDA ops (``cuequivariance_ops_torch`` with its
        ``uniform_1d`` extension) all import; ``(True, note)`` when only the plain-PyTorch
        ``naive`` method can run (CPU tensors fine; CUDA tensors raise
        :class:`CueqUnsupportedError` rather than run cuEquivariance's slow fallback).
        Computed once per process (a failed import is retried on every call otherwise).
    """
    try:
        import cuequivariance  # noqa: F401
        import cuequivariance_torch
    except Exception as exc:  # ImportError, or a broken install raising anything
        return False, f"cuequivariance_torch cannot be imported ({type(exc).__name__}: {exc})"
    ok, why = cuda_ops_available()
    if ok:
        return True, ""
    version = getattr(cuequivariance_torch, "__version__", "?")
    return True, (f"cuequivariance_torch {version} imports but its CUDA ops do not ({why}); "
                  "only the plain-PyTorch 'naive' method can run, so CUDA tensors are refused")


@functools.cache
def cuda_ops_available() -> tuple[bool, str]:
    """Whether cuEquivariance's CUDA kernels for the ``uniform_1d`` method can be used, and why
    not (the import error of ``cuequivariance_ops_torch`` or of its ``uniform_1d`` extension, as
    the installed ``cuequivariance_torch`` sees it)."""
    try:
        import cuequivariance_ops_torch  # noqa: F401
    except Exception as exc:
        return False, f"cuequivariance_ops_torch cannot be imported ({type(exc).__name__}: {exc})"
    try:
        import cuequivariance_ops_torch.uniform_1d  # noqa: F401
    except Exception as exc:
        return False, (f"cuequivariance_ops_torch.uniform_1d cannot be imported "
                       f"({type(exc).__name__}: {exc})")
    try:
        from cuequivariance_torch.primitives import segmented_polynomial as sp_module
        from cuequivariance_torch.primitives import segmented_polynomial_uniform_1d as u1d_module
    except Exception as exc:
        return False, f"cuequivariance_torch's primitives cannot be imported ({exc})"
    if not getattr(sp_module, "HAS_CUE_OPS", False) or u1d_module.uniform_1d is None:
        return False, ("cuequivariance_torch did not find the ops at its own import (it would run "
                       "its naive fallback)")
    return True, ""


# --------------------------------------------------------------------------- polynomial


def _gcd_mul(spec: ConvSpec) -> int:
    return math.gcd(*(spec.inputs[p.i].mul for p in spec.paths))


def build_polynomial(spec: ConvSpec, layout: str = "mul_ir"):
    """The ``cue.SegmentedPolynomial`` ``[w, x, y] -> [messages]`` of ``spec``.

    Args:
        layout: ``"mul_ir"``: e3nn's channel-major blocks (``"u,ui,j,uk+ijk"``), the layout of
            every tensor this package stores. ``"ir_mul"``: component-major blocks
            (``"u,iu,j,ku+ijk"``). ``"ir_mul_uniform"``: the ``ir_mul`` polynomial with its
            coefficient modes flattened and the channel mode split to the gcd of the
            multiplicities, the form the ``uniform_1d`` CUDA method needs (every path a scalar
            times channel-wise products of equal-length segments).

    Operand segments: ``w`` one ``[mul]`` per path in path order, ``x`` one per input block,
    ``y`` one ``[2l2+1]`` per harmonic block, the output one per path in path order. A segment of
    an operand lies right after the previous one, so the operands' flat layouts are the spec's.
    """
    import cuequivariance as cue

    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    mul_ir = layout == "mul_ir"
    stp = cue.SegmentedTensorProduct.from_subscripts(
        "u,ui,j,uk+ijk" if mul_ir else "u,iu,j,ku+ijk")
    for path in spec.paths:
        stp.add_segment(0, (path.out.mul,))
    for block in spec.inputs:
        stp.add_segment(1, (block.mul, block.d) if mul_ir else (block.d, block.mul))
    for block in spec.harmonics:
        stp.add_segment(2, (block.d,))
    for k, path in enumerate(spec.paths):
        out = path.out
        stp.add_segment(3, (out.mul, out.d) if mul_ir else (out.d, out.mul))
        cg = dense_cg(path, spec, torch.float64).numpy().astype(np.float64)
        stp.add_path(k, path.i, path.j, k, c=cg)
    poly = cue.SegmentedPolynomial.eval_last_operand(stp)
    if layout == "ir_mul_uniform":
        poly = poly.flatten_coefficient_modes()
        g = _gcd_mul(spec)
        if any(spec.inputs[p.i].mul != g for p in spec.paths):
            poly = poly.split_mode("u", g)
        flat = poly.squeeze_modes()
        if not flat.all_same_segment_shape():  # pragma: no cover - guaranteed by the split
            raise CueqUnsupportedError(f"spec {spec.key}: segments are not uniform after the "
                                       f"split to {g} channels; uniform_1d cannot run it")
    return poly


def _ir_mul_permutation(blocks, total: int, to_ir_mul: bool) -> torch.Tensor | None:
    """Column permutation between e3nn's ``mul_ir`` and ``ir_mul`` block layouts (None when it
    is the identity: every block with ``mul == 1`` or ``l == 0``)."""
    perm = torch.arange(total, dtype=torch.int64)
    for b in blocks:
        cols = torch.arange(b.mul * b.d, dtype=torch.int64)
        mul_ir = cols.reshape(b.mul, b.d)  # mul_ir[u, m] = u * d + m
        ir_mul = mul_ir.t().reshape(-1)  # the mul_ir column at each ir_mul position
        if to_ir_mul:
            perm[b.offset : b.offset + cols.numel()] = b.offset + ir_mul
        else:
            perm[b.offset + ir_mul] = b.offset + cols
    if torch.equal(perm, torch.arange(total)):
        return None
    return perm


class _CueqConv:
    """One built ``cuequivariance_torch.SegmentedPolynomial`` for a spec, device, dtype and
    method, with the layout permutations around it."""

    def __init__(self, spec: ConvSpec, device: torch.device, dtype: torch.dtype, method: str,
                 layout: str) -> None:
        import cuequivariance_torch as cuet

        self.spec, self.method, self.layout = spec, method, layout
        poly = build_polynomial(spec, layout)
        module = cuet.SegmentedPolynomial(poly, method=method, math_dtype=dtype,
                                          name=f"equivar_conv_{spec.key}")
        if module.method != method:  # cuEquivariance swapped in its fallback (missing ops)
            raise CueqUnsupportedError(
                f"cuequivariance_torch ran method {module.method!r} instead of {method!r} "
                f"({cuda_ops_available()[1] or 'unknown reason'})")
        self.module = module.to(device)
        self.perm_in = self.perm_out = None
        if layout != "mul_ir":
            outputs = [p.out for p in spec.paths]
            self.perm_in = _ir_mul_permutation(spec.inputs, spec.in_dim, True)
            self.perm_out = _ir_mul_permutation(outputs, spec.out_dim, False)
            if self.perm_in is not None:
                self.perm_in = self.perm_in.to(device)
            if self.perm_out is not None:
                self.perm_out = self.perm_out.to(device)

    def __call__(self, x, y, w, sender, receiver, n_nodes: int) -> torch.Tensor:
        if self.perm_in is not None:
            x = x.index_select(1, self.perm_in)  # [n_nodes, in_dim] in ir_mul
        if self.method == "naive":  # its gather takes int32, its scatter_add wants int64
            sender, receiver = sender.long(), receiver.long()
            if sender.numel() == 0:
                # cuEquivariance's naive method reads an empty output index as "no index" and
                # fails on the batch size; scatter the (empty) messages here instead, so the
                # zeros stay wired to x, y and w like the reference's.
                (messages,) = self.module([w, x, y], input_indices={1: sender})
                out = scatter_sum(messages, receiver, n_nodes)  # [n_nodes, out_dim] zeros
                return out if self.perm_out is None else out.index_select(1, self.perm_out)
        (out,) = self.module(
            [w, x, y],
            input_indices={1: sender},
            output_indices={0: receiver},
            output_shapes={0: torch.empty((n_nodes, 1), dtype=x.dtype, device=x.device)},
        )
        if self.perm_out is not None:
            out = out.index_select(1, self.perm_out)
        return out


_CACHE: dict[tuple, _CueqConv] = {}
_LOCK = threading.Lock()


def get_conv(spec: ConvSpec, device: torch.device, dtype: torch.dtype, method: str,
             layout: str | None = None) -> _CueqConv:
    """The cached module for ``(spec.key, device, dtype, method, layout)`` (built on first use).

    ``layout`` defaults to ``"mul_ir"`` for ``naive`` and ``"ir_mul_uniform"`` for
    ``uniform_1d`` (the only one it accepts); ``naive`` takes any (tests check the GPU's
    polynomial on CPU this way).
    """
    if method not in METHODS:
        raise ValueError(f"unknown cuEquivariance method {method!r}; expected one of {METHODS}")
    if layout is None:
        layout = "mul_ir" if method == "naive" else "ir_mul_uniform"
    if method == "uniform_1d" and layout != "ir_mul_uniform":
        raise ValueError("method 'uniform_1d' needs layout 'ir_mul_uniform'")
    device = torch.device(device)
    key = (spec.key, device, dtype, method, layout)
    conv = _CACHE.get(key)
    if conv is None:
        with _LOCK:
            conv = _CACHE.get(key)
            if conv is None:
                conv = _CACHE[key] = _CueqConv(spec, device, dtype, method, layout)
    return conv


def default_method(device: torch.device) -> str:
    """``"uniform_1d"`` on CUDA, ``"naive"`` elsewhere."""
    return "uniform_1d" if torch.device(device).type == "cuda" else "naive"


def _check(method: str, device: torch.device, dtype: torch.dtype) -> None:
    ok, why = available()
    if not ok:
        raise CueqUnsupportedError(why)
    if method == "uniform_1d":
        if device.type != "cuda":
            raise CueqUnsupportedError(f"cuEquivariance method 'uniform_1d' needs a CUDA device, "
                                       f"got {device}")
        ops, why = cuda_ops_available()
        if not ops:
            raise CueqUnsupportedError(f"cuEquivariance method 'uniform_1d' on {device}: {why}")
    if dtype not in (torch.float32, torch.float64):  # pragma: no cover - cueq_conv casts first
        raise CueqUnsupportedError(f"cuEquivariance convolution in {dtype} is not supported")


# --------------------------------------------------------------------------- entry point


def cueq_conv(spec: ConvSpec, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
              layout: EdgeLayout, method: str | None = None) -> torch.Tensor:
    """The convolution ``out[i] = sum_{e: r(e)=i} TP(x[s(e)], y[e], w[e])`` on cuEquivariance.

    Same math and memory layout as :func:`~equivar.kernels.reference.conv_reference`;
    differentiable to any order (``naive`` through autograd, ``uniform_1d`` through
    cuEquivariance's registered derivatives). Half-precision inputs are computed in float32 and
    cast back.

    Args:
        method: ``None`` picks ``"uniform_1d"`` on CUDA and ``"naive"`` elsewhere.

    Raises:
        CueqUnsupportedError: cuEquivariance is not importable, or ``uniform_1d`` is asked for (or
            implied by a CUDA device) without a CUDA device or without its CUDA ops.

    Shapes:
        x: [n_nodes, in_dim], y: [n_edges, sh_dim], w: [n_edges, weight_numel]
        -> [n_nodes, out_dim]
    """
    dtype = x.dtype
    x, y, w = compute_dtype(x, y, w)
    if method is None:
        method = default_method(x.device)
    _check(method, x.device, x.dtype)
    if layout.n_edges == 0 and method != "naive":
        method = "naive"  # nothing to launch a kernel for; zeros still wired to x, y and w
    conv = get_conv(spec, x.device, x.dtype, method)
    out = conv(x, y, w, layout.sender, layout.receiver, layout.n_nodes)
    return out.to(dtype)
