"""Equivariance of graph models: measure it (:func:`equivariance_error`), or assert it
(:func:`assert_equivariant`, a thin check on the measurement).

For a model ``f`` and a group element ``g`` (a rotation, an improper rotation, a translation, a
relabelling of the atoms or a reordering of the edges), equivariance means ``f(g.x) = g.f(x)``.
Both functions evaluate both sides for random group elements and report the worst relative
error for every output and every kind of transformation; the measurement returns the numbers
whatever they are (training logs them), the assertion raises when one exceeds its tolerance.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import torch

from equivar.keys import FIELDS, POSITIONS, FieldSpec
from equivar.testing.measurement import (
    EQUIVARIANCE_TOLERANCES,
    SymmetryAssertionError,
    default_tolerances,
    detached,
    evaluate_outputs,
    relative_error,
)
from equivar.testing.transforms import (
    graph_index,
    num_graphs,
    permute_nodes,
    random_edge_permutation_within_graphs,
    random_permutation_within_graphs,
    random_rotation,
    rotate,
    shuffle_edges,
    transform_output,
    translate,
)

__all__ = [
    "EQUIVARIANCE_TOLERANCES",
    "Deviation",
    "SymmetryAssertionError",
    "assert_equivariant",
    "equivariance_error",
]

TRANSFORMS = ("rotation", "improper_rotation", "translation", "permutation", "edge_shuffle")
#: Random group elements drawn per kind of transformation by default.
DEFAULT_N_ROTATIONS = 3


class Deviation(NamedTuple):
    """The worst deviation of one output under one kind of transformation (Python floats)."""

    #: the relative error ``max_diff / max(scale, floor)`` (what the assertion compares with
    #: ``rtol``)
    error: float
    #: ``max|f(g.x) - g.f(x)|``, in the output's units
    max_diff: float
    #: ``max|g.f(x)|`` of the same draw
    scale: float


def _resolve_specs(model, outputs: Mapping, keys, n_graphs: int, n_nodes: int, what: str):
    """``{output: FieldSpec}`` of the outputs to check (``keys``, default all)."""
    own = getattr(model, "output_specs", None) or {}
    keys = list(outputs) if keys is None else list(keys)
    specs: dict[str, FieldSpec] = {}
    for key in keys:
        if key not in outputs:
            raise ValueError(f"{what}: output {key!r} requested in keys but the model "
                             f"returned only {sorted(outputs)}")
        value = outputs[key]
        spec = own.get(key, FIELDS.get(key))
        if spec is None:
            if value.dim() >= 1 and value.shape[0] == n_graphs:
                spec = FieldSpec("graph", "0e")  # unknown graph-level output: invariant scalars
            else:
                raise ValueError(
                    f"{what}: output {key!r} with shape {list(value.shape)} has no "
                    f"FieldSpec; declare it in model.output_specs (e.g. "
                    f"{{{key!r}: FieldSpec('node', '1o')}}) or leave it out with keys=[...]")
        expected_len = n_graphs if spec.level == "graph" else n_nodes
        if value.dim() < 1 or value.shape[0] != expected_len:
            raise ValueError(f"{what}: output {key!r} is {spec.level}-level, so its "
                             f"leading dimension must be {expected_len}; got {list(value.shape)}")
        specs[key] = spec
    return specs


def _draws(base, n_rotations: int, kinds: set[str], seed: int) -> Iterator[tuple[str, Any, dict]]:
    """``(transform, transformed batch, kwargs of transform_output)`` for every random draw of
    every kind in ``kinds``, in the order of :data:`TRANSFORMS`."""
    pos = base[POSITIONS]
    dtype, device = pos.dtype, pos.device
    generator = torch.Generator().manual_seed(seed)
    n_graphs, n_nodes = num_graphs(base), base.num_nodes
    for _ in range(n_rotations):
        R = random_rotation(dtype, generator, device=device)  # [3, 3]
        yield "rotation", rotate(base, R), {"R": R}
    if "improper_rotation" in kinds:
        for _ in range(n_rotations):
            R = random_rotation(dtype, generator, inversion=True, device=device)
            yield "improper_rotation", rotate(base, R), {"R": R}
    if "translation" in kinds:
        extent = max(1.0, pos.detach().abs().max().item()) if pos.numel() else 1.0
        for _ in range(n_rotations):
            t = (torch.randn(n_graphs, 3, dtype=torch.float64, generator=generator) * extent)
            t = t.to(dtype=dtype, device=device)  # [n_graphs, 3]
            yield "translation", translate(base, t), {"t": t}
    if "permutation" in kinds and n_nodes > n_graphs:  # some graph has >= 2 nodes
        for _ in range(n_rotations):
            perm = random_permutation_within_graphs(base, generator)  # [n_nodes]
            yield "permutation", permute_nodes(base, perm), {"perm": perm}
    if "edge_shuffle" in kinds and "edge_index" in base and base.edge_index.shape[1] > 1:
        for _ in range(n_rotations):
            perm = random_edge_permutation_within_graphs(base, generator)  # [n_edges]
            yield "edge_shuffle", shuffle_edges(base, perm), {}


def _measure(model, batch, *, n_rotations: int, kinds: set[str], keys, floor: float, seed: int,
             what: str) -> tuple[dict[str, FieldSpec], dict[str, dict[str, Deviation]]]:
    """The shared core of :func:`equivariance_error` and :func:`assert_equivariant`:
    ``(specs, {output: {transform: worst Deviation}})``; ``what`` names the caller in errors."""
    base = detached(batch)
    n_graphs, n_nodes = num_graphs(base), base.num_nodes
    graph = graph_index(base)  # [n_nodes]
    reference = evaluate_outputs(model, base)
    specs = _resolve_specs(model, reference, keys, n_graphs, n_nodes, what)
    worst: dict[str, dict[str, Deviation]] = {key: {} for key in specs}
    for name, moved, action in _draws(base, n_rotations, kinds, seed):
        out = evaluate_outputs(model, moved)
        for key, spec in specs.items():
            if key not in out:
                raise ValueError(f"{what}: output {key!r} disappeared under {name}")
            kwargs = dict(action)
            if "t" in kwargs and spec.translates:
                t = kwargs["t"][graph] if spec.level == "node" else kwargs["t"]  # [n, 3]
                kwargs["t"] = t.view(t.shape[0], *([1] * (reference[key].dim() - 2)), 3)
            expected = transform_output(reference[key], spec, **kwargs)
            if out[key].shape != expected.shape:
                raise ValueError(f"{what}: output {key!r} changed shape under {name}: "
                                 f"{list(expected.shape)} -> {list(out[key].shape)}")
            deviation = Deviation(*relative_error(out[key], expected, floor))
            prev = worst[key].get(name)
            if prev is None or not deviation.error <= prev.error:  # keeps NaN
                worst[key][name] = deviation
    return specs, worst


def _kinds(inversion: bool, translation: bool, permutation: bool, edge_shuffle: bool) -> set:
    flags = (True, inversion, translation, permutation, edge_shuffle)
    return {name for name, on in zip(TRANSFORMS, flags, strict=True) if on}


# --- the measurement ------------------------------------------------------------------------------
def equivariance_error(
    model,
    batch,
    *,
    n_rotations: int = DEFAULT_N_ROTATIONS,
    inversion: bool = True,
    translation: bool = True,
    permutation: bool = True,
    edge_shuffle: bool = True,
    keys: Iterable[str] | None = None,
    floor: float = 0.0,
    seed: int = 0,
) -> dict[str, dict[str, Deviation]]:
    """Measure how far ``model(g.x)`` is from ``g.model(x)``, for every output and every kind of
    transformation, without judging it: a large error is returned, never raised.

    The transformations, the random draws (same ``seed``, same elements) and the way the group
    acts on outputs are those of :func:`assert_equivariant`, which is a check on these numbers.
    The relative error of an output under one draw is ``max|f(g.x) - g.f(x)|`` divided by
    ``max(max|g.f(x)|, floor)``; the worst draw of each kind is kept. Errors are computed in
    float64 from outputs in the model's own precision, so float32/TF32/bf16 rounding shows.

    Args:
        model: callable ``model(batch) -> Mapping[str, Tensor]`` (put it in ``eval()`` mode).
        batch: a ``torch_geometric`` ``Data``/``Batch`` with the fields of :mod:`equivar.keys`.
        n_rotations: random group elements drawn per kind of transformation. Default 3.
        inversion: also measure improper rotations. Default True.
        translation: measure translations. Default True.
        permutation: measure node permutations within graphs. Default True.
        edge_shuffle: measure reorderings of the edges. Default True.
        keys: outputs to measure (default: every tensor output).
        floor: lower bound on the scale, in the output's units, for outputs that are ~0
            (default 0: purely relative; :func:`assert_equivariant` uses ``atol / rtol``).
        seed: seed of the random group elements.

    Returns:
        ``{output: {transform: Deviation(error, max_diff, scale)}}``, transforms named as in
        :func:`assert_equivariant`.

    Raises:
        ValueError: an output has no usable spec or a wrong leading dimension (a usage error,
            not a measured one).

    Shapes:
        outputs: graph-level ``[n_graphs, ...]``, node-level ``[n_nodes, ...]``.

    Example:
        >>> import torch
        >>> from torch_geometric.data import Data
        >>> from equivar.testing import equivariance_error
        >>> class FixedDipole(torch.nn.Module):  # a "dipole" that ignores rotations
        ...     def forward(self, batch):
        ...         return {"dipole": torch.ones(1, 3, dtype=batch.pos.dtype)}  # [n_graphs, 3]
        >>> data = Data(pos=torch.randn(4, 3, dtype=torch.float64))
        >>> errors = equivariance_error(FixedDipole(), data)
        >>> errors["dipole"]["translation"].error, errors["dipole"]["rotation"].error > 0.1
        (0.0, True)
    """
    return _measure(model, batch, n_rotations=n_rotations,
                    kinds=_kinds(inversion, translation, permutation, edge_shuffle), keys=keys,
                    floor=float(floor), seed=seed, what="equivariance_error")[1]


# --- the assertion --------------------------------------------------------------------------------
def assert_equivariant(
    model,
    batch,
    *,
    n_rotations: int = DEFAULT_N_ROTATIONS,
    inversion: bool = True,
    translation: bool = True,
    permutation: bool = True,
    edge_shuffle: bool = True,
    keys: Iterable[str] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Assert ``model(g.x) == g.model(x)`` for rotations, reflections, translations and
    relabellings, for every output of the model.

    The group acts on the inputs through :mod:`equivar.testing.transforms` and on each output
    through its :class:`~equivar.keys.FieldSpec`, taken from ``model.output_specs`` when the model
    defines it, else from :data:`equivar.keys.FIELDS`. An output with no spec whose leading
    dimension is ``n_graphs`` is treated as graph-level invariant scalars; any other output
    without a spec is an error (declare it in ``output_specs`` or exclude it with ``keys``).

    Transformations checked (``n_rotations`` random draws of each random kind):

    * ``"rotation"``: uniform random proper rotations of ``pos`` and ``cell``;
    * ``"improper_rotation"``: the same times ``-1`` (``inversion=True``), so parity is tested;
    * ``"translation"``: a different random translation of each graph (``translation=True``);
    * ``"permutation"``: a random relabelling of the atoms inside each graph (``permutation=True``);
      node-level outputs must come back permuted the same way, not merely changed;
    * ``"edge_shuffle"``: a random reordering of the edges (``edge_shuffle=True``); nothing may
      change.

    The error of an output under one transformation is ``max|f(g.x) - g.f(x)|`` divided by
    ``max(max|g.f(x)|, atol / rtol)``; the check passes when it is ``<= rtol``, i.e. when
    ``max|diff| <= max(rtol * max|reference|, atol)``.

    The model is called with gradients enabled (models compute forces by autograd) on private
    copies of ``batch``; outputs are detached. Put the model in ``eval()`` mode first (dropout
    breaks every symmetry test).

    Args:
        model: callable ``model(batch) -> Mapping[str, Tensor]``.
        batch: a ``torch_geometric`` ``Data``/``Batch`` with the fields of :mod:`equivar.keys`.
        n_rotations: random group elements drawn per kind of transformation. Default 3.
        inversion: also test improper rotations (``det R = -1``). Default True.
        translation: test translations. Default True.
        permutation: test node permutations within graphs. Default True.
        edge_shuffle: test reordering the edges. Default True.
        keys: outputs to check (default: every tensor output).
        rtol: relative tolerance; default by the dtype of ``pos``: float64 ``1e-10``,
            float32 ``1e-5``.
        atol: absolute floor for outputs that are ~0; default float64 ``1e-12``,
            float32 ``1e-6``.
        seed: seed of the random group elements.

    Returns:
        ``{output: {transform: worst error}}`` for every checked output and transformation.

    Raises:
        SymmetryAssertionError: (an ``AssertionError``) listing every failing output with the
            transformation, the error and the tolerance.
        ValueError: an output has no usable spec or a wrong leading dimension.

    Shapes:
        outputs: graph-level ``[n_graphs, ...]``, node-level ``[n_nodes, ...]``; ``1o``/``1e``
        end in ``3``, ``3x3`` in ``3, 3``.

    Example:
        >>> import torch
        >>> from torch_geometric.data import Data
        >>> from equivar.testing import assert_equivariant
        >>> class Moments(torch.nn.Module):  # an invariant and a polar vector of the atoms
        ...     def forward(self, batch):
        ...         rel = batch.pos - batch.pos.mean(0)  # [n_nodes, 3]
        ...         spread = (rel**2).sum(-1, keepdim=True)  # [n_nodes, 1]
        ...         return {"energy": spread.sum().view(1), "dipole": (spread * rel).sum(0)[None]}
        >>> data = Data(pos=torch.randn(5, 3, dtype=torch.float64))
        >>> errors = assert_equivariant(Moments(), data)  # no edges: no edge shuffle
        >>> sorted(errors["dipole"])
        ['improper_rotation', 'permutation', 'rotation', 'translation']
    """
    dtype = batch[POSITIONS].dtype
    d_rtol, d_atol = (rtol, atol) if rtol is not None and atol is not None else (
        default_tolerances(dtype, EQUIVARIANCE_TOLERANCES, "assert_equivariant"))
    rtol = d_rtol if rtol is None else float(rtol)
    atol = d_atol if atol is None else float(atol)
    specs, worst = _measure(model, batch, n_rotations=n_rotations,
                            kinds=_kinds(inversion, translation, permutation, edge_shuffle),
                            keys=keys, floor=atol / rtol, seed=seed, what="assert_equivariant")
    errors = {key: {name: d.error for name, d in per.items()} for key, per in worst.items()}
    failures = [(key, name, err, rtol) for key, per in errors.items()
                for name, err in per.items() if not err <= rtol]
    if failures:
        lines = [f"assert_equivariant: {len({f[0] for f in failures})} output(s) are not "
                 f"equivariant (positions {dtype}, rtol={rtol:g}, atol={atol:g}):"]
        for key, name, err, tol in failures:
            _, max_diff, scale = worst[key][name]
            lines.append(f"  {key!r} ({specs[key].level}-level {specs[key].rep}) under {name}: "
                         f"error {err:.3g} > rtol {tol:.3g} "
                         f"(max|diff| {max_diff:.3g}, max|reference| {scale:.3g})")
        raise SymmetryAssertionError("\n".join(lines), errors, failures)
    return errors
