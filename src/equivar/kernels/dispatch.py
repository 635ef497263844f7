"""Which implementation runs the convolution, decided per call from the tensors' device.

* ``"auto"`` (default): the fused Triton kernel on CUDA, the fused C kernel on CPU (the dense
  contraction where no C compiler is found, and while the model is traced by ``torch.export``
  or ``torch.compile``, which cannot see into a C call).
* ``"e3nn"``: the reference (gather, e3nn ``TensorProduct``, scatter), everywhere.
* ``"dense"``: all paths as a few stacked dense contractions (:mod:`equivar.kernels.dense`),
  plain torch, everywhere; differentiated by autograd.
* ``"fused_cpu"``: the fused C kernel (:mod:`equivar.kernels.cpu_fused`), CPU tensors only.
* ``"triton"``: the fused kernel; on CPU only under ``TRITON_INTERPRET=1`` (slow, for tests).
* ``"cuequivariance"``: NVIDIA's fused kernels, when the package is installed.

Nothing falls back silently. When a requested backend cannot run (not installed, CUDA ops that
fail to import, a CPU tensor for a GPU-only kernel, a kernel that fails its first-use self-check)
the e3nn reference runs instead and a warning naming the reason is issued once per reason.

A layer hands :func:`convolve` its tensors, its requested backend, its e3nn ``TensorProduct``
(the reference) and its dense constants; every backend runs from there. :func:`conv` runs one
resolved backend on a prebuilt edge layout (what benchmarks time).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from equivar.kernels.dense import DensePlan, dense_conv
from equivar.kernels.layout import EdgeLayout, cached_edge_layout
from equivar.kernels.scatter import scatter_sum
from equivar.kernels.spec import ConvSpec

#: the backend names that ``backend=`` accepts
BACKENDS = ("auto", "e3nn", "dense", "fused_cpu", "triton", "cuequivariance")

_warned: set[str] = set()
_self_checked: dict[tuple, str] = {}


class BackendFallbackWarning(RuntimeWarning):
    """A requested convolution backend could not run; the e3nn reference ran instead."""


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, BackendFallbackWarning, stacklevel=3)


def check_backend(name: str) -> str:
    """Validate a backend name (constructors call this).

    Raises:
        ValueError: naming the unknown backend and the valid ones.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown convolution backend {name!r}; available: {BACKENDS}")
    return name


def _cueq_available() -> tuple[bool, str]:
    try:
        from equivar.kernels import cueq
    except ImportError as exc:
        return False, f"equivar.kernels.cueq: {exc}"
    return cueq.available()


def availability() -> dict[str, tuple[bool, str]]:
    """``{backend: (usable, reason if not)}`` on this machine, for reports and the CLI."""
    from equivar.kernels import cpu_fused, triton_conv

    return {"e3nn": (True, ""), "dense": (True, ""), "fused_cpu": cpu_fused.available(),
            "triton": triton_conv.available(), "cuequivariance": _cueq_available()}


def _tracing() -> bool:
    """True while ``torch.compile`` or ``make_fx``/``torch.export`` traces the model, or a
    ``torch.func`` transform (vmap, grad) runs it: a C call through ctypes has no meaning on the
    fake or batched tensors they pass."""
    if torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active():
        return True
    from torch.fx.experimental.proxy_tensor import get_proxy_mode

    return get_proxy_mode() is not None


def _unmet_need(backend: str, device: torch.device) -> str:
    """What an installed ``backend`` lacks to run on ``device`` now ("" when nothing)."""
    from equivar.kernels import triton_conv

    if backend == "fused_cpu" and (device.type != "cpu" or _tracing()):
        return f"real CPU tensors (got {device}{', traced' if _tracing() else ''})"
    if backend == "triton" and device.type != "cuda" and not triton_conv.interpreting():
        return f"a CUDA device (got {device}) or TRITON_INTERPRET=1"
    return ""


def resolve(requested: str, device: torch.device) -> str:
    """The backend that will actually run for tensors on ``device`` (warns once on fallback)."""
    from equivar.kernels import cpu_fused, triton_conv

    if requested in ("e3nn", "dense"):
        return requested
    if requested == "auto":
        if device.type == "cuda" and triton_conv.available()[0]:
            return "triton"
        if device.type != "cpu" or _tracing():
            return "dense"
        ok, why = cpu_fused.available()
        if not ok:
            _warn_once(f"the fused CPU convolution is unavailable ({why}); the slower 'dense' "
                       "backend runs")
            return "dense"
        return "fused_cpu"
    if requested in ("fused_cpu", "triton", "cuequivariance"):
        available = {"fused_cpu": cpu_fused.available, "triton": triton_conv.available,
                     "cuequivariance": _cueq_available}[requested]  # fmt: skip
        ok, why = available()
        if not ok:
            _warn_once(f"convolution backend {requested!r} requested but {why}; using e3nn")
            return "e3nn"
        needs = _unmet_need(requested, device)
        if needs:
            _warn_once(f"convolution backend {requested!r} needs {needs}; using e3nn")
            return "e3nn"
        return requested
    raise ValueError(f"unknown convolution backend {requested!r}; available: {BACKENDS}")


def _run(backend: str, spec: ConvSpec, x, y, w, layout: EdgeLayout) -> torch.Tensor:
    if backend == "dense":
        return dense_conv(spec, x, y, w, layout.sender.long(), layout.receiver.long(),
                          layout.n_nodes)  # fmt: skip
    if backend == "triton":
        from equivar.kernels.fused import fused_conv

        return fused_conv(spec, x, y, w, layout)
    if backend == "fused_cpu":
        from equivar.kernels import cpu_fused
        from equivar.kernels.fused import fused_conv

        return fused_conv(spec, x, y, w, layout, engine=cpu_fused)
    from equivar.kernels.cueq import cueq_conv

    return cueq_conv(spec, x, y, w, layout)


def _self_check(backend: str, spec: ConvSpec, device: torch.device, dtype: torch.dtype) -> str:
    """Run ``backend`` once on a small random graph against the plain-torch reference, value
    and first derivatives; return ``""`` when it agrees, else the reason. Compiled kernels are
    only trusted after this (a fast kernel that is wrong is worse than a slow one)."""
    from equivar.kernels.layout import edge_layout
    from equivar.kernels.reference import conv_reference

    gen = torch.Generator().manual_seed(0)
    n, e = 5, 17
    kw = {"dtype": dtype}
    x = torch.randn(n, spec.in_dim, generator=gen, **kw).to(device).requires_grad_()
    y = torch.randn(e, spec.sh_dim, generator=gen, **kw).to(device).requires_grad_()
    w = torch.randn(e, spec.weight_numel, generator=gen, **kw).to(device).requires_grad_()
    index = torch.randint(0, n - 1, (2, e), generator=gen).to(device)  # node n-1 isolated
    try:
        got = _run(backend, spec, x, y, w, edge_layout(index, n))
        grads = torch.autograd.grad(got.square().sum(), (x, y, w))
    except Exception as exc:  # a kernel that cannot compile here must not take the run down
        return f"it failed to run ({type(exc).__name__}: {exc})"
    want = conv_reference(spec, x, y, w, index[0], index[1], n)
    want_grads = torch.autograd.grad(want.square().sum(), (x, y, w))
    tol = 1e-4 if dtype == torch.float32 else 1e-9
    for name, a, b in zip(("value", "d/dx", "d/dy", "d/dw"), (got, *grads), (want, *want_grads),
                           strict=True):
        err = float((a - b).detach().abs().max() / b.detach().abs().max().clamp(min=1e-30))
        if not err < tol:
            return f"its {name} differs from the reference by {err:.1e} (relative)"
    return ""


def conv(
    spec: ConvSpec,
    x: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor,
    layout: EdgeLayout,
    backend: str,
) -> torch.Tensor | None:
    """Run the convolution on ``backend`` (a resolved name other than ``"e3nn"``).

    Returns None when the backend failed its first-use self-check on this device and dtype (a
    warning says why); the caller then runs the e3nn reference (as :func:`convolve` does).

    Shapes:
        x: [n_nodes, in_dim], y: [n_edges, sh_dim], w: [n_edges, weight_numel]
        -> [n_nodes, out_dim]
    """
    from equivar.kernels import triton_conv

    if backend != "dense" and not (backend == "triton" and triton_conv.interpreting()):
        key = (backend, spec.key, x.device, x.dtype)
        if key not in _self_checked:
            with torch.inference_mode(False), torch.enable_grad():  # callers may be in no_grad
                _self_checked[key] = _self_check(backend, spec, x.device, x.dtype)
        if _self_checked[key]:
            _warn_once(f"convolution backend {backend!r} failed its self-check on {x.device} "
                       f"({x.dtype}, spec {spec.key}): {_self_checked[key]}; using e3nn")
            return None
    return _run(backend, spec, x, y, w, layout)


def convolve(
    spec: ConvSpec,
    x: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor,
    edge_index: torch.Tensor,
    backend: str,
    *,
    tensor_product: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    plan: DensePlan | None = None,
) -> torch.Tensor:
    """``out[i] = sum_{e: r(e)=i} TP(x[s(e)], y[e], w[e])`` on whichever backend runs for ``x``.

    The one entry point of a convolution layer: ``backend`` is resolved for ``x``'s device
    (:func:`resolve`, warning once on a fallback), ``"dense"`` runs on the layer's constants,
    the fused backends on the graph's :class:`~equivar.kernels.layout.EdgeLayout` (after their
    first-use self-check, :func:`conv`), and ``"e3nn"``, or a backend that failed its
    self-check, runs the reference: ``tensor_product`` on each edge, summed onto receivers.

    Args:
        spec: the paths of ``tensor_product`` (:meth:`ConvSpec.from_e3nn`).
        x: node features (sender side).
        y: edge harmonics.
        w: per-edge path weights.
        edge_index: senders (row 0) and receivers (row 1).
        backend: the requested name, one of :data:`BACKENDS` (``"auto"`` included).
        tensor_product: the layer's e3nn ``TensorProduct`` (per-edge weights), the reference.
        plan: the layer's :class:`~equivar.kernels.dense.DensePlan` for ``"dense"`` (default:
            a per-process cache, eager use only).

    Returns:
        The sum of messages at each node (no normalisation).

    Shapes:
        x: [n_nodes, in_dim], y: [n_edges, sh_dim], w: [n_edges, weight_numel],
        edge_index: [2, n_edges] -> [n_nodes, out_dim]
    """
    sender, receiver = edge_index[0], edge_index[1]
    n_nodes = x.shape[0]
    resolved = resolve(backend, x.device)
    if resolved == "dense":  # plain torch, no self-check needed: autograd differentiates it
        return dense_conv(spec, x, y, w, sender, receiver, n_nodes, plan)
    if resolved != "e3nn":
        layout = cached_edge_layout(edge_index, n_nodes)  # built once per graph
        out = conv(spec, x, y, w, layout, resolved)
        if out is not None:
            return out
    # the reference: materialises one message per edge
    messages = tensor_product(x[sender], y, w)  # [n_edges, out_dim]
    return scatter_sum(messages, receiver, n_nodes)  # [n_nodes, out_dim]
