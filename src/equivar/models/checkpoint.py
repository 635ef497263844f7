"""Checkpoints are data: ``{state_dict, config, versions}`` (+ the training state for resume),
written atomically and loaded with ``torch.load(weights_only=True)``, never a pickled module.

The format belongs to the models it rebuilds: training writes checkpoints, simulation and VMC
read them, and neither task may import the other, so the reader and writer live here
(:mod:`equivar.train.checkpoint` re-exports them).
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from equivar._version import versions
from equivar.atomic import atomic_save

__all__ = ["checkpoint_label_keys", "load_checkpoint", "model_from_checkpoint_data",
           "read_checkpoint", "save_checkpoint"]  # fmt: skip

def save_checkpoint(path: str | os.PathLike, model: nn.Module, **extra: Any) -> None:
    """Write ``{state_dict, config, versions, **extra}`` to ``path`` atomically.

    The file is written next to ``path`` under a temporary name, flushed to disk and renamed
    over ``path``: a process killed at any moment leaves either the old or the new file, never a
    truncated one.

    Args:
        path: destination.
        model: a model built by ``equivar.models.build`` (it carries ``model.config``).
        **extra: more plain data (tensors, numbers, strings, lists, dicts), e.g. the training
            state for ``--resume``.
    """
    config = getattr(model, "config", None)
    if not config or "name" not in config:
        raise ValueError("the model has no .config with a 'name': build it with "
                         "equivar.models.build so that a checkpoint can rebuild it")
    payload = {"state_dict": model.state_dict(), "config": config, "versions": versions(), **extra}
    atomic_save(payload, path)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The raw checkpoint mapping, with clear errors for missing, truncated or unsafe files.

    Raises:
        FileNotFoundError: no such file.
        ValueError: truncated/corrupt file, a file that needs unpickling arbitrary objects
            (refused), or one without ``state_dict`` and ``config``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if _is_torchscript(path):  # before torch.load, which warns and then refuses it
        raise ValueError(f"checkpoint {str(path)!r} is a TorchScript archive: it holds code, "
                         "which is unsafe to load; equivar checkpoints hold only tensors and "
                         "plain data")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        from equivar.models.audit import describe_refusal, unpickling_detail

        detail = unpickling_detail(err)
        why = describe_refusal(path.read_bytes(), detail)
        if why is None:  # not a refused object: bytes that are no complete pickle
            raise ValueError(f"checkpoint {str(path)!r} is truncated or corrupt, or not a "
                             f"PyTorch file (UnpicklingError: {detail or 'no details'})") from None
        raise ValueError(
            f"checkpoint {str(path)!r} is unsafe to unpickle: it is {why} (weights_only=True "
            "refused it, so nothing in it ran); equivar checkpoints hold only tensors and plain "
            "data: save {'state_dict', 'config', 'versions'} instead of a pickled model"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        raise ValueError(
            f"checkpoint {str(path)!r} is truncated or corrupt ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'no details'})"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"checkpoint {str(path)!r} holds a {type(data).__name__}, not an "
                         "equivar checkpoint (a dict with 'state_dict' and 'config')")
    missing = [k for k in ("state_dict", "config") if k not in data]
    if missing:
        raise ValueError(f"checkpoint {str(path)!r} is not an equivar checkpoint: it is missing "
                         f"{missing}; found keys {sorted(map(str, data))}")
    return data


def _is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a TorchScript zip (torch's test: a ``constants.pkl`` record)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.split("/", 1)[-1] == "constants.pkl" for name in archive.namelist())
    except (zipfile.BadZipFile, OSError, EOFError):
        return False


def checkpoint_label_keys(checkpoint: str | os.PathLike | dict[str, Any]) -> dict[str, str]:
    """The label keys the run that wrote ``checkpoint`` read its data with, as the keyword
    arguments of :func:`equivar.data.read`, so that new files are read the same way.

    Checkpoints written before ``data.energy_key`` & co. existed, and checkpoints not written
    by ``fit``, give the defaults (``energy``, ``forces``, ``stress``, ``virial``).

    Args:
        checkpoint: a checkpoint's path (``best.pt``, ``checkpoint_last.pt``) or its data (from
            :func:`read_checkpoint`).

    Returns:
        ``{"energy_key": ..., "forces_key": ..., "stress_key": ..., "virial_key": ...}``.

    Example:
        >>> from equivar.data import read
        >>> model = load_checkpoint("runs/mace_data/best.pt")  # doctest: +SKIP
        >>> data = read("test.xyz", model.cutoff,
        ...             **checkpoint_label_keys("runs/mace_data/best.pt"))  # doctest: +SKIP
    """
    from equivar.data.labels import LabelKeys

    data = checkpoint if isinstance(checkpoint, dict) else read_checkpoint(checkpoint)
    run = data.get("train_config")
    if run is None:  # checkpoint_last.pt keeps it with the training state
        run = (data.get("train_state") or {}).get("train_config")
    recorded = (run or {}).get("data") or {}
    # the training config's defaults (``DataConfig``) are LabelKeys' defaults
    keys = {name: recorded.get(name, default) for name, default in LabelKeys().as_dict().items()}
    for name, key in keys.items():
        if not isinstance(key, str) or not key:
            where = "its data" if isinstance(checkpoint, dict) else repr(str(checkpoint))
            raise ValueError(f"checkpoint {where} records data.{name}={key!r}, not a key")
    return keys


def model_from_checkpoint_data(
    data: dict[str, Any], dtype: torch.dtype | None = None
) -> nn.Module:
    """Rebuild a model through its builder and load its weights (strict).

    ``dtype`` rebuilds it in another precision (built, not cast, so coefficients stay exact).
    """
    from equivar.models.build import build, with_legacy_defaults

    options = dict(data["config"])
    name = options.pop("name")
    options = with_legacy_defaults(name, options)
    if dtype is not None:
        options["dtype"] = str(dtype).removeprefix("torch.")
    model = build(name, **options)
    # a diverged run's weights evaluate to NaN everywhere: refuse them here, not as NaN metrics
    bad = [k for k, v in data["state_dict"].items()
           if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"{len(bad)} weight tensor(s) hold NaN or inf (first: {bad[0]!r}): the "
                         "run that wrote it diverged; use an earlier checkpoint")
    try:
        model.load_state_dict(data["state_dict"], strict=True)
    except RuntimeError as err:
        raise ValueError(f"the state_dict does not fit its config: {err}") from None
    return model


def load_checkpoint(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> nn.Module:
    """Rebuild the model saved in ``path`` (eval mode, on ``device``, optionally in ``dtype``).

    Example:
        >>> model = load_checkpoint("runs/ethanol/best.pt")  # doctest: +SKIP
    """
    data = read_checkpoint(path)
    try:
        model = model_from_checkpoint_data(data, dtype)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"checkpoint {str(path)!r} does not rebuild: {err}") from None
    return model.to(device).eval()
