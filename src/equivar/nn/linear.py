"""Equivariant linear layer: e3nn's ``o3.Linear``, evaluated as one matrix product per irrep."""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn


class IrrepsLinear(nn.Module):
    r"""Channel mixing within each irrep: ``out[w, m] = sum_u W_ir[u, w] x[u, m]`` per irrep type.

    The same map, parameters, initialisation and ``state_dict`` as e3nn's ``o3.Linear(irreps_in,
    irreps_out)`` with its default instructions (every input block connects to every output
    block of the same irrep, "element" path normalisation), so checkpoints of either load into
    the other. What differs is the evaluation. e3nn runs one small ``einsum`` per block pair and
    sums and concatenates the results: 30-60 tensor operations for a few irreps, and as many again
    in each backward pass. That per-operation overhead dominates a training step of a small
    model on a CPU (forces in the loss differentiate every layer twice). Here all input blocks
    of one irrep are read as a single ``[n * (2l+1), sum of in-multiplicities]`` matrix and
    multiplied by that irrep's ``[in, out]`` weight matrix, assembled once per call from the flat
    weight vector, so a layer is about four operations per distinct irrep.

    Rotations act on the ``m`` index only and the weights touch only channels, so the map is
    equivariant; blocks of different irreps never mix.

    Args:
        irreps_in: input features.
        irreps_out: output features (blocks without an input of their irrep are zero, as in
            e3nn).
        biases: add a learned bias to scalar (``0e``) output blocks (default False).

    Shapes:
        x: [..., irreps_in.dim] -> [..., irreps_out.dim]

    Example:
        >>> lin = IrrepsLinear("8x0e+4x1o", "16x0e+2x1o")
        >>> lin(torch.randn(5, 20)).shape
        torch.Size([5, 22])
    """

    def __init__(
        self, irreps_in: o3.Irreps | str, irreps_out: o3.Irreps | str, *, biases: bool = False
    ) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_out = o3.Irreps(irreps_out)
        # e3nn's instruction order, hence its flat weight layout: (i_in, i_out) pairs
        pairs = [(i, o) for i, (_, ir_in) in enumerate(self.irreps_in)
                 for o, (_, ir_out) in enumerate(self.irreps_out) if ir_in == ir_out]  # fmt: skip
        pairs = [(i, o) for i, o in pairs if self.irreps_in[i].mul and self.irreps_out[o].mul]
        fan_in = {o: sum(self.irreps_in[i].mul for i, oo in pairs if oo == o) for _, o in pairs}
        offsets, numel = [], 0
        for i, o in pairs:
            offsets.append(numel)
            numel += self.irreps_in[i].mul * self.irreps_out[o].mul
        self.weight_numel = numel
        starts_in = [s.start for s in self.irreps_in.slices()]
        starts_out = [s.start for s in self.irreps_out.slices()]

        in_columns, out_source, self._groups = [], {}, []
        in_base = out_base = 0
        for ir in sorted({ir for (_, ir) in self.irreps_out}):
            blocks_in = sorted({i for i, o in pairs if self.irreps_in[i].ir == ir})
            blocks_out = sorted({o for i, o in pairs if self.irreps_out[o].ir == ir})
            if not blocks_in:
                continue
            d = ir.dim
            rows = {i: r for i, r in zip(blocks_in, _running(
                [self.irreps_in[i].mul for i in blocks_in]), strict=True)}  # fmt: skip
            cols = {o: c for o, c in zip(blocks_out, _running(
                [self.irreps_out[o].mul for o in blocks_out]), strict=True)}  # fmt: skip
            m_in = sum(self.irreps_in[i].mul for i in blocks_in)
            m_out = sum(self.irreps_out[o].mul for o in blocks_out)
            # x columns read in (m, u) order, so that [n, d * m_in] views as [n * d, m_in]
            for m in range(d):
                for i in blocks_in:
                    mul = self.irreps_in[i].mul
                    in_columns += [starts_in[i] + u * d + m for u in range(mul)]
            # the irrep's weight matrix [m_in, m_out]: flat index and e3nn's path weight
            index = torch.full((m_in, m_out), -1, dtype=torch.long)
            scale = torch.zeros(m_in, m_out, dtype=torch.float64)
            for k, (i, o) in enumerate(pairs):
                if self.irreps_in[i].ir != ir:
                    continue
                mi, mo = self.irreps_in[i].mul, self.irreps_out[o].mul
                flat = offsets[k] + torch.arange(mi * mo).reshape(mi, mo)
                index[rows[i] : rows[i] + mi, cols[o] : cols[o] + mo] = flat
                scale[rows[i] : rows[i] + mi, cols[o] : cols[o] + mo] = fan_in[o] ** -0.5
            assert (index >= 0).all(), "every same-irrep block pair is an instruction"
            self._groups.append((d, m_in, m_out, in_base, index, scale))
            # the product is [n * d, m_out] in (m, w) order: where each output column comes from
            for o in blocks_out:
                mo = self.irreps_out[o].mul
                for w in range(mo):
                    for m in range(d):
                        out_source[starts_out[o] + w * d + m] = out_base + m * m_out + cols[o] + w
            in_base += d * m_in
            out_base += d * m_out
        self.in_dim, self.out_dim = self.irreps_in.dim, self.irreps_out.dim
        # output columns with no input irrep read a zero column appended after the products
        order = [out_source.get(c, out_base) for c in range(self.out_dim)]
        self._needs_zero = out_base in order
        self.register_buffer("_in_columns", torch.tensor(in_columns, dtype=torch.long),
                             persistent=False)  # fmt: skip
        self.register_buffer("_out_order", torch.tensor(order, dtype=torch.long), persistent=False)
        self._identity_out = order == list(range(self.out_dim))
        self._identity_in = in_columns == list(range(self.in_dim))
        index = torch.cat([g[4].reshape(-1) for g in self._groups]) if self._groups else None
        scale = torch.cat([g[5].reshape(-1) for g in self._groups]) if self._groups else None
        self.register_buffer("_weight_index", index, persistent=False)
        # built in float64 whatever the default dtype, so 1/sqrt(fan-in) stays exact when a
        # module made under a float32 default is cast to float64; cast to the weight's dtype
        # where used
        self.register_buffer("_weight_scale", scale, persistent=False)
        self._groups = [g[:4] for g in self._groups]
        # parameters and buffers under e3nn's names, so state_dicts are interchangeable
        if numel > 0:
            self.weight = nn.Parameter(torch.randn(numel))
        else:
            self.register_buffer("weight", torch.Tensor())
        self.bias_columns = [(starts_out[o], mul) for o, (mul, ir) in enumerate(self.irreps_out)
                             if biases and ir == o3.Irrep("0e") and mul]  # fmt: skip
        bias_numel = sum(mul for _, mul in self.bias_columns)
        if bias_numel:
            self.bias = nn.Parameter(torch.zeros(bias_numel))
            columns = torch.cat([torch.arange(s, s + m) for s, m in self.bias_columns])
            self.register_buffer("_bias_columns", columns, persistent=False)
        else:
            self.register_buffer("bias", torch.Tensor())
        mask = torch.zeros(self.out_dim)
        for c in out_source:
            mask[c] = 1.0
        for start, mul in self.bias_columns:
            mask[start : start + mul] = 1.0
        self.register_buffer("output_mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"{self}: expected input of size {self.in_dim} ({self.irreps_in}) "
                             f"in the last dimension, got shape {tuple(x.shape)}")  # fmt: skip
        lead = x.shape[:-1]
        x = x.reshape(-1, self.in_dim)  # [n, in_dim]
        n = x.shape[0]
        if not self._groups:
            out = x.new_zeros(n, self.out_dim)
        else:
            xs = x if self._identity_in else x.index_select(1, self._in_columns)  # (m, u) order
            scale = self._weight_scale.to(self.weight.dtype)
            w_all = self.weight[self._weight_index] * scale  # each irrep's [in, out] matrix
            parts, w_base = [], 0
            for d, m_in, m_out, in_base in self._groups:
                xg = xs.narrow(1, in_base, d * m_in).reshape(n * d, m_in)  # [n * d, m_in]
                wg = w_all.narrow(0, w_base, m_in * m_out).view(m_in, m_out)
                parts.append((xg @ wg).reshape(n, d * m_out))  # [n, d * m_out], (m, w) order
                w_base += m_in * m_out
            if self._needs_zero:
                parts.append(x.new_zeros(n, 1))
            out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
            if not self._identity_out:
                out = out.index_select(1, self._out_order)  # [n, out_dim], e3nn's layout
        if self.bias_columns:
            out = out.index_add(1, self._bias_columns, self.bias.expand(n, -1))
        return out.reshape(*lead, self.out_dim)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.irreps_in} -> {self.irreps_out} | "
                f"{self.weight_numel} weights)")  # fmt: skip


def _running(sizes: list[int]) -> list[int]:
    """Start offsets of consecutive blocks of the given sizes."""
    return [sum(sizes[:k]) for k in range(len(sizes))]


__all__ = ["IrrepsLinear"]
