"""The Psiformer trunk: multi-head self-attention over electrons (von Glehn et al., ICLR 2023).

Each electron starts from its own features only (electron-nucleus vectors and distances and its
spin, built by :class:`~equivar.models.wavefunction.PsiformerWavefunction`); a linear embedding
maps them to ``hidden = num_heads * head_dim`` channels, then ``num_layers`` blocks of

    ``h <- h + W_o concat_heads(softmax(q k^T / sqrt(d)) v)``      (self-attention, residual)
    ``h <- h + MLP(h)``                                            (tanh MLP, residual)

each residual optionally followed by a LayerNorm. Attention weights and the MLP act on every
electron alike and the softmax sums over all electrons, so the trunk is equivariant under every
permutation of the electrons (its rows are permuted the same way); with the spin as an input
feature that means same-spin permutations for the wavefunction, which is all a determinant
needs. Electron-electron distances never enter: the cusps are left to a Jastrow factor outside
the determinants, as in the paper.

Plain tensors in, plain tensors out; every operation works under ``torch.func.vmap``/``jvp``
(the Laplacian and the per-walker gradients of :mod:`equivar.qmc`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

__all__ = ["PSIFORMER_PRESETS", "Psiformer", "PsiformerLayer", "SelfAttention"]

#: Psiformer sizes: determinants, layers, heads and the width of each head ("L": 4 layers of
#: 4 heads x 64 channels and 16 determinants, the size of the paper's network)
PSIFORMER_PRESETS: dict[str, dict[str, Any]] = {
    "S": dict(n_determinants=4, num_layers=2, num_heads=2, head_dim=16),
    "M": dict(n_determinants=8, num_layers=3, num_heads=4, head_dim=16),
    "L": dict(n_determinants=16, num_layers=4, num_heads=4, head_dim=64),
}


class SelfAttention(nn.Module):
    r"""Multi-head self-attention over the elements of a set (here the electrons of a walker).

    ``a^c_ij = softmax_j(q^c_i . k^c_j / sqrt(head_dim))``, ``out_i = W_o [sum_j a^c_ij v^c_j]_c``
    with ``q, k, v`` bias-free linear maps of ``h`` split into ``num_heads`` heads ``c``.
    Equivariant under any permutation of the set.

    Args:
        hidden: width of ``h`` (input and output).
        num_heads: attention heads.
        head_dim: channels of each head's queries, keys and values.

    Shapes:
        h: [n_walkers, n_elec, hidden] -> [n_walkers, n_elec, hidden]
    """

    def __init__(self, hidden: int, num_heads: int, head_dim: int) -> None:
        super().__init__()
        self.num_heads, self.head_dim = int(num_heads), int(head_dim)
        width = self.num_heads * self.head_dim
        self.query = nn.Linear(hidden, width, bias=False)
        self.key = nn.Linear(hidden, width, bias=False)
        self.value = nn.Linear(hidden, width, bias=False)
        self.output = nn.Linear(width, hidden, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        def heads(x: torch.Tensor) -> torch.Tensor:  # [n_w, n_elec, width] -> [n_w, c, n_elec, d]
            return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(-3, -2)

        q, k, v = heads(self.query(h)), heads(self.key(h)), heads(self.value(h))
        logits = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)  # [n_w, c, n_elec, n_elec]
        out = torch.softmax(logits, dim=-1) @ v  # [n_walkers, num_heads, n_elec, head_dim]
        return self.output(out.transpose(-3, -2).flatten(-2))  # [n_walkers, n_elec, hidden]

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, head_dim={self.head_dim}"


class PsiformerLayer(nn.Module):
    r"""One Psiformer block: self-attention + residual (+ LayerNorm), tanh MLP + residual
    (+ LayerNorm).

    Args:
        hidden: width of the residual stream.
        num_heads, head_dim: of the attention.
        mlp_hidden: ``None`` (default, the paper's): the MLP is one layer
            ``tanh(W h + b)``; an integer ``m``: ``W_2 tanh(W_1 h + b_1) + b_2`` through ``m``
            channels.
        layer_norm: LayerNorm after each residual (default False).

    Shapes:
        h: [n_walkers, n_elec, hidden] -> [n_walkers, n_elec, hidden]
    """

    def __init__(
        self,
        hidden: int,
        num_heads: int,
        head_dim: int,
        mlp_hidden: int | None = None,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        self.attention = SelfAttention(hidden, num_heads, head_dim)
        if mlp_hidden is None:
            self.mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh())
        else:
            self.mlp = nn.Sequential(
                nn.Linear(hidden, mlp_hidden), nn.Tanh(), nn.Linear(mlp_hidden, hidden)
            )
        self.norm_attention = nn.LayerNorm(hidden) if layer_norm else nn.Identity()
        self.norm_mlp = nn.LayerNorm(hidden) if layer_norm else nn.Identity()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.norm_attention(h + self.attention(h))
        return self.norm_mlp(h + self.mlp(h))


class Psiformer(nn.Module):
    r"""The Psiformer trunk: a linear embedding of per-electron features, then
    :class:`PsiformerLayer` blocks.

    Args:
        in_features: per-electron input width.
        num_layers: attention blocks (>= 1).
        num_heads, head_dim: attention heads and their width; the residual stream has
            ``hidden = num_heads * head_dim`` channels.
        mlp_hidden: see :class:`PsiformerLayer` (default None: one tanh layer).
        layer_norm: LayerNorm after each residual (default False).

    Shapes:
        x: [n_walkers, n_elec, in_features] -> [n_walkers, n_elec, hidden]

    Example:
        >>> trunk = Psiformer(5, num_layers=2, num_heads=2, head_dim=4)
        >>> x = torch.randn(3, 4, 5)
        >>> h = trunk(x)
        >>> h.shape
        torch.Size([3, 4, 8])
        >>> bool(torch.allclose(trunk(x[:, [2, 0, 3, 1]]), h[:, [2, 0, 3, 1]], atol=1e-6))
        True

    References:
        von Glehn, Spencer, Pfau, "A self-attention ansatz for ab-initio quantum chemistry",
        ICLR 2023 (Psiformer).
    """

    def __init__(
        self,
        in_features: int,
        *,
        num_layers: int,
        num_heads: int,
        head_dim: int,
        mlp_hidden: int | None = None,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        for name, value in [
            ("in_features", in_features),
            ("num_layers", num_layers),
            ("num_heads", num_heads),
            ("head_dim", head_dim),
        ]:
            if value < 1:
                raise ValueError(f"Psiformer needs {name} >= 1, got {value}")
        if mlp_hidden is not None and mlp_hidden < 1:
            raise ValueError(f"Psiformer needs mlp_hidden >= 1 or None, got {mlp_hidden}")
        self.in_features, self.hidden = int(in_features), int(num_heads) * int(head_dim)
        self.embedding = nn.Linear(in_features, self.hidden)
        self.layers = nn.ModuleList(
            PsiformerLayer(self.hidden, num_heads, head_dim, mlp_hidden, layer_norm)
            for _ in range(num_layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"Psiformer expects {self.in_features} features per electron, got {x.shape[-1]}"
            )
        h = self.embedding(x)  # [n_walkers, n_elec, hidden]
        for layer in self.layers:
            h = layer(h)
        return h

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, hidden={self.hidden}"
