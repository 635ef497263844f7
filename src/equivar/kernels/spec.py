"""The sparse description of a channel-wise ('uvu') tensor-product convolution.

Every backend implements the same 4-linear form

.. math::
    T(g, x, y, w) = \\sum_e \\sum_k \\sum_u w_{e,k,u} \\sum_{(m_1, m_2, m_3, c) \\in P_k}
                    c\\; g_{r(e),k,u,m_3}\\; x_{s(e),i_k,u,m_1}\\; y_{e,j_k,m_2}

over edges ``e`` (sender ``s``, receiver ``r``), paths ``k`` (input block ``i_k`` x harmonic block
``j_k`` -> one output block), channels ``u`` and the non-zero Clebsch-Gordan entries ``c`` of the
path (e3nn's path weight folded in). The convolution is ``dT/dg`` and its gradients are ``dT/dx``,
``dT/dy`` and ``dT/dw``; because ``T`` is linear in each argument, each of the four partial
derivatives is differentiated by the other three, so one family of kernels gives every order of
derivative (forces in the loss need the second).

The memory layout is e3nn's: node features ``[n, mul x (2l+1)]`` blocks, channel-major; per-edge
weights ``[n_edges, sum_k mul_k]`` in path order; output blocks one per path, in path order.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import torch
from e3nn import o3


@dataclass(frozen=True)
class Block:
    """One ``mul x l`` block of a feature vector: ``dim = mul * (2l+1)`` entries from ``offset``."""

    mul: int
    l: int  # noqa: E741 (the degree's standard name)
    offset: int

    @property
    def d(self) -> int:
        return 2 * self.l + 1


@dataclass(frozen=True)
class Path:
    """One 'uvu' path: input block ``i`` x harmonic block ``j`` -> output block (this path's own).

    ``terms`` are the non-zero ``(m1, m2, m3, coefficient)`` of the Clebsch-Gordan tensor times
    the path weight; ``weight_offset`` is where this path's ``mul`` per-edge weights start.
    """

    i: int
    j: int
    out: Block
    weight_offset: int
    terms: tuple[tuple[int, int, int, float], ...]


@dataclass(frozen=True)
class ConvSpec:
    """Everything a backend needs to evaluate a channel-wise tensor-product convolution.

    Attributes:
        inputs: node-feature blocks (``irreps_in``).
        harmonics: edge-harmonic blocks (``irreps_sh``, multiplicity 1).
        paths: the paths in e3nn's instruction order.
        in_dim, sh_dim, out_dim, weight_numel: row widths of the four tensors.
    """

    inputs: tuple[Block, ...]
    harmonics: tuple[Block, ...]
    paths: tuple[Path, ...]
    in_dim: int
    sh_dim: int
    out_dim: int
    weight_numel: int

    @property
    def max_mul(self) -> int:
        return max(b.mul for b in self.inputs)

    @functools.cached_property
    def key(self) -> str:
        """A short hash naming this spec (generated kernels are cached under it); computed once
        per spec (hashing the repr took longer than a small convolution)."""
        return hashlib.sha1(repr(self).encode()).hexdigest()[:16]

    @property
    def num_terms(self) -> int:
        return sum(len(p.terms) for p in self.paths)

    @classmethod
    def from_e3nn(cls, tp: o3.TensorProduct) -> ConvSpec:
        """Read the paths of an e3nn ``TensorProduct`` built with 'uvu' instructions, per-edge
        weights (``shared_weights=False``) and harmonics of multiplicity 1.

        Raises:
            ValueError: for any other kind of tensor product.
        """
        if tp.shared_weights or tp.internal_weights:
            raise ValueError("the fused convolution needs per-edge weights (shared_weights=False)")
        if any(mul != 1 for mul, _ in tp.irreps_in2):
            raise ValueError(f"edge harmonics must have multiplicity 1, got {tp.irreps_in2}")
        inputs = _blocks(tp.irreps_in1)
        harmonics = _blocks(tp.irreps_in2)
        outputs = _blocks(tp.irreps_out)
        seen_out: set[int] = set()
        paths, weight_offset = [], 0
        for ins in tp.instructions:
            if ins.connection_mode != "uvu" or not ins.has_weight:
                raise ValueError(f"only weighted 'uvu' paths are fused, got {ins}")
            if ins.i_out in seen_out:
                raise ValueError("each output block must come from exactly one path")
            seen_out.add(ins.i_out)
            l1, l2 = inputs[ins.i_in1].l, harmonics[ins.i_in2].l
            out = outputs[ins.i_out]
            cg = o3.wigner_3j(l1, l2, out.l, dtype=torch.float64) * ins.path_weight
            terms = tuple(
                (m1, m2, m3, float(cg[m1, m2, m3]))
                for m1 in range(2 * l1 + 1)
                for m2 in range(2 * l2 + 1)
                for m3 in range(2 * out.l + 1)
                if abs(float(cg[m1, m2, m3])) > 1e-12
            )
            paths.append(Path(ins.i_in1, ins.i_in2, out, weight_offset, terms))
            weight_offset += out.mul
        if len(seen_out) != len(outputs):
            raise ValueError("every output block must be produced by a path")
        return cls(
            inputs=inputs,
            harmonics=harmonics,
            paths=tuple(paths),
            in_dim=tp.irreps_in1.dim,
            sh_dim=tp.irreps_in2.dim,
            out_dim=tp.irreps_out.dim,
            weight_numel=weight_offset,
        )


def _blocks(irreps: o3.Irreps) -> tuple[Block, ...]:
    blocks, offset = [], 0
    for mul, ir in irreps:
        blocks.append(Block(mul, ir.l, offset))
        offset += mul * ir.dim
    return tuple(blocks)


def dense_cg(path: Path, spec: ConvSpec, dtype: torch.dtype, device=None) -> torch.Tensor:
    """The path's coefficient tensor ``[2l1+1, 2l2+1, 2l3+1]`` rebuilt from its sparse terms."""
    l1, l2 = spec.inputs[path.i].l, spec.harmonics[path.j].l
    cg = torch.zeros(2 * l1 + 1, 2 * l2 + 1, path.out.d, dtype=torch.float64)
    for m1, m2, m3, c in path.terms:
        cg[m1, m2, m3] = c
    return cg.to(dtype=dtype, device=device)


def compute_dtype(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor):
    """``(x, y, w)`` in the dtype the kernels compute in (float32 for half precision, else
    ``x``'s), for backends that take float32 or float64 only; cast the result back to
    ``x.dtype``."""
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    return x.to(dtype), y.to(dtype), w.to(dtype)
