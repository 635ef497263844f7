"""The tensor-product convolution: the equivariant message passing step every model runs."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from e3nn import o3
from torch import nn

from equivar.kernels import dispatch
from equivar.kernels.dense import DensePlan
from equivar.kernels.spec import ConvSpec
from equivar.nn.linear import IrrepsLinear
from equivar.nn.radial import RadialMLP

BACKENDS = dispatch.BACKENDS


def channelwise_instructions(
    irreps_in: o3.Irreps, irreps_sh: o3.Irreps, keep: Sequence[o3.Irrep]
) -> tuple[o3.Irreps, list[tuple[int, int, int, str, bool]]]:
    """Paths of a channel-wise ('uvu') tensor product, keeping outputs whose irrep is in ``keep``.

    Each input block ``mul x l1`` meets each harmonic ``l2`` and yields ``mul x l3`` for every
    ``l3`` in ``l1 x l2`` that is kept; every path has one weight per channel.

    Returns:
        ``(irreps_mid, instructions)`` for :class:`e3nn.o3.TensorProduct`; ``irreps_mid`` is
        sorted-free (one block per path, in path order).
    """
    keep = set(keep)
    out: list[tuple[int, o3.Irrep]] = []
    instructions = []
    for i, (mul, ir_in) in enumerate(irreps_in):
        for j, (_, ir_sh) in enumerate(irreps_sh):
            for ir_out in ir_in * ir_sh:
                if ir_out in keep:
                    instructions.append((i, j, len(out), "uvu", True))
                    out.append((mul, ir_out))
    if not out:
        raise ValueError(
            f"no tensor-product path from {irreps_in} x {irreps_sh} reaches any of {sorted(keep)}"
        )
    return o3.Irreps(out), instructions


class TensorProductConv(nn.Module):
    r"""Equivariant convolution: gather, CG tensor product with edge harmonics, sum onto receivers.

    .. math::
        h'_i = W_\text{out}\Big(\frac{1}{\bar n}\sum_{j \in N(i)}
               R(|r_{ij}|) \odot \big(W_\text{in} h_j \otimes Y(\hat r_{ij})\big)\Big)

    The tensor product is channel-wise (each channel of ``h_j`` meets the harmonics on its own,
    path weights per channel and per edge from the radial MLP ``R``), which is linear in the
    number of channels; the linear layers ``W`` mix channels within each irrep. Because ``R`` maps
    features that vanish at the cutoff to zero, messages vanish smoothly at the cutoff.

    Args:
        irreps_in: node features in.
        irreps_sh: edge spherical harmonics (e.g. ``Irreps.spherical_harmonics(3)``).
        irreps_out: node features out.
        num_radial: number of invariant edge features.
        radial_hidden: hidden widths of the radial MLP (default ``(64, 64)``).
        avg_num_neighbors: the sum is divided by this (dataset mean), so that the output scale
            does not grow with density (default 1).
        backend: implementation of the gather + tensor product + sum (:mod:`equivar.kernels`):
            ``"auto"`` (fused Triton kernel on CUDA, fused C kernel on CPU), ``"e3nn"`` (the
            reference), ``"dense"`` (stacked dense contractions, plain torch), ``"fused_cpu"``,
            ``"triton"`` or ``"cuequivariance"``. Parameters and results do not depend on it.

    Shapes:
        node_feats: [n_nodes, irreps_in.dim], edge_sh: [n_edges, irreps_sh.dim],
        edge_radial: [n_edges, num_radial], edge_index: [2, n_edges]
        -> [n_nodes, irreps_out.dim]

    References:
        Thomas et al., arXiv:1802.08219 (TFN); Batzner et al., Nat. Commun. 13, 2453 (2022).
    """

    def __init__(
        self,
        irreps_in: o3.Irreps | str,
        irreps_sh: o3.Irreps | str,
        irreps_out: o3.Irreps | str,
        num_radial: int,
        radial_hidden: Sequence[int] = (64, 64),
        avg_num_neighbors: float = 1.0,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        dispatch.check_backend(backend)
        if not avg_num_neighbors > 0:
            raise ValueError(f"avg_num_neighbors must be > 0, got {avg_num_neighbors}")
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_sh = o3.Irreps(irreps_sh)
        self.irreps_out = o3.Irreps(irreps_out)
        self.backend = backend
        self.avg_num_neighbors = float(avg_num_neighbors)

        self.linear_in = IrrepsLinear(self.irreps_in, self.irreps_in)
        keep = [ir for _, ir in self.irreps_out]
        irreps_mid, instructions = channelwise_instructions(self.irreps_in, self.irreps_sh, keep)
        self.tp = o3.TensorProduct(
            self.irreps_in,
            self.irreps_sh,
            irreps_mid,
            instructions,
            shared_weights=False,
            internal_weights=False,
        )
        self.irreps_mid = self.tp.irreps_out
        self.spec = ConvSpec.from_e3nn(self.tp)  # the same paths, for the fused backends
        self.dense_plan = DensePlan(self.spec)  # the "dense" backend's constants
        self.radial = RadialMLP(num_radial, tuple(radial_hidden), self.tp.weight_numel)
        self.linear_out = IrrepsLinear(self.irreps_mid, self.irreps_out)

    def forward(
        self,
        node_feats: torch.Tensor,
        edge_sh: torch.Tensor,
        edge_radial: torch.Tensor,
        edge_index: torch.Tensor,
    ) -> torch.Tensor:
        h = self.linear_in(node_feats)  # [n_nodes, irreps_in.dim]
        weights = self.radial(edge_radial)  # [n_edges, tp.weight_numel]
        # [n_nodes, irreps_mid.dim]: summed messages, on whichever backend runs (the dispatcher
        # runs them all, the e3nn reference self.tp included)
        agg = dispatch.convolve(self.spec, h, edge_sh, weights, edge_index, self.backend,
                                tensor_product=self.tp, plan=self.dense_plan)
        return self.linear_out(agg / self.avg_num_neighbors)  # [n_nodes, irreps_out.dim]

    def resolved_backend(self, device: torch.device | None = None) -> str:
        """The implementation that runs for inputs on ``device`` (default: the parameters')."""
        if device is None:
            device = next(self.parameters()).device
        return dispatch.resolve(self.backend, device)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.irreps_in} -> {self.irreps_out} | "
            f"sh={self.irreps_sh}, {self.tp.weight_numel} weights/edge, "
            f"backend={self._backend_text()})"
        )

    def _backend_text(self) -> str:
        with warnings.catch_warnings():  # a repr must not warn; the call will
            warnings.simplefilter("ignore")
            used = self.resolved_backend()
        device = next(self.parameters()).device
        return self.backend if used == self.backend else f"{self.backend}->{used} on {device.type}"
