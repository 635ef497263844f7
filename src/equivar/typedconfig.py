"""Typed configs from plain data: the one loader behind ``equivar.train.TrainConfig`` and
``equivar.qmc.VMCConfig`` (unknown keys named with the closest valid one, numbers checked)."""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

from equivar._suggest import did_you_mean

__all__ = ["coerce", "dataclass_from_dict"]


def dataclass_from_dict(cls, values: dict[str, Any], where: str = ""):
    """An instance of the dataclass ``cls`` from plain data (e.g. ``yaml.safe_load``): nested
    dataclass fields from nested mappings, numbers checked and coerced (``"1e-3"`` -> 0.001;
    NaN/inf refused), booleans, strings, mappings and lists of strings checked.

    Args:
        cls: the dataclass.
        values: its fields by name.
        where: the dotted prefix of this section in messages (``"optim."``; ``""``: top).

    Raises:
        ValueError: an unknown key (naming the closest valid one), or a value of the wrong
            kind, each named with its dotted key.
    """
    if not isinstance(values, dict):
        raise ValueError(f"config section {where or 'top level'!r} must be a mapping, got "
                         f"{type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            hint = did_you_mean(str(key), fields)
            hint = f"; {hint}" if hint else ""
            raise ValueError(
                f"unknown config key {where + str(key)!r}{hint} (valid: {sorted(fields)})"
            )
        hint = typing.get_type_hints(cls)[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = dataclass_from_dict(hint, value or {}, f"{where}{key}.")
        else:
            kwargs[key] = coerce(value, hint, f"{where}{key}")
    return cls(**kwargs)


def coerce(value: Any, hint: Any, name: str) -> Any:
    """Check a value against its field's type; numbers written as strings ('1e-3', which YAML
    1.1 reads as text) become numbers."""
    try:
        if hint is float and not isinstance(value, bool):
            number = float(value)
            if not math.isfinite(number):  # .nan / .inf in YAML: never a meaningful setting
                raise ValueError(f"config key {name!r} must be a finite number, got {value!r}")
            return number
        if hint is int and not isinstance(value, bool):
            if float(value) != int(float(value)):
                raise ValueError(f"config key {name!r} must be a whole number, got {value!r}")
            return int(float(value))
    except OverflowError:  # int(inf)
        raise ValueError(f"config key {name!r} must be a finite whole number, got "
                         f"{value!r}") from None
    except ValueError as err:
        if str(err).startswith("config key"):
            raise
        raise ValueError(f"config key {name!r} must be a number, got {value!r}") from None
    except TypeError:
        raise ValueError(f"config key {name!r} must be a number, got {value!r}") from None
    if hint is bool and not isinstance(value, bool):
        raise ValueError(f"config key {name!r} must be true or false, got {value!r}")
    if hint is str and not isinstance(value, str):
        raise ValueError(f"config key {name!r} must be a string, got {value!r}")
    if typing.get_origin(hint) is dict and not isinstance(value, dict):
        raise ValueError(f"config key {name!r} must be a mapping, got {value!r}")
    if typing.get_origin(hint) is list:
        if isinstance(value, str):  # one pattern written without brackets
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"config key {name!r} must be a list of strings, got {value!r}")
        return list(value)
    return value
