"""Fine-tuning: start from a checkpoint's weights, freeze or re-initialise parts, add elements.

Config keys (see :class:`equivar.train.config.TrainConfig`):

``init_from: path/to/best.pt``
    The model is rebuilt from the *checkpoint's* options and weights, so training starts from
    exactly its predictions. ``model.options`` may only repeat the checkpoint's architecture
    (a different value is an error naming it); ``dtype`` (the run's precision), ``forces``,
    ``stress`` and ``backend`` may change, and ``species`` may add elements. ``data.cutoff``
    must equal the checkpoint's cutoff.

    Statistics: the checkpoint's are kept - per-element energy shifts, energy scale and the
    neighbour normalisation - because the weights were trained against them; the new data's
    statistics are used only for what is new: elements the checkpoint lacks get a shift fitted
    by least squares to the new energies minus the checkpoint's shifts (0 without energies),
    and ``reset: ["scale_shift.*"]`` replaces shifts and scale by the new data's fit.

``freeze: [glob, ...]``
    Parameters whose name matches (``fnmatch``: ``*`` also matches dots, so ``"backbone.*"``
    is the whole trunk) get ``requires_grad=False``, are left out of the optimiser and stay
    bit-identical, also in the EMA weights of ``best.pt``.

``reset: [glob, ...]``
    State entries (parameters and buffers) whose name matches are re-initialised as a freshly
    built model has them (seeded by ``seed``), e.g. ``"readout.*"`` for a new head.

New elements (the data or ``model.options.species`` has elements the checkpoint lacks) get new
rows in the species embedding (freshly initialised) and in the shifts; old rows are kept.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["finetune_model", "freeze_parameters", "matching"]

#: model options that may differ from the checkpoint's (no effect on the weights' meaning)
MAY_DIFFER = frozenset({"dtype", "forces", "stress", "backend", "species"})
_SHIFT, _SCALE = "scale_shift.shift", "scale_shift.scale"


def matching(names: Sequence[str], patterns: Sequence[str], what: str) -> list[str]:
    """Names matching any glob pattern; every pattern must match at least one name.

    Raises:
        ValueError: a pattern that matches nothing (named, with examples of valid names).
    """
    unmatched = [p for p in patterns if not any(fnmatchcase(n, p) for n in names)]
    if unmatched:
        shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
        raise ValueError(f"{what} pattern(s) {unmatched} match no name; names look like "
                         f"{shown} (glob patterns: '*' matches anything, dots included)")
    return [n for n in names if any(fnmatchcase(n, p) for p in patterns)]


def freeze_parameters(model: nn.Module, patterns: Sequence[str]) -> list[str]:
    """``requires_grad=False`` on the parameters matching ``patterns``; returns their names."""
    if not patterns:
        return []
    params = dict(model.named_parameters())
    frozen = matching(list(params), patterns, "freeze")
    for name in frozen:
        params[name].requires_grad_(False)
    return frozen


def _constructor_defaults(name: str) -> dict[str, Any]:
    """Default values of the options a checkpoint's config may leave out."""
    from equivar.models.backbone import EquivariantBackbone
    from equivar.models.potential import PotentialModel
    from equivar.models.property import PropertyModel

    classes = [EquivariantBackbone]
    classes.append({"potential": PotentialModel, "property": PropertyModel}.get(name, nn.Module))
    out = {}
    for cls in classes:
        for p in inspect.signature(cls.__init__).parameters.values():
            if p.default is not inspect.Parameter.empty:
                out[p.name] = p.default
    return out


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def option_mismatches(options: dict[str, Any], checkpoint: dict[str, Any]) -> list[str]:
    """The options of ``options`` (a config's ``model.options``) that differ from the
    checkpoint's config, as readable lines; a ``preset`` stands for its values."""
    from equivar.models.build import PRESETS

    name = checkpoint.get("name", "potential")
    requested: dict[str, Any] = {}
    if "preset" in options:
        if options["preset"] not in PRESETS:
            raise ValueError(f"unknown preset {options['preset']!r}; choose one of "
                             f"{sorted(PRESETS)}")
        requested.update(PRESETS[options["preset"]])
    requested.update({k: v for k, v in options.items() if k != "preset"})
    defaults = _constructor_defaults(name)
    lines = []
    for key, value in requested.items():
        if key in MAY_DIFFER:
            continue
        have = checkpoint.get(key, defaults.get(key, "<not set>"))
        if _plain(value) != _plain(have):
            origin = f" (preset {options['preset']!r})" if key not in options else ""
            lines.append(f"{key}: config {value!r}{origin}, checkpoint {have!r}")
    return lines


def _new_element_shifts(train: Iterable, old: dict[int, float], new: list[int]) -> dict[int, float]:
    """Least-squares shifts of the ``new`` elements on the energies minus the old shifts."""
    from equivar import keys as K

    rows, residuals = [], []
    for data in train:
        energy = getattr(data, K.ENERGY, None)
        if energy is None:
            return dict.fromkeys(new, 0.0)
        z = data[K.ATOMIC_NUMBERS].tolist()
        rows.append([z.count(e) for e in new])
        residuals.append(float(energy.reshape(-1)[0]) - sum(old.get(e, 0.0) for e in z))
    counts = np.asarray(rows, dtype=np.float64)  # [n_structures, n_new]
    if not counts.any():
        return dict.fromkeys(new, 0.0)
    fit = np.linalg.lstsq(counts, np.asarray(residuals), rcond=None)[0]
    return {e: float(v) for e, v in zip(new, fit, strict=True)}


def finetune_model(config, train, statistics, dtype: torch.dtype) -> tuple[nn.Module, str]:
    """The model a fine-tuning run starts from (see the module docstring), and a summary line.

    Args:
        config: the run's :class:`~equivar.train.config.TrainConfig` (``init_from`` set).
        train: the training set (for new elements' shifts).
        statistics: its :class:`~equivar.data.DatasetStatistics`.
        dtype: the run's dtype (the model is rebuilt in it).

    Raises:
        FileNotFoundError: no checkpoint at ``init_from``.
        ValueError: a different model name, options or cutoff than the checkpoint's, reset
            patterns that match nothing, a corrupt checkpoint.
    """
    from equivar.models import build
    from equivar.models.build import with_legacy_defaults
    from equivar.nn.embedding import resolve_species
    from equivar.train.checkpoint import read_checkpoint

    path = config.init_from
    saved = read_checkpoint(path)
    ck = dict(saved["config"])
    name = ck.pop("name")
    ck = with_legacy_defaults(name, ck)
    if name != config.model.name:
        raise ValueError(f"init_from {path!r} holds a {name!r} model but model.name is "
                         f"{config.model.name!r}")
    options = dict(config.model.options)
    mismatched = option_mismatches(options, {"name": name, **ck})
    if mismatched:
        raise ValueError(f"model.options differ from the checkpoint {path!r}, whose architecture "
                         "fine-tuning keeps (remove these options or match them; statistics are "
                         "refitted with reset: ['scale_shift.*']): " + "; ".join(mismatched))
    if float(config.data.cutoff) != float(ck["cutoff"]):
        raise ValueError(f"data.cutoff is {config.data.cutoff} but the checkpoint {path!r} was "
                         f"trained with cutoff {ck['cutoff']}; set data.cutoff: {ck['cutoff']}")
    old_species = [int(z) for z in ck["species"]]
    wanted = set(statistics.species) | set(resolve_species(options.get("species", old_species)))
    species = sorted(set(old_species) | wanted)
    new = [z for z in species if z not in old_species]
    rebuilt = {**ck, **{k: v for k, v in options.items() if k in MAY_DIFFER}}
    rebuilt.update(species=species,  # like fit(): model.options.dtype wins over the precision
                   dtype=options.get("dtype", str(dtype).removeprefix("torch.")))
    energy = _SHIFT in saved["state_dict"]
    old_shift: dict[int, float] = {}
    if energy:  # a fresh model carries the new data's statistics (used by reset and new rows)
        shift = saved["state_dict"][_SHIFT].tolist()
        old_shift = dict(zip(old_species, shift, strict=True))
        rebuilt["atomic_energies"] = {int(z): float(e) for z, e in
                                      statistics.atomic_energies.items()}
        scale = statistics.forces_rms or statistics.energy_residual_rms_per_atom
        if scale:
            rebuilt["energy_scale"] = float(scale)
    torch.manual_seed(config.seed)
    model = build(name, **rebuilt)
    state = model.state_dict()
    reset = matching(list(state), config.reset, "reset") if config.reset else []
    rows = [species.index(z) for z in old_species]
    for key, value in saved["state_dict"].items():
        if key in reset:
            continue
        if key not in state:
            raise ValueError(f"checkpoint {path!r} has {key!r}, which the rebuilt model lacks")
        target = state[key]
        if value.shape == target.shape:
            state[key] = value.to(target.dtype)
        elif new and value.shape[1:] == target.shape[1:] and value.shape[0] == len(old_species):
            grown = target.clone()  # one row per element: old rows kept, new rows fresh
            grown[rows] = value.to(target.dtype)
            state[key] = grown
        else:
            raise ValueError(f"checkpoint {path!r}: {key!r} has shape {list(value.shape)}, the "
                             f"rebuilt model {list(target.shape)}")
    if energy and new and _SHIFT not in reset:
        fitted = _new_element_shifts(train, old_shift, new)
        for z, e in fitted.items():
            state[_SHIFT][species.index(z)] = e
    model.load_state_dict(state)
    if energy:  # the stored options describe the buffers, so the checkpoint is self-consistent
        model.config["atomic_energies"] = dict(zip(species, state[_SHIFT].tolist(), strict=True))
        model.config["energy_scale"] = float(state[_SCALE])
    summary = f"fine-tuning from {Path(path)}"
    if new:
        summary += f"; new elements {new}"
    if reset:
        summary += f"; re-initialised {len(reset)} tensors ({', '.join(config.reset)})"
    return model, summary
