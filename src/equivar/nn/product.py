"""Many-body product basis: channel-wise Clebsch-Gordan powers of a node's neighbour density."""

from __future__ import annotations

import math

import torch
from e3nn import o3
from torch import nn

from equivar.kernels import cpu_product


def _uniform_layout(irreps: o3.Irreps) -> tuple[int, list[o3.Irrep]]:
    """``(mul, [irreps])`` of ``C x ir1 + C x ir2 + ...`` with distinct irreps; else an error."""
    muls = {mul for mul, _ in irreps}
    irs = [ir for _, ir in irreps]
    if len(muls) != 1 or len(set(irs)) != len(irs):
        raise ValueError(
            f"the product basis needs one block per irrep, all of one multiplicity, got {irreps}"
        )
    return muls.pop(), irs


#: the implementations of the products that ``ProductBasis(kernel=...)`` accepts
KERNELS = ("auto", "torch")


class ProductBasis(nn.Module):
    r"""Symmetric channel-wise powers of equivariant node features, up to ``correlation``.

    For node features :math:`A_{i,u,lm}` (one block per irrep, ``C`` channels each; after a
    convolution, the atom's neighbour density) and the node's species :math:`s_i`,

    .. math::
        B^{(1)} = A,\qquad
        B^{(\nu)}_{u,LM} = \sum_{p:\,(l_1, l_2) \to L} w^{(\nu)}_{s_i, p, u}
            \sum_{m_1 m_2} C^{LM}_{l_1 m_1 l_2 m_2} B^{(\nu-1)}_{u, l_1 m_1} A_{u, l_2 m_2},

    and the output is :math:`\sum_\nu w^{(1)}_{s_i,L,u}\,[\nu = 1] B^{(1)} + B^{(2)} + \dots`.
    Each power multiplies in one more copy of the neighbour sum, so ``correlation`` :math:`\nu`
    makes the features :math:`(\nu + 1)`-body functions of the positions in a single layer (the
    idea of ACE and MACE, here in its channel-wise, recursive form). All products are per node,
    so the cost does not grow with the number of edges. Equivariant because every term is a
    Clebsch-Gordan coupling with invariant (species) weights.

    Args:
        irreps: node features in and out, ``C x ir`` for distinct irreps (e.g. ``32x0e+32x1o``).
        correlation: highest power (1 = identity with species-wise scaling; 2-3 typical).
        num_species: rows of the species-dependent weights.
        kernel: ``"auto"`` (default): on CPU float32/float64 tensors the fused C kernel
            (:mod:`equivar.kernels.cpu_product`: the same numbers, 1.3-1.7x faster training
            steps with forces), else plain torch; ``"torch"``: plain torch everywhere.

    Shapes:
        x: [n_nodes, irreps.dim], species_index: [n_nodes] -> [n_nodes, irreps.dim]

    References:
        Drautz, Phys. Rev. B 99, 014104 (2019) (ACE); Batatia et al., NeurIPS 2022 (MACE).
    """

    def __init__(
        self, irreps: o3.Irreps | str, correlation: int, num_species: int, kernel: str = "auto"
    ) -> None:
        super().__init__()
        if correlation < 1:
            raise ValueError(f"correlation must be >= 1, got {correlation}")
        if kernel not in KERNELS:
            raise ValueError(f"unknown product kernel {kernel!r}; available: {KERNELS}")
        self.kernel = kernel
        self.irreps_in = self.irreps_out = o3.Irreps(irreps)
        self.correlation = int(correlation)
        self.mul, irs = _uniform_layout(self.irreps_in)
        dims = [ir.dim for ir in irs]
        offsets = [sum(dims[:k]) for k in range(len(dims))]
        d = sum(dims)
        self.d = d
        # e3nn layout (block-major, channel-major inside a block) <-> [C, D] per node
        cols = torch.cat([
            off * self.mul + torch.arange(self.mul * dim).reshape(self.mul, dim)
            for off, dim in zip(offsets, dims, strict=True)
        ], dim=1)  # fmt: skip
        self.register_buffer("to_cd", cols.reshape(-1), persistent=False)  # [C * D]
        self.register_buffer("from_cd", torch.argsort(cols.reshape(-1)), persistent=False)
        # paths (l1, l2) -> L that stay inside ``irreps`` (parity included)
        paths = [(a, b, c) for a, ir1 in enumerate(irs) for b, ir2 in enumerate(irs)
                 for c, ir3 in enumerate(irs) if ir3 in ir1 * ir2]  # fmt: skip
        q = sum(dims[c] for _, _, c in paths)
        cg = torch.zeros(d, d, q, dtype=torch.float64)
        out_sum = torch.zeros(q, d, dtype=torch.float64)  # path components -> output components
        path_of_q = torch.empty(q, dtype=torch.long)
        q0 = 0
        for k, (a, b, c) in enumerate(paths):
            la, lb, lc = irs[a].l, irs[b].l, irs[c].l
            block = o3.wigner_3j(la, lb, lc, dtype=torch.float64) * math.sqrt(2 * lc + 1)
            cg[offsets[a] : offsets[a] + dims[a], offsets[b] : offsets[b] + dims[b],
               q0 : q0 + dims[c]] = block  # fmt: skip
            out_sum[q0 : q0 + dims[c], offsets[c] : offsets[c] + dims[c]] = torch.eye(dims[c])
            path_of_q[q0 : q0 + dims[c]] = k
            q0 += dims[c]
        self.plan = cpu_product.ProductPlan.from_dense(
            cg, out_sum.argmax(1), path_of_q, cols.reshape(-1), self.mul
        )  # the non-zero terms, for the C kernel
        dtype = torch.get_default_dtype()
        self.register_buffer("cg", cg.reshape(d * d, q).to(dtype), persistent=False)
        self.register_buffer("out_sum", out_sum.to(dtype), persistent=False)
        self.register_buffer("path_of_q", path_of_q, persistent=False)
        self.num_paths = len(paths)
        block_of_d = torch.cat([torch.full((dim,), k) for k, dim in enumerate(dims)])
        self.register_buffer("block_of_d", block_of_d, persistent=False)
        # t-layout column (component, channel) -> its entry of linear_weight.reshape(S, -1)
        linear_cols = block_of_d[:, None] * self.mul + torch.arange(self.mul)[None, :]
        self.register_buffer("linear_cols", linear_cols.reshape(-1), persistent=False)
        # species-wise weights: linear term per (species, block, channel), one set per power
        self.linear_weight = nn.Parameter(torch.ones(num_species, len(irs), self.mul))
        into = torch.bincount(torch.tensor([c for _, _, c in paths], dtype=torch.long),
                              minlength=len(irs)).clamp(min=1)  # fmt: skip
        scale = into[torch.tensor([c for _, _, c in paths], dtype=torch.long)].rsqrt()
        self.power_weights = nn.ParameterList([
            nn.Parameter(torch.randn(num_species, len(paths), self.mul) * scale[None, :, None])
            for _ in range(self.correlation - 1)
        ])  # fmt: skip

    def forward(self, x: torch.Tensor, species_index: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.mul * self.d:
            raise ValueError(f"x must be [n_nodes, {self.mul * self.d}], got {tuple(x.shape)}")
        if species_index.shape != x.shape[:1]:
            raise ValueError(f"species_index must be [n_nodes] = [{x.shape[0]}], got "
                             f"{tuple(species_index.shape)}")  # fmt: skip
        if self.kernel == "auto" and cpu_product.usable(x, self.linear_weight):
            return self._forward_kernel(x, species_index)
        return self._forward_torch(x, species_index)

    def _forward_kernel(self, x: torch.Tensor, species_index: torch.Tensor) -> torch.Tensor:
        """The fused C kernel, in the t-layout: no per-node outer product is stored."""
        a = cpu_product.to_t_layout(self.plan, x)  # [n_nodes, D * C]
        n_species = self.linear_weight.shape[0]
        scale = self.linear_weight.reshape(n_species, -1).index_select(1, self.linear_cols)
        out = a * scale.index_select(0, species_index)  # [n_nodes, D * C]
        b = a
        for w in self.power_weights:
            # [n_nodes, n_paths, C] weights -> the next power, [n_nodes, D * C]
            b = cpu_product.cpu_product(self.plan, b, a, w.index_select(0, species_index))
            out = out + b
        return cpu_product.from_t_layout(self.plan, out)

    def _forward_torch(self, x: torch.Tensor, species_index: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        a = x.index_select(1, self.to_cd).reshape(n, self.mul, self.d)  # [N, C, D]
        # weights laid out [species, C, D or Q] before the per-node gather, so every per-node
        # product is of contiguous tensors (11% faster with derivatives than a transposed one)
        scale = self.linear_weight.index_select(1, self.block_of_d).transpose(1, 2).contiguous()
        out = a * scale.index_select(0, species_index)  # [N, C, D]
        b = a
        for w in self.power_weights:
            outer = (b.unsqueeze(3) * a.unsqueeze(2)).reshape(n * self.mul, self.d * self.d)
            coupled = (outer @ self.cg).reshape(n, self.mul, -1)  # [N, C, Q]
            weights = w.index_select(1, self.path_of_q).transpose(1, 2).contiguous()  # [S, C, Q]
            b = (coupled * weights.index_select(0, species_index)) @ self.out_sum  # [N, C, D]
            out = out + b
        return out.reshape(n, self.mul * self.d).index_select(1, self.from_cd)

    def __repr__(self) -> str:
        kernel = "" if self.kernel == "auto" else f", kernel={self.kernel!r}"
        return (f"{type(self).__name__}({self.irreps_in}, correlation={self.correlation}, "
                f"{self.num_paths} paths{kernel})")  # fmt: skip
