"""``assert_equivariant``: check a model's outputs transform as their FieldSpecs promise.

For a model ``f`` and a group element ``g`` (a rotation, an improper rotation, a translation, a
relabelling of the atoms or a reordering of the edges), equivariance means ``f(g.x) = g.f(x)``.
The check evaluates both sides for random group elements and reports the worst relative error
for every output and every kind of transformation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor

from equivar.keys import FIELDS, POSITIONS, FieldSpec
from equivar.testing.transforms import (
    _num_graphs,
    graph_index,
    permute_nodes,
    random_edge_permutation_within_graphs,
    random_permutation_within_graphs,
    random_rotation,
    rotate,
    shuffle_edges,
    transform_output,
    translate,
)

__all__ = ["assert_equivariant", "SymmetryAssertionError"]

#: Default (rtol, atol) by dtype. ``atol`` is in the output's own units and only matters for
#: outputs that are ~0 (forces at equilibrium, the dipole of a symmetric molecule).
EQUIVARIANCE_TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-10, 1e-12),
    torch.float32: (1e-5, 1e-6),
    torch.float16: (1e-2, 1e-3),
    torch.bfloat16: (5e-2, 1e-2),
}

TRANSFORMS = ("rotation", "improper_rotation", "translation", "permutation", "edge_shuffle")
#: Random group elements drawn per kind of transformation by default.
DEFAULT_N_ROTATIONS = 3


class SymmetryAssertionError(AssertionError):
    """An ``AssertionError`` that also carries the measured errors.

    Attributes:
        errors: every measured error, as returned on success.
        failures: ``(output_or_check, transform_or_None, error, tolerance)`` for each failure.
    """

    def __init__(self, message: str, errors: dict, failures: list[tuple]) -> None:
        super().__init__(message)
        self.errors = errors
        self.failures = failures


# --- helpers shared with conservative.py ----------------------------------------------------------
def _default_tolerances(
    dtype: torch.dtype, table: Mapping[torch.dtype, tuple[float, float]], what: str
) -> tuple[float, float]:
    if dtype not in table:
        raise TypeError(f"{what}: positions of dtype {dtype} are not supported here "
                        f"(defaults exist for {', '.join(sorted(map(str, table)))})")
    return table[dtype]


def _detached(batch):
    """A clone whose tensors are fresh leaves (no autograd history, ``requires_grad=False``)."""
    return batch.clone().apply(lambda t: t.detach())


def _evaluate(model, batch) -> dict[str, Tensor]:
    """Call the model on a private copy of ``batch`` and return its detached tensor outputs.

    Gradients stay enabled: models compute forces with ``torch.autograd.grad`` inside ``forward``.
    """
    with torch.enable_grad():
        out = model(_detached(batch))
    if not isinstance(out, Mapping):
        raise TypeError(f"model(batch) must return a Mapping[str, Tensor], got {type(out)}")
    return {k: v.detach() for k, v in out.items() if isinstance(v, Tensor)}


def _relative_error(actual: Tensor, expected: Tensor, rtol: float, atol: float) -> tuple:
    """``max|actual - expected| / max(max|expected|, atol / rtol)``: passes iff ``<= rtol``.

    Equivalently ``max|diff| <= max(rtol * max|expected|, atol)``. Computed in float64; entries
    that are equal (including matching infinities) or both NaN count as equal.
    """
    a = actual.detach().to(torch.float64)
    e = expected.detach().to(torch.float64)
    same = (a == e) | (torch.isnan(a) & torch.isnan(e))
    diff = torch.where(same, torch.zeros_like(a), a - e).abs()
    max_diff = diff.max().item() if diff.numel() else 0.0
    finite = e[torch.isfinite(e)]
    scale = finite.abs().max().item() if finite.numel() else 0.0
    err = max_diff / max(scale, atol / rtol, torch.finfo(torch.float64).tiny)
    return err, max_diff, scale


def _resolve_specs(model, outputs: Mapping[str, Tensor], keys, n_graphs: int, n_nodes: int):
    own = getattr(model, "output_specs", None) or {}
    keys = list(outputs) if keys is None else list(keys)
    specs: dict[str, FieldSpec] = {}
    for key in keys:
        if key not in outputs:
            raise ValueError(f"assert_equivariant: output {key!r} requested in keys but the model "
                             f"returned only {sorted(outputs)}")
        value = outputs[key]
        spec = own.get(key, FIELDS.get(key))
        if spec is None:
            if value.dim() >= 1 and value.shape[0] == n_graphs:
                spec = FieldSpec("graph", "0e")  # unknown graph-level output: invariant scalars
            else:
                raise ValueError(
                    f"assert_equivariant: output {key!r} with shape {list(value.shape)} has no "
                    f"FieldSpec; declare it in model.output_specs (e.g. "
                    f"{{{key!r}: FieldSpec('node', '1o')}}) or leave it out with keys=[...]")
        expected_len = n_graphs if spec.level == "graph" else n_nodes
        if value.dim() < 1 or value.shape[0] != expected_len:
            raise ValueError(f"assert_equivariant: output {key!r} is {spec.level}-level, so its "
                             f"leading dimension must be {expected_len}; got {list(value.shape)}")
        specs[key] = spec
    return specs


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
    pos = batch[POSITIONS]
    dtype = pos.dtype
    d_rtol, d_atol = (rtol, atol) if rtol is not None and atol is not None else (
        _default_tolerances(dtype, EQUIVARIANCE_TOLERANCES, "assert_equivariant"))
    rtol = d_rtol if rtol is None else float(rtol)
    atol = d_atol if atol is None else float(atol)
    generator = torch.Generator().manual_seed(seed)

    base = _detached(batch)
    n_graphs, n_nodes = _num_graphs(base), base.num_nodes
    graph = graph_index(base)
    reference = _evaluate(model, base)
    specs = _resolve_specs(model, reference, keys, n_graphs, n_nodes)

    # (name, transformed batch, kwargs of transform_output mapping reference -> expected)
    def draws():
        for _ in range(n_rotations):
            R = random_rotation(dtype, generator, device=pos.device)
            yield "rotation", rotate(base, R), {"R": R}
        if inversion:
            for _ in range(n_rotations):
                R = random_rotation(dtype, generator, inversion=True, device=pos.device)
                yield "improper_rotation", rotate(base, R), {"R": R}
        if translation:
            extent = max(1.0, pos.detach().abs().max().item()) if pos.numel() else 1.0
            for _ in range(n_rotations):
                t = (torch.randn(n_graphs, 3, dtype=torch.float64, generator=generator) * extent)
                t = t.to(dtype=dtype, device=pos.device)
                yield "translation", translate(base, t), {"t": t}
        if permutation and n_nodes > n_graphs:  # some graph has >= 2 nodes
            for _ in range(n_rotations):
                perm = random_permutation_within_graphs(base, generator)
                yield "permutation", permute_nodes(base, perm), {"perm": perm}
        if edge_shuffle and "edge_index" in base and base.edge_index.shape[1] > 1:
            for _ in range(n_rotations):
                perm = random_edge_permutation_within_graphs(base, generator)
                yield "edge_shuffle", shuffle_edges(base, perm), {}

    errors: dict[str, dict[str, float]] = {key: {} for key in specs}
    details: dict[tuple[str, str], tuple[float, float, float]] = {}
    for name, moved, action in draws():
        out = _evaluate(model, moved)
        for key, spec in specs.items():
            if key not in out:
                raise ValueError(f"assert_equivariant: output {key!r} disappeared under {name}")
            kwargs = dict(action)
            if "t" in kwargs and spec.translates:
                t = kwargs["t"][graph] if spec.level == "node" else kwargs["t"]  # [n, 3]
                kwargs["t"] = t.view(t.shape[0], *([1] * (reference[key].dim() - 2)), 3)
            expected = transform_output(reference[key], spec, **kwargs)
            if out[key].shape != expected.shape:
                raise ValueError(f"assert_equivariant: output {key!r} changed shape under {name}: "
                                 f"{list(expected.shape)} -> {list(out[key].shape)}")
            err, max_diff, scale = _relative_error(out[key], expected, rtol, atol)
            prev = errors[key].get(name)
            if prev is None or not err <= prev:  # keeps NaN
                errors[key][name] = err
                details[key, name] = (err, max_diff, scale)

    failures = [(key, name, err, rtol) for key, per in errors.items()
                for name, err in per.items() if not err <= rtol]
    if failures:
        lines = [f"assert_equivariant: {len({f[0] for f in failures})} output(s) are not "
                 f"equivariant (positions {dtype}, rtol={rtol:g}, atol={atol:g}):"]
        for key, name, err, tol in failures:
            _, max_diff, scale = details[key, name]
            lines.append(f"  {key!r} ({specs[key].level}-level {specs[key].rep}) under {name}: "
                         f"error {err:.3g} > rtol {tol:.3g} "
                         f"(max|diff| {max_diff:.3g}, max|reference| {scale:.3g})")
        raise SymmetryAssertionError("\n".join(lines), errors, failures)
    return errors
