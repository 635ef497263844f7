"""Source generation for the fused Triton kernels of :mod:`equivar.kernels.triton_conv`.

The Clebsch-Gordan structure of a :class:`~equivar.kernels.spec.ConvSpec` is baked into Python
source: one line per non-zero coefficient, no dense CG tensor, no loop over zeros. Four kernels
evaluate the partial derivatives of the 4-linear form ``T(g, x, y, w)`` (see
:mod:`equivar.kernels.spec`), and a fifth gives ``dT/dy`` and ``dT/dw`` in one pass:

* ``receiver_kernel`` (``dT/dg``, the convolution): one program per receiver and channel block,
  walking the receiver's incoming edges in CSR order;
* ``sender_kernel`` (``dT/dx``): the same walk over the sender CSR;
* ``edge_kernel_y``, ``edge_kernel_w``, ``edge_kernel_yw``: per-edge gradients for harmonics
  (reduced over channels inside the program) and per-edge weights.

Pure string building: nothing here imports Triton, so the source can be generated, cached and
inspected on any machine.
"""

from __future__ import annotations

from equivar.kernels.spec import ConvSpec

#: bumped whenever the generated source changes meaning (it names the cached files)
GENERATOR_VERSION = 1


class _Source:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, indent: int, text: str) -> None:
        self.lines.append("    " * indent + text)


class _Constants:
    """Names for the distinct coefficient values, created once per program in the compute dtype
    (``tl.full`` keeps float64 exact; a bare Python float would be a float32 literal)."""

    def __init__(self) -> None:
        self.names: dict[float, str] = {}

    def __call__(self, value: float) -> str:
        key = float(f"{value:.15e}")
        if key not in self.names:
            self.names[key] = f"c{len(self.names)}"
        return self.names[key]

    def emit(self, src: _Source, indent: int) -> None:
        for value, name in self.names.items():
            src(indent, f"{name} = tl.full((), {value!r}, DTYPE)")


def _product(coef: str, *factors: str) -> str:
    return " * ".join((coef, *factors))


def _masks(spec: ConvSpec, src: _Source, indent: int, edge_axis: bool) -> None:
    for mul in sorted({b.mul for b in spec.inputs}):
        if edge_axis:
            src(indent, f"mask{mul} = emask[:, None] & (u < {mul})[None, :]")
        else:
            src(indent, f"mask{mul} = u < {mul}")


def _walk_csr(body: _Source, spec: ConvSpec, neighbour: str) -> None:
    """The loop over one node's edges in CSR order, with the edge's harmonics loaded."""
    body(1, "start = tl.load(rowptr_ptr + node)")
    body(1, "end = tl.load(rowptr_ptr + node + 1)")
    body(1, "for p in range(start, end):")
    body(2, "e = tl.load(eid_ptr + p).to(tl.int64)")
    body(2, f"{neighbour} = tl.load(nbr_ptr + p).to(tl.int64)")
    for j, m2 in sorted({(p.j, t[1]) for p in spec.paths for t in p.terms}):
        off = spec.harmonics[j].offset + m2
        body(2, f"y{j}_{m2} = tl.load(y_ptr + e * {spec.sh_dim} + {off})")


def _node_kernel(name: str, first: str, spec: ConvSpec, const: _Constants, body: _Source):
    """Header of a kernel with one program per (node, channel block) around ``body``."""
    src = _Source()
    src(0, "@triton.jit")
    src(0, f"def {name}({first}, y_ptr, w_ptr, out_ptr, rowptr_ptr, eid_ptr, nbr_ptr,")
    src(0, "    BLOCK_U: tl.constexpr, DTYPE: tl.constexpr):")
    src(1, "node = tl.program_id(0).to(tl.int64)")
    src(1, "u = tl.program_id(1) * BLOCK_U + tl.arange(0, BLOCK_U)")
    _masks(spec, src, 1, edge_axis=False)
    const.emit(src, 1)
    return src.lines + body.lines


def _gen_receiver_kernel(spec: ConvSpec) -> list[str]:
    """``out[i] = sum_{e: r(e)=i} TP(x[s(e)], y[e], w[e])`` (slot g)."""
    const, body = _Constants(), _Source()
    used_x = sorted({(p.i, t[0]) for p in spec.paths for t in p.terms})
    for k, p in enumerate(spec.paths):
        for m3 in range(p.out.d):
            body(1, f"a{k}_{m3} = tl.zeros((BLOCK_U,), DTYPE)")
    _walk_csr(body, spec, "s")
    for i, m1 in used_x:
        b = spec.inputs[i]
        body(2, f"x{i}_{m1} = tl.load(x_ptr + s * {spec.in_dim} + {b.offset + m1} + u * {b.d}, "
                f"mask=mask{b.mul}, other=0.0)")
    for k, p in enumerate(spec.paths):
        body(2, f"w{k} = tl.load(w_ptr + e * {spec.weight_numel} + {p.weight_offset} + u, "
                f"mask=mask{p.out.mul}, other=0.0)")
        for m3 in range(p.out.d):
            terms = [_product(const(c), f"y{p.j}_{m2}", f"x{p.i}_{m1}")
                     for m1, m2, t3, c in p.terms if t3 == m3]
            if terms:
                body(2, f"a{k}_{m3} += w{k} * ({' + '.join(terms)})")
    for k, p in enumerate(spec.paths):
        for m3 in range(p.out.d):
            body(1, f"tl.store(out_ptr + node * {spec.out_dim} + {p.out.offset + m3} + "
                    f"u * {p.out.d}, a{k}_{m3}, mask=mask{p.out.mul})")
    return _node_kernel("receiver_kernel", "x_ptr", spec, const, body)


def _gen_sender_kernel(spec: ConvSpec) -> list[str]:
    """``gx[j] = sum_{e: s(e)=j} dT/dx`` with ``g`` read at receivers (slot x)."""
    const, body = _Constants(), _Source()
    used_g = sorted({(k, t[2]) for k, p in enumerate(spec.paths) for t in p.terms})
    for i, b in enumerate(spec.inputs):
        for m1 in range(b.d):
            body(1, f"b{i}_{m1} = tl.zeros((BLOCK_U,), DTYPE)")
    _walk_csr(body, spec, "r")
    for k, m3 in used_g:
        p = spec.paths[k]
        body(2, f"g{k}_{m3} = tl.load(g_ptr + r * {spec.out_dim} + {p.out.offset + m3} + "
                f"u * {p.out.d}, mask=mask{p.out.mul}, other=0.0)")
    for k, p in enumerate(spec.paths):
        body(2, f"w{k} = tl.load(w_ptr + e * {spec.weight_numel} + {p.weight_offset} + u, "
                f"mask=mask{p.out.mul}, other=0.0)")
    for i, b in enumerate(spec.inputs):
        for m1 in range(b.d):
            parts = []
            for k, p in enumerate(spec.paths):
                if p.i != i:
                    continue
                terms = [_product(const(c), f"y{p.j}_{m2}", f"g{k}_{m3}")
                         for t1, m2, m3, c in p.terms if t1 == m1]
                if terms:
                    parts.append(f"w{k} * ({' + '.join(terms)})")
            if parts:
                body(2, f"b{i}_{m1} += {' + '.join(parts)}")
    for i, b in enumerate(spec.inputs):
        for m1 in range(b.d):
            body(1, f"tl.store(out_ptr + node * {spec.in_dim} + {b.offset + m1} + u * {b.d}, "
                    f"b{i}_{m1}, mask=mask{b.mul})")
    return _node_kernel("sender_kernel", "g_ptr", spec, const, body)


def _gen_edge_kernel(spec: ConvSpec, need_y: bool, need_w: bool) -> list[str]:
    """Per-edge gradients ``dT/dy`` (summed over channels) and/or ``dT/dw``."""
    name = "edge_kernel_" + ("y" if need_y else "") + ("w" if need_w else "")
    src, const = _Source(), _Constants()
    body = _Source()
    used_x = sorted({(p.i, t[0]) for p in spec.paths for t in p.terms})
    used_g = sorted({(k, t[2]) for k, p in enumerate(spec.paths) for t in p.terms})
    body(1, "s = tl.load(send_ptr + e, mask=emask, other=0).to(tl.int64)")
    body(1, "r = tl.load(recv_ptr + e, mask=emask, other=0).to(tl.int64)")
    for i, m1 in used_x:
        b = spec.inputs[i]
        body(1, f"x{i}_{m1} = tl.load(x_ptr + s[:, None] * {spec.in_dim} + {b.offset + m1} + "
                f"u[None, :] * {b.d}, mask=mask{b.mul}, other=0.0)")
    for k, m3 in used_g:
        p = spec.paths[k]
        body(1, f"g{k}_{m3} = tl.load(g_ptr + r[:, None] * {spec.out_dim} + "
                f"{p.out.offset + m3} + u[None, :] * {p.out.d}, mask=mask{p.out.mul}, other=0.0)")
    if need_w:
        used_y = sorted({(p.j, t[1]) for p in spec.paths for t in p.terms})
        for j, m2 in used_y:
            off = spec.harmonics[j].offset + m2
            body(1, f"y{j}_{m2} = tl.load(y_ptr + e * {spec.sh_dim} + {off}, mask=emask, "
                    f"other=0.0)[:, None]")
        for k, p in enumerate(spec.paths):
            terms = [_product(const(c), f"y{p.j}_{m2}", f"x{p.i}_{m1}", f"g{k}_{m3}")
                     for m1, m2, m3, c in p.terms]
            body(1, f"gw{k} = {' + '.join(terms)}")
            body(1, f"tl.store(gw_ptr + e[:, None] * {spec.weight_numel} + {p.weight_offset} + "
                    f"u[None, :], gw{k}, mask=mask{p.out.mul})")
    if need_y:
        for k, p in enumerate(spec.paths):
            body(1, f"w{k} = tl.load(w_ptr + e[:, None] * {spec.weight_numel} + "
                    f"{p.weight_offset} + u[None, :], mask=mask{p.out.mul}, other=0.0)")
        for j, bj in enumerate(spec.harmonics):
            for m2 in range(bj.d):
                parts = []
                for k, p in enumerate(spec.paths):
                    if p.j != j:
                        continue
                    terms = [_product(const(c), f"x{p.i}_{m1}", f"g{k}_{m3}")
                             for m1, t2, m3, c in p.terms if t2 == m2]
                    if terms:
                        parts.append(f"w{k} * ({' + '.join(terms)})")
                if parts:  # components no path reads keep the zeros they were allocated with
                    body(1, f"tl.store(gy_ptr + e * {spec.sh_dim} + {bj.offset + m2}, "
                            f"tl.sum({' + '.join(parts)}, axis=1), mask=emask)")
    src(0, "@triton.jit")
    src(0, f"def {name}(g_ptr, x_ptr, y_ptr, w_ptr, gy_ptr, gw_ptr, send_ptr, recv_ptr, n_edges,")
    src(0, "    BLOCK_E: tl.constexpr, BLOCK_U: tl.constexpr, DTYPE: tl.constexpr):")
    src(1, "e = (tl.program_id(0) * BLOCK_E + tl.arange(0, BLOCK_E)).to(tl.int64)")
    src(1, "emask = e < n_edges")
    src(1, "u = tl.arange(0, BLOCK_U)")
    _masks(spec, src, 1, edge_axis=True)
    const.emit(src, 1)
    return src.lines + body.lines


def generate_source(spec: ConvSpec) -> str:
    """The Python source of the kernel module for ``spec`` (four kernels plus the fused y+w)."""
    lines = [
        f'"""Generated by equivar.kernels.triton_conv (v{GENERATOR_VERSION}) for spec '
        f'{spec.key}: {len(spec.paths)} paths, {spec.num_terms} CG terms. Do not edit."""',
        "import triton",
        "import triton.language as tl",
        "",
    ]
    for part in (
        _gen_receiver_kernel(spec),
        _gen_sender_kernel(spec),
        _gen_edge_kernel(spec, need_y=True, need_w=False),
        _gen_edge_kernel(spec, need_y=False, need_w=True),
        _gen_edge_kernel(spec, need_y=True, need_w=True),
    ):
        lines += [*part, "", ""]
    return "\n".join(lines)
