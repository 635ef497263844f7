""""Did you mean ...?" for misspelt names: the one helper every error message that names an
unknown key, option or label uses (STYLE 15: one did-you-mean, imported from below)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["did_you_mean"]


def did_you_mean(name: str, options: Iterable[str], *, n: int = 1) -> str:
    """The phrase ``"did you mean 'x'?"`` (or ``"'x' or 'y'"`` for ``n=2``) naming the options
    closest to ``name`` (``difflib``'s ratio >= 0.6), or ``""`` when none is close.

    Args:
        name: the name that was not found.
        options: the valid names.
        n: how many suggestions at most. Default 1.

    Returns:
        The phrase without leading punctuation, so that each message places it as it reads best.

    Example:
        >>> did_you_mean("REF_Energy", ["REF_energy", "REF_forces"])
        "did you mean 'REF_energy'?"
        >>> did_you_mean("xyz", ["energy"])
        ''
    """
    close = difflib.get_close_matches(str(name), [str(o) for o in options], n=n)
    return f"did you mean {' or '.join(map(repr, close))}?" if close else ""
