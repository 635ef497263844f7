"""The fused convolution for CPUs: a small C library compiled on first use, called by ctypes.

The ``"dense"`` backend evaluates the convolution with large batched contractions, which keeps
BLAS busy but writes and reads per-edge tensors ``[n_edges, channels x path components]`` many
times in a training step (forward, the forces' backward, and its backward in the loss). This
backend computes the same 4-linear form as the Triton kernels (:mod:`equivar.kernels.spec`) in C:
one loop over the non-zero Clebsch-Gordan terms with the channel index innermost (vectorised),
node results accumulated per CSR row (no atomics, deterministic), nothing per-edge stored but
the gradients that are themselves per edge. :mod:`equivar.kernels.fused` wires its four partial
derivatives into autograd, so gradients of every order come from the same three C functions.

The library (``cpu_fused.c``, next to this file) is compiled once per machine with the system C
compiler (``$CC``, default ``cc``; ``-O3 -march=native``, OpenMP when the compiler has it) into
equivar's cache (:func:`equivar.cache.cache_dir`: ``$EQUIVAR_CACHE``, else
``$XDG_CACHE_HOME/equivar``, else ``~/.cache/equivar``; where that cannot be written, a private
per-user folder in the temporary directory), written atomically, keyed by the source, the
flags, the compiler and the CPU. Without a C compiler the backend is unavailable and says why
(:func:`available`); ``backend="auto"`` then runs ``"dense"`` and warns once.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from equivar.atomic import atomic_write_bytes
from equivar.cache import cache_dir
from equivar.kernels.layout import EdgeLayout
from equivar.kernels.spec import ConvSpec

SOURCE = Path(__file__).with_name("cpu_fused.c")
_FLAG_SETS = (
    ["-O3", "-march=native", "-fopenmp"],
    ["-O3", "-march=native", "-fopenmp-simd"],
    ["-O3", "-fopenmp-simd"],
    ["-O3"],
)
_P = ctypes.c_void_p
_I = ctypes.c_int64
_I32 = ctypes.c_int32

_state: dict[str, object] = {}


def _cache_dir() -> Path:
    return cache_dir()


def _private_tmp_dir() -> Path:
    """A per-user folder in the temporary directory, for when the cache cannot be written."""
    uid = os.getuid() if hasattr(os, "getuid") else os.getpid()
    return Path(tempfile.gettempdir()) / f"equivar-{uid}"


def _writable(folder: Path, private: bool = False) -> bool:
    """Create ``folder`` if needed; whether this process can write there. ``private`` folders
    (in a shared temporary directory) must be ours and closed to others, or a planted library
    would be loaded."""
    try:
        folder.mkdir(mode=0o700 if private else 0o777, parents=True, exist_ok=True)
        if private:
            st = folder.stat()
            if hasattr(os, "getuid") and (st.st_uid != os.getuid() or st.st_mode & 0o022):
                return False
        return os.access(folder, os.W_OK | os.X_OK)
    except OSError:
        return False


def _library_path(name: str, avoid: set[Path]) -> tuple[Path | None, str]:
    """Where the library called ``name`` is, or is to be built: the cache
    (``$EQUIVAR_CACHE``), else - a read-only home, a path that is a file - a private folder in
    the temporary directory; never a path in ``avoid`` (files that did not load and could not
    be removed). ``(None, why)`` when no folder can be used."""
    folders = [(_cache_dir(), False), (_private_tmp_dir(), True)]
    for folder, private in folders:
        path = folder / name
        if path.exists() and path not in avoid and (not private or _writable(folder, True)):
            return path, ""
    for folder, private in folders:
        if folder / name not in avoid and _writable(folder, private):
            return folder / name, ""
    return None, (f"neither {folders[0][0]} nor {folders[1][0]} can be written "
                  "(set EQUIVAR_CACHE)")  # fmt: skip


def _cpu_id() -> str:
    """What ``-march=native`` depends on: the machine and, on Linux, the CPU's feature flags."""
    text = platform.machine() + platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            text += next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        pass
    return text


def _compile() -> tuple[ctypes.CDLL | None, str]:
    compiler = os.environ.get("CC", "cc")
    if shutil.which(compiler) is None:
        return None, f"no C compiler ({compiler!r} not found; set CC)"
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                                 timeout=30).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"the C compiler {compiler!r} does not run ({exc})"
    source = SOURCE.read_text()
    errors = []
    for flags in _FLAG_SETS:
        key = hashlib.sha256("\0".join([source, compiler, version, _cpu_id(), *flags]).encode())
        name = f"cpu_fused_{key.hexdigest()[:20]}.so"
        avoid: set[Path] = set()
        for _ in range(2):  # a cached file that does not load (truncated, foreign) is rebuilt once
            path, why = _library_path(name, avoid)
            if path is None:
                errors.append(why)
                break
            if not path.exists():
                error = _build(compiler, flags, path)
                if error:
                    errors.append(f"{' '.join(flags)}: {error}")
                    break
            try:
                return _bind(ctypes.CDLL(str(path))), ""
            except (OSError, AttributeError) as exc:
                errors.append(f"{' '.join(flags)}: loading {path.name} failed ({exc})")
                try:
                    path.unlink(missing_ok=True)
                except OSError:  # a read-only cache: leave it, build in the temporary folder
                    avoid.add(path)
    return None, "compiling cpu_fused.c failed: " + " | ".join(errors)


def _build(compiler: str, flags: list[str], path: Path) -> str:
    """Compile the library to ``path`` atomically; return an error text, or "" on success.

    The compiler writes into a scratch folder beside ``path``; the result is then copied over
    ``path`` by :func:`equivar.atomic.atomic_write_bytes`, so a concurrent process loads all of
    it or nothing (never a half-written library)."""
    try:
        scratch = tempfile.TemporaryDirectory(prefix=".cpu_fused-", dir=path.parent)
    except OSError as exc:
        return f"cannot write to {path.parent} ({exc})"
    with scratch as folder:
        built = Path(folder) / path.name
        cmd = [compiler, *flags, "-std=c99", "-shared", "-fPIC", "-o", str(built), str(SOURCE)]
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if run.returncode != 0:
                return run.stderr.strip()[-300:] or f"exit status {run.returncode}"
            # 0o755, as the linker writes it: the cache may be shared with other users
            atomic_write_bytes(path, built.read_bytes(), mode=0o755)
            return ""
        except (OSError, subprocess.SubprocessError) as exc:
            return str(exc)


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    for suffix in ("f32", "f64"):
        node = getattr(lib, f"node_slot_{suffix}")
        node.argtypes = [_I, _P, _P, _P, _P, _I, _P, _I, _P, _I, _P, _I, _I, _P, _P, _P, _P, _P,
                         _P, _I32]  # fmt: skip
        node.restype = None
        jvp = getattr(lib, f"node_jvp_{suffix}")
        jvp.argtypes = [_I, _P, _P, _P, _P, _I, _P, _P, _I, _P, _P, _I, _P, _I, _I, _P, _P, _P,
                        _P, _P, _P, _I32]  # fmt: skip
        jvp.restype = None
        edge = getattr(lib, f"edge_slots_{suffix}")
        edge.argtypes = [_I, _P, _P, _P, _I, _P, _I, _P, _I, _P, _I, _P, _P, _I32, _I32, _I,
                         _P, _P, _P, _P, _P, _P, _I32]  # fmt: skip
        edge.restype = None
        gather = getattr(lib, f"gather_cols_{suffix}")
        gather.argtypes = [_I, _P, _I, _P, _I, _P]
        gather.restype = None
    return lib


def library() -> ctypes.CDLL | None:
    """The compiled library (compiled on the first call in a process), or None."""
    if "lib" not in _state:
        _state["lib"], _state["why"] = _compile()
    return _state["lib"]  # type: ignore[return-value]


def available() -> tuple[bool, str]:
    """Whether the library compiles and loads here, and why not."""
    library()
    return _state["lib"] is not None, str(_state["why"])


# --------------------------------------------------------------------------- spec -> terms


@dataclass(frozen=True)
class _Terms:
    """The Clebsch-Gordan terms of a spec as flat columns (t-layout), and the layout maps."""

    x: torch.Tensor  # [n_terms] int32: column of (input block, m1) in the t-layout
    o: torch.Tensor  # [n_terms] int32: column of (output block, m3)
    y: torch.Tensor  # [n_terms] int32: harmonic column (block, m2)
    w: torch.Tensor  # [n_terms] int32: first per-edge weight of the path
    u: torch.Tensor  # [n_terms] int32: channels of the path
    c: dict  # dtype -> [n_terms] coefficients
    uniform_u: int  # the channels of every path when they agree (else 0)
    in_to_t: torch.Tensor  # [in_dim]: e3nn column of each t-layout column
    in_from_t: torch.Tensor
    out_to_t: torch.Tensor  # [out_dim]
    out_from_t: torch.Tensor

    @property
    def n(self) -> int:
        return self.x.numel()


def _t_layout(blocks) -> torch.Tensor:
    """For blocks ``[mul, d]`` (e3nn, channel-major), the e3nn column of each t-layout column."""
    cols = [(b.offset + torch.arange(b.mul * b.d).reshape(b.mul, b.d)).t().reshape(-1)
            for b in blocks]  # fmt: skip
    return torch.cat(cols) if cols else torch.zeros(0, dtype=torch.long)


_terms_cache: dict[str, _Terms] = {}


def _terms(spec: ConvSpec) -> _Terms:
    if spec.key in _terms_cache:
        return _terms_cache[spec.key]
    cols: dict[str, list] = {k: [] for k in "xoywuc"}
    for p in spec.paths:
        block = spec.inputs[p.i]
        for m1, m2, m3, coef in p.terms:
            cols["x"].append(block.offset + m1 * block.mul)
            cols["o"].append(p.out.offset + m3 * p.out.mul)
            cols["y"].append(spec.harmonics[p.j].offset + m2)
            cols["w"].append(p.weight_offset)
            cols["u"].append(block.mul)
            cols["c"].append(coef)
    as_int = {k: torch.tensor(cols[k], dtype=torch.int32) for k in "xoywu"}
    coef = torch.tensor(cols["c"], dtype=torch.float64)
    muls = set(cols["u"])
    in_to_t = _t_layout(spec.inputs)
    out_to_t = _t_layout([p.out for p in spec.paths])
    terms = _Terms(**as_int, c={torch.float64: coef, torch.float32: coef.float()},
                   uniform_u=muls.pop() if len(muls) == 1 else 0, in_to_t=in_to_t,
                   in_from_t=torch.argsort(in_to_t), out_to_t=out_to_t,
                   out_from_t=torch.argsort(out_to_t))  # fmt: skip
    _terms_cache[spec.key] = terms
    return terms


# --------------------------------------------------------------------------- evaluation


def _check(*tensors: torch.Tensor) -> None:
    for t in tensors:
        if t.device.type != "cpu" or t.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"the fused CPU convolution takes float32/float64 CPU tensors, got "
                             f"{t.dtype} on {t.device}")  # fmt: skip


def _suffix(dtype: torch.dtype) -> str:
    return "f32" if dtype == torch.float32 else "f64"


def _ptr(t: torch.Tensor) -> int:
    return t.data_ptr()


def _permute_columns(lib, t: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """``t[:, columns]`` in C (torch's ``index_select`` along rows of a few hundred columns is
    several times slower than the kernels it feeds)."""
    t = t.contiguous()
    out = torch.empty(t.shape[0], columns.numel(), dtype=t.dtype)
    getattr(lib, f"gather_cols_{_suffix(t.dtype)}")(t.shape[0], _ptr(t), t.shape[1], _ptr(out),
                                                    columns.numel(), _ptr(columns))  # fmt: skip
    return out


def evaluate(spec: ConvSpec, slot: int, ops: list, layout: EdgeLayout) -> torch.Tensor:
    """``dT/d(ops[slot])`` given the other three operands (``ops[slot]`` is None), as
    :func:`equivar.kernels.triton_conv.evaluate`.

    Slots: 0 = ``g`` [n_nodes, out_dim] (the convolution), 1 = ``x`` [n_nodes, in_dim],
    2 = ``y`` [n_edges, sh_dim], 3 = ``w`` [n_edges, weight_numel].
    """
    lib = library()
    if lib is None:
        raise RuntimeError(f"the fused CPU convolution is unavailable: {_state['why']}")
    g, x, y, w = ops
    _check(*(t for t in ops if t is not None))
    if slot in (2, 3):
        gy, gw = _edge_slots(spec, g, x, y, w, layout, want_y=slot == 2, want_w=slot == 3)
        return gy if slot == 2 else gw
    return _node_slot(spec, slot, x if slot == 0 else g, y, w, layout)


def evaluate_node_jvp(spec: ConvSpec, slot: int, src, y, w, y2, w2, layout: EdgeLayout):
    """``dT/d(g)`` (``slot`` 0, ``src`` = x) or ``dT/d(x)`` (``slot`` 1, ``src`` = g) of
    ``T(., y, w) + T(., y2, w2)`` in one pass over the edges (the backward of the edge pair,
    :mod:`equivar.kernels.fused`).

    Shapes:
        src: [n_nodes, in_dim or out_dim], y, y2: [n_edges, sh_dim],
        w, w2: [n_edges, weight_numel] -> [n_nodes, out_dim or in_dim]
    """
    if library() is None:
        raise RuntimeError(f"the fused CPU convolution is unavailable: {_state['why']}")
    _check(src, y, w, y2, w2)
    return _node_slot(spec, slot, src, y, w, layout, y2, w2)


def _node_slot(spec: ConvSpec, slot: int, src, y, w, layout: EdgeLayout, y2=None, w2=None):
    """A node slot (0: by receiver from x, 1: by sender from g), of ``T(., y, w)`` or, with
    ``y2, w2``, of ``T(., y, w) + T(., y2, w2)``."""
    lib = library()
    terms = _terms(spec)
    dtype, n, n_edges = src.dtype, layout.n_nodes, layout.n_edges
    if slot == 0:
        src_to_t, out_dim, from_t = terms.in_to_t, spec.out_dim, terms.out_from_t
        rowptr, eid, nbr = layout.by_receiver
        t_src, t_dst = terms.x, terms.o
    else:
        src_to_t, out_dim, from_t = terms.out_to_t, spec.in_dim, terms.in_from_t
        rowptr, eid, nbr = layout.by_sender
        t_src, t_dst = terms.o, terms.x
    if n == 0 or n_edges == 0:
        return torch.zeros(n, out_dim, dtype=dtype)
    src_t = _permute_columns(lib, src, src_to_t)  # [n_nodes, src_dim] in the t-layout
    y, w = y.contiguous(), w.contiguous()
    out = torch.empty(n, out_dim, dtype=dtype)
    coef = terms.c[dtype]
    tail = (_ptr(out), out_dim, terms.n, _ptr(t_src), _ptr(t_dst), _ptr(terms.y),
            _ptr(terms.w), _ptr(terms.u), _ptr(coef), terms.uniform_u)  # fmt: skip
    head = (n, _ptr(rowptr), _ptr(eid), _ptr(nbr), _ptr(src_t), src_t.shape[1])
    if y2 is None:
        getattr(lib, f"node_slot_{_suffix(dtype)}")(
            *head, _ptr(y), spec.sh_dim, _ptr(w), spec.weight_numel, *tail
        )  # fmt: skip
    else:
        y2, w2 = y2.contiguous(), w2.contiguous()
        getattr(lib, f"node_jvp_{_suffix(dtype)}")(
            *head, _ptr(y), _ptr(y2), spec.sh_dim, _ptr(w), _ptr(w2), spec.weight_numel, *tail
        )  # fmt: skip
    return _permute_columns(lib, out, from_t)


def _edge_slots(spec, g, x, y, w, layout: EdgeLayout, want_y: bool, want_w: bool):
    lib = library()
    terms = _terms(spec)
    dtype, n_edges = g.dtype, layout.n_edges
    if n_edges == 0 or layout.n_nodes == 0:
        gy = torch.zeros(n_edges, spec.sh_dim, dtype=dtype) if want_y else None
        gw = torch.zeros(n_edges, spec.weight_numel, dtype=dtype) if want_w else None
        return gy, gw
    # the kernel zeroes each edge's rows before accumulating
    gy = torch.empty(n_edges, spec.sh_dim, dtype=dtype) if want_y else None
    gw = torch.empty(n_edges, spec.weight_numel, dtype=dtype) if want_w else None
    g_t = _permute_columns(lib, g, terms.out_to_t)
    x_t = _permute_columns(lib, x, terms.in_to_t)
    y = y.contiguous() if want_w else g_t  # a valid pointer the kernel does not read
    w = w.contiguous() if want_y else g_t
    coef = terms.c[dtype]
    getattr(lib, f"edge_slots_{_suffix(dtype)}")(
        n_edges, _ptr(layout.sender), _ptr(layout.receiver), _ptr(g_t), spec.out_dim,
        _ptr(x_t), spec.in_dim, _ptr(y), spec.sh_dim, _ptr(w), spec.weight_numel,
        _ptr(gy) if want_y else None, _ptr(gw) if want_w else None, int(want_y), int(want_w),
        terms.n, _ptr(terms.x), _ptr(terms.o), _ptr(terms.y), _ptr(terms.w), _ptr(terms.u),
        _ptr(coef), terms.uniform_u,
    )  # fmt: skip
    return gy, gw


def evaluate_edge_pair(spec: ConvSpec, g, x, y, w, layout: EdgeLayout):
    """``(dT/dy, dT/dw)`` in one pass over the edges (what a first backward needs)."""
    _check(g, x, y, w)
    return _edge_slots(spec, g, x, y, w, layout, want_y=True, want_w=True)
