"""``build(name, **options)``: every model from keyword options and a size preset."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from equivar._suggest import did_you_mean
from equivar.dtypes import default_dtype, resolve_dtype
from equivar.models.potential import PotentialModel
from equivar.models.property import PropertyModel
from equivar.nn.embedding import resolve_species

#: size presets: channels per irrep, feature and harmonic degrees, depth, radial MLP widths
#: and the order of the many-body product basis in each block (3: four-body terms per layer;
#: it lowered the MD17 ethanol force error from 16.2 to 12.8 meV/A at an equal CPU budget,
#: benchmarks/RESULTS.md)
PRESETS: dict[str, dict[str, Any]] = {
    "S": dict(num_channels=32, lmax=1, sh_lmax=2, num_layers=2, radial_hidden=(32,),
              correlation=3),
    "M": dict(num_channels=64, lmax=2, sh_lmax=3, num_layers=3, radial_hidden=(64, 64),
              correlation=3),
    "L": dict(num_channels=128, lmax=2, sh_lmax=3, num_layers=4, radial_hidden=(64, 64),
              correlation=3),
}

#: options added after the first release, with the value that reproduces a model saved before
#: them (a saved config lacks the key; the preset's newer default must not apply to it)
LEGACY_DEFAULTS: dict[str, dict[str, Any]] = {
    "potential": {"correlation": 1},
    "property": {"correlation": 1},
}


def with_legacy_defaults(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """A saved model's resolved options completed with :data:`LEGACY_DEFAULTS` (for rebuilding
    checkpoints written before an option existed)."""
    return {**LEGACY_DEFAULTS.get(name, {}), **options}

#: H..Rn: organic chemistry and the common metals out of the box
DEFAULT_SPECIES = tuple(range(1, 87))


def _statistics_options(statistics, energy: bool) -> dict[str, Any]:
    """Model options derived from an ``equivar.data.DatasetStatistics`` (or its dict): species and
    neighbour count always, per-element energy shifts and scale only for energy models."""
    stats = statistics.to_dict() if hasattr(statistics, "to_dict") else dict(statistics)
    out: dict[str, Any] = {}
    if stats.get("species"):
        out["species"] = list(stats["species"])
    if stats.get("mean_num_neighbors"):
        out["avg_num_neighbors"] = float(stats["mean_num_neighbors"])
    if not energy:
        return out
    if stats.get("atomic_energies"):
        out["atomic_energies"] = {int(k): float(v) for k, v in stats["atomic_energies"].items()}
    scale = stats.get("forces_rms") or stats.get("energy_residual_rms_per_atom")
    if scale:
        out["energy_scale"] = float(scale)
    return out


def check_options(options: Mapping[str, Any], allowed: Sequence[str], model: str) -> None:
    """Raise ``ValueError`` naming unknown options and the closest valid one of each."""
    unknown = [k for k in options if k not in allowed]
    if unknown:
        hints = []
        for k in unknown:
            hint = did_you_mean(k, allowed)
            hints.append(f"{k!r}" + (f" ({hint})" if hint else ""))
        raise ValueError(f"unknown option(s) {', '.join(hints)} for build({model!r}); "
                         f"valid: {sorted(allowed)}")


def _build_trunk_options(
    options: dict[str, Any], allowed: Sequence[str], model: str, energy: bool = False
) -> dict[str, Any]:
    check_options(options, allowed, model)
    preset = options.pop("preset", "M")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    statistics = options.pop("statistics", None)
    resolved = {**PRESETS[preset]}
    if statistics is not None:
        resolved.update(_statistics_options(statistics, energy))
    resolved.update(options)  # explicit options win over preset and statistics
    resolved["species"] = resolve_species(resolved.get("species", DEFAULT_SPECIES))
    resolved["radial_hidden"] = tuple(resolved["radial_hidden"])
    return resolved


_COMMON = (
    "preset", "statistics", "species", "cutoff", "num_channels", "lmax", "sh_lmax", "num_layers",
    "num_basis", "radial_basis", "radial_hidden", "avg_num_neighbors", "graph_inputs", "norm",
    "readout_hidden", "backend", "dtype", "correlation",
)  # fmt: skip

def _resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    return resolve_dtype(dtype, none=torch.get_default_dtype())


def construct(cls: type[nn.Module], opts: dict[str, Any], name: str) -> nn.Module:
    """``cls(**opts, config=...)`` built in float64 and cast to ``opts["dtype"]`` (see
    :func:`_float64_construction`), with ``config`` the plain-data options that rebuild it
    (``build(config["name"], **rest)``): how every builder ends.

    Args:
        cls: the model class; it takes the resolved options and ``config`` as keywords.
        opts: resolved options (``dtype`` is taken out of them; default: torch's default).
        name: the model's name in :data:`BUILDERS`, stored as ``config["name"]``.
    """
    dtype = _resolve_dtype(opts.pop("dtype", None))
    config = _to_config({"name": name, **opts, "dtype": str(dtype).removeprefix("torch.")})
    with default_dtype(torch.float64):
        model = cls(**opts, config=config)
    return model.to(dtype)


def build_potential(**options: Any) -> PotentialModel:
    """Interatomic potential (energy, forces, stress); see :func:`build` for the options.

    Extra options: ``atomic_energies`` (``{Z: eV}`` or one number), ``energy_scale`` (eV),
    ``zbl`` (add ZBL repulsion, default False), ``forces`` (default True), ``stress`` (None =
    when any graph is periodic; True/False to fix it, e.g. under ``torch.compile``),
    ``layer_readouts`` (add a linear energy readout of every block but the last, default False).
    """
    allowed = (*_COMMON, "atomic_energies", "energy_scale", "zbl", "forces", "stress",
               "layer_readouts")  # fmt: skip
    opts = _build_trunk_options({"cutoff": 5.0, **options}, allowed, "potential", energy=True)
    return construct(PotentialModel, opts, "potential")


def build_property(**options: Any) -> PropertyModel:
    """Property model; see :func:`build`. Needs ``targets={name: kind}``.

    Extra options: ``targets`` (kinds ``"sum"``, ``"mean"``, ``"node"``, ``"vector"``,
    ``"dipole"``, ``"tensor"``), ``target_shifts`` (``{name: {Z: value} or value}``) and
    ``target_scales`` (``{name: value}``).
    """
    allowed = (*_COMMON, "targets", "target_shifts", "target_scales")
    if "targets" not in options:
        raise ValueError("build('property') needs targets={name: kind}, e.g. {'U0': 'sum'}")
    opts = _build_trunk_options({"cutoff": 5.0, **options}, allowed, "property")
    return construct(PropertyModel, opts, "property")


def _to_config(options: Mapping[str, Any]) -> dict[str, Any]:
    """Plain-data copy of the resolved options (tuples -> lists, int keys kept)."""

    def plain(v):
        if isinstance(v, Mapping):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        return v

    return {k: plain(v) for k, v in options.items()}


#: model name -> its builder function, or ``"module:function"`` imported on first use
BUILDERS: dict[str, Callable[..., nn.Module] | str] = {
    "potential": build_potential,
    "property": build_property,
    # other models register here as "module:function", imported on first use
    "wavefunction": "equivar.models.wavefunction:build_wavefunction",
    "nbody": "equivar.models.nbody:build_nbody",
    "emlp": "equivar.models.emlp:build_emlp",
}


def _builder(name: str) -> Callable[..., nn.Module]:
    target = BUILDERS[name]
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        target = getattr(importlib.import_module(module), attr)
    return target


def build(name: str, **options: Any) -> nn.Module:
    """Build a model by name from keyword options.

    Names: ``"potential"`` (energy/forces/stress), ``"property"`` (molecular properties),
    ``"nbody"`` (N-body dynamics), ``"wavefunction"`` (neural wavefunction) and ``"emlp"``
    (equivariant MLP for any matrix group); see ``BUILDERS``.
    Options are keyword-only; explicit options override the preset. The common ones of
    ``"potential"`` and ``"property"`` are listed below.

    Args:
        name: the model, a key of ``BUILDERS``.
        **options: the model's options.

    Keyword Args:
        preset: ``"S"``, ``"M"`` (default) or ``"L"`` (see ``PRESETS``).
        statistics: an ``equivar.data.DatasetStatistics``; sets species, ``avg_num_neighbors``,
            per-element energy shifts and the energy scale.
        species: atomic numbers or symbols (default H..Rn).
        cutoff: radial cutoff in Angstrom (default 5.0).
        num_channels, lmax, sh_lmax, num_layers: trunk size (from the preset).
        num_basis, radial_basis, radial_hidden: radial basis size (default 8), its kind
            (``"bessel"``, the default, or ``"gaussian"``) and the radial MLP widths (preset).
        avg_num_neighbors: neighbour-sum normalisation (default 12, or from statistics).
        graph_inputs: embed total charge and spin multiplicity (default True).
        norm: equivariant RMS norm between blocks (default False).
        correlation: order of each block's many-body product basis (default 1: pairwise
            messages only; 3 gives MACE-like 4-body features per layer).
        backend: convolution implementation, see :mod:`equivar.kernels` (default ``"auto"``:
            the fused Triton kernel on CUDA, the fused C kernel ``"fused_cpu"`` on a CPU (with a
            warning and ``"dense"`` where no C compiler builds it), ``"dense"`` stacked
            contractions on other devices and under ``torch.export``).
        dtype: ``"float32"``/``"float64"`` or a torch dtype (default: torch's default). The model
            is always constructed in float64 and cast, so prefer ``dtype="float64"`` over
            ``model.double()`` (which cannot restore coefficients rounded to float32).

    Example:
        >>> from equivar.models import build
        >>> model = build("potential", preset="S", species=["H", "C", "O"], cutoff=4.0)
        >>> model.config["num_channels"]
        32

    Raises:
        ValueError: unknown model name or option (with the closest valid one), bad values.
    """
    if name not in BUILDERS:
        hint = did_you_mean(name, BUILDERS)
        hint = f" ({hint})" if hint else ""
        raise ValueError(f"unknown model {name!r}{hint}; available: {sorted(BUILDERS)}")
    return _builder(name)(**options)
