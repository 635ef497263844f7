"""Fused Triton kernels for the channel-wise tensor-product convolution: cache, launch, check.

Design (see :mod:`equivar.kernels.spec` for the 4-linear form ``T(g, x, y, w)``):

* The Clebsch-Gordan structure is baked into generated source
  (:mod:`equivar.kernels.triton_source`): one line per non-zero coefficient, no dense CG
  tensor, no loop over zeros.
* ``dT/dg`` (the convolution) runs one program per receiver and channel block and walks the
  receiver's incoming edges in CSR order, accumulating in registers: no per-edge message tensor
  is written and no atomics are used (deterministic sums).
* ``dT/dx`` (gradient for node features) is the same walk over the sender CSR.
* ``dT/dy`` and ``dT/dw`` (gradients for harmonics and per-edge weights) are per-edge kernels;
  ``dT/dy`` reduces over channels inside the program.
* Each kernel's backward is the others (``T`` is linear in each argument), so gradients of any
  order, forces in the loss included, come from the same four kernels.

The generated module is written once per spec to a cache folder (``triton`` under
:func:`equivar.cache.cache_dir`) because Triton reads a kernel's source from its file; here it is
cached and imported (:func:`kernels_for`), launched (:func:`evaluate`) and compiled ahead of time
for a GPU that is not present (:func:`compile_for_cuda`).
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path as FilePath
from types import ModuleType

import torch

from equivar.atomic import atomic_write_text
from equivar.cache import cache_dir
from equivar.kernels.layout import EdgeLayout
from equivar.kernels.spec import ConvSpec
from equivar.kernels.triton_source import GENERATOR_VERSION, generate_source


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    try:
        from triton import knobs
    except ImportError:  # no triton (or one without knobs): read the variable as Triton 3 does
        return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")
    return bool(knobs.runtime.interpret)


def available() -> tuple[bool, str]:
    """Whether Triton can be imported, and why not."""
    try:
        import triton  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install raising anything
        return False, f"triton cannot be imported ({type(exc).__name__}: {exc})"
    return True, ""


_MODULES: dict[tuple[str, bool], ModuleType] = {}


def kernels_for(spec: ConvSpec, interpret: bool | None = None) -> ModuleType:
    """Generate (once per process and spec), write and import the kernel module for ``spec``.

    ``interpret`` picks Triton's interpreter or real JIT functions (default: as the environment
    says); Triton decides when a module is imported, so each choice gets its own module.
    """
    interpret = interpreting() if interpret is None else interpret
    key = (spec.key, interpret)
    if key in _MODULES:
        return _MODULES[key]
    ok, why = available()
    if not ok:
        raise RuntimeError(why)
    source = generate_source(spec)
    path = FilePath(cache_dir("triton")) / f"conv_v{GENERATOR_VERSION}_{spec.key}.py"
    if not path.exists() or path.read_text() != source:
        # atomic: concurrent processes never import half a file; 0o644: the cache may be shared
        atomic_write_text(path, source, mode=0o644)
    name = f"equivar_conv_{spec.key}_{'interpreted' if interpret else 'jit'}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    previous = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1" if interpret else "0"
    try:
        module_spec.loader.exec_module(module)
    finally:
        if previous is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = previous
    _MODULES[key] = module
    return module


# --------------------------------------------------------------------------- launching


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _tl_dtype(dtype: torch.dtype):
    import triton.language as tl

    return {torch.float32: tl.float32, torch.float64: tl.float64}[dtype]


def _node_launch(spec: ConvSpec) -> tuple[int, int, int]:
    block_u = min(_next_pow2(spec.max_mul), 64)
    return block_u, -(-spec.max_mul // block_u), max(1, block_u // 32)


def _edge_launch(spec: ConvSpec) -> tuple[int, int, int]:
    block_u = _next_pow2(spec.max_mul)
    block_e = max(1, 128 // block_u)
    return block_e, block_u, 4 if block_e * block_u >= 128 else max(1, block_e * block_u // 32)


def evaluate(spec: ConvSpec, slot: int, ops: list, layout: EdgeLayout) -> torch.Tensor:
    """Evaluate ``dT/d(ops[slot])`` given the other three operands (``ops[slot]`` is None).

    Slots: 0 = ``g`` [n_nodes, out_dim] (the convolution), 1 = ``x`` [n_nodes, in_dim],
    2 = ``y`` [n_edges, sh_dim], 3 = ``w`` [n_edges, weight_numel].
    """
    g, x, y, w = (None if t is None else t.contiguous() for t in ops)
    ref = next(t for t in (g, x, y, w) if t is not None)
    n, n_edges = layout.n_nodes, layout.n_edges
    shapes = {0: (n, spec.out_dim), 1: (n, spec.in_dim), 2: (n_edges, spec.sh_dim),
              3: (n_edges, spec.weight_numel)}
    if n == 0 or n_edges == 0:
        return torch.zeros(shapes[slot], dtype=ref.dtype, device=ref.device)
    # every kernel writes every entry of its output (isolated nodes get their zero accumulators),
    # except dT/dy, which leaves harmonic components no path reads at their zero
    alloc = torch.zeros if slot == 2 else torch.empty
    out = alloc(shapes[slot], dtype=ref.dtype, device=ref.device)
    mod = kernels_for(spec)
    dtype = _tl_dtype(ref.dtype)
    if slot in (0, 1):
        block_u, n_blocks, warps = _node_launch(spec)
        grid = (n, n_blocks)
        if slot == 0:
            rowptr, eid, nbr = layout.by_receiver
            mod.receiver_kernel[grid](x, y, w, out, rowptr, eid, nbr, BLOCK_U=block_u,
                                      DTYPE=dtype, num_warps=warps)
        else:
            rowptr, eid, nbr = layout.by_sender
            mod.sender_kernel[grid](g, y, w, out, rowptr, eid, nbr, BLOCK_U=block_u,
                                    DTYPE=dtype, num_warps=warps)
        return out
    block_e, block_u, warps = _edge_launch(spec)
    grid = (-(-n_edges // block_e),)
    kernel = mod.edge_kernel_y if slot == 2 else mod.edge_kernel_w
    # the variant never touches the operand it does not need nor the other output: pass ``out``
    kernel[grid](g, x, out if y is None else y, out if w is None else w, out, out,
                 layout.sender, layout.receiver, n_edges, BLOCK_E=block_e, BLOCK_U=block_u,
                 DTYPE=dtype, num_warps=warps)
    return out


def evaluate_edge_pair(spec: ConvSpec, g, x, y, w, layout: EdgeLayout):
    """``(dT/dy, dT/dw)`` in one pass over the edges (what a first backward needs)."""
    g, x, y, w = (t.contiguous() for t in (g, x, y, w))
    gy = torch.zeros(layout.n_edges, spec.sh_dim, dtype=g.dtype, device=g.device)
    gw = torch.empty(layout.n_edges, spec.weight_numel, dtype=g.dtype, device=g.device)
    if layout.n_edges == 0 or layout.n_nodes == 0:
        return gy, gw.zero_()
    mod = kernels_for(spec)
    block_e, block_u, warps = _edge_launch(spec)
    grid = (-(-layout.n_edges // block_e),)
    mod.edge_kernel_yw[grid](g, x, y, w, gy, gw, layout.sender, layout.receiver, layout.n_edges,
                             BLOCK_E=block_e, BLOCK_U=block_u, DTYPE=_tl_dtype(g.dtype),
                             num_warps=warps)
    return gy, gw


# --------------------------------------------------------------------------- ahead-of-time check


def _signatures(spec: ConvSpec, dtype: torch.dtype) -> dict[str, tuple[dict, dict, int]]:
    import triton.language as tl

    ptr = {torch.float32: "*fp32", torch.float64: "*fp64"}[dtype]
    tl_dtype = {torch.float32: tl.float32, torch.float64: tl.float64}[dtype]
    block_u, _, node_warps = _node_launch(spec)
    block_e, edge_u, edge_warps = _edge_launch(spec)
    csr = {"rowptr_ptr": "*i32", "eid_ptr": "*i32", "nbr_ptr": "*i32"}
    node_consts = {"BLOCK_U": block_u, "DTYPE": tl_dtype}
    sigs = {
        "receiver_kernel": ({"x_ptr": ptr, "y_ptr": ptr, "w_ptr": ptr, "out_ptr": ptr, **csr},
                            node_consts, node_warps),
        "sender_kernel": ({"g_ptr": ptr, "y_ptr": ptr, "w_ptr": ptr, "out_ptr": ptr, **csr},
                          node_consts, node_warps),
    }
    edge = {name: ptr for name in ("g_ptr", "x_ptr", "y_ptr", "w_ptr", "gy_ptr", "gw_ptr")}
    edge.update({"send_ptr": "*i32", "recv_ptr": "*i32", "n_edges": "i32"})
    for name in ("edge_kernel_y", "edge_kernel_w", "edge_kernel_yw"):
        sigs[name] = (edge, {"BLOCK_E": block_e, "BLOCK_U": edge_u, "DTYPE": tl_dtype},
                      edge_warps)
    return sigs


def compile_for_cuda(spec: ConvSpec, dtype: torch.dtype = torch.float32, arch: int = 90,
                     kernels: tuple[str, ...] | None = None) -> dict[str, str]:
    """Compile the kernels for an NVIDIA GPU of compute capability ``arch`` without one present
    (Triton's ahead-of-time path down to PTX and machine code), so compile errors, register use
    and spills are known on any machine. Returns ``{kernel: ptxas summary}`` (empty when the
    summary is not available). Needs Triton, not a GPU; must run in a process where Triton's
    interpreter is off (it patches ``triton.language`` for the whole process).

    Raises:
        RuntimeError: when ``TRITON_INTERPRET`` is set in this process.
    """
    if interpreting():
        raise RuntimeError("compile_for_cuda needs Triton's interpreter off in this process "
                           "(unset TRITON_INTERPRET, e.g. in a subprocess)")
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    mod = kernels_for(spec, interpret=False)
    report = {}
    for name, (signature, constexprs, warps) in _signatures(spec, dtype).items():
        if kernels is not None and name not in kernels:
            continue
        fn = getattr(mod, name)
        sig = {**signature, **{k: "constexpr" for k in constexprs}}
        compiled = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=constexprs),
                                  target=GPUTarget("cuda", arch, 32),
                                  options={"num_warps": warps})
        report[name] = _ptxas_summary(compiled.asm.get("ptx", ""), arch)
    return report


def _ptxas_summary(ptx: str, arch: int) -> str:
    import glob
    import subprocess

    import triton

    tools = sorted(glob.glob(os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia",
                                          "bin", "ptxas*")), reverse=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as fh:
            fh.write(ptx)
        for tool in tools:  # the newest ptxas that accepts this PTX version
            run = subprocess.run([tool, f"-arch=sm_{arch}a", "-v", src, "-o",
                                  os.path.join(tmp, "k.cubin")], capture_output=True, text=True)
            if run.returncode == 0:
                lines = [ln.split("info    :")[-1].strip() for ln in run.stderr.splitlines()
                         if "registers" in ln or "spill" in ln]
                return "; ".join(lines)
    return ""
