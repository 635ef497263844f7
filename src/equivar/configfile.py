"""YAML as configs read it: ``yaml.safe_load`` (no tags that build Python objects), with every
parse error turned into a ``ValueError`` naming the file, the line and the column.

The one place the package parses YAML (training and VMC configs, ``key=value`` overrides); it
imports nothing from equivar, so any layer may use it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

__all__ = ["load_yaml_file", "parse_yaml"]


def parse_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load(text)``; a malformed document raises ``ValueError`` naming ``where``.

    Args:
        text: the YAML document.
        where: what it is, for the message (a file name, ``"override 'epochs=...'"``).

    Example:
        >>> parse_yaml("epochs: 5", "config.yaml")
        {'epochs': 5}
    """
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        context = getattr(err, "context", None)
        detail = f"{context}: {problem}" if context else problem
        raise ValueError(f"{where}{at}: not valid YAML ({detail})") from None


def load_yaml_file(path: str | os.PathLike) -> Any:
    """The YAML document in ``path`` (UTF-8), parsed by :func:`parse_yaml`.

    Raises:
        FileNotFoundError: ``path`` is not a file. ValueError: it is not valid YAML or UTF-8.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {str(p)!r} does not exist or is not a file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"config file {str(p)!r} is not UTF-8 text ({err.reason} at byte "
                         f"{err.start})") from None
    return parse_yaml(text, f"config file {str(p)!r}")
