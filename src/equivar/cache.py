"""Where equivar keeps files it can rebuild: compiled kernels, converted and generated datasets.

One root for every cache, read from the environment at each call (so a test or a user can move
it at any time): ``$EQUIVAR_CACHE``, else ``$XDG_CACHE_HOME/equivar``, else
``~/.cache/equivar``. ``$EQUIVAR_CACHE_DIR``, an older name that only the N-body data read, still
works when ``$EQUIVAR_CACHE`` is unset, with a :class:`DeprecationWarning`.

This is a low layer: it imports nothing from equivar, so kernels and datasets can both use it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

__all__ = ["ENV", "cache_dir"]

#: The environment variable that moves every cache.
ENV = "EQUIVAR_CACHE"
#: Its deprecated older name (once read by the N-body datasets only).
_DEPRECATED_ENV = "EQUIVAR_CACHE_DIR"


def cache_dir(*parts: str | os.PathLike) -> Path:
    """The cache root joined with ``parts`` (nothing is created: callers ``mkdir`` what they
    write).

    Args:
        *parts: sub-folders or a file name under the root, e.g. ``"nbody"`` or
            ``"qm9_v1.npz"``.

    Returns:
        ``$EQUIVAR_CACHE/<parts>``, else ``$XDG_CACHE_HOME/equivar/<parts>``, else
        ``~/.cache/equivar/<parts>``. Empty variables count as unset.

    Warns:
        DeprecationWarning: ``$EQUIVAR_CACHE_DIR`` is set (it is used only when
            ``$EQUIVAR_CACHE`` is not).

    Example:
        >>> from equivar.cache import cache_dir
        >>> cache_dir("nbody").name  # e.g. /home/me/.cache/equivar/nbody
        'nbody'
    """
    root = os.environ.get(ENV)
    old = os.environ.get(_DEPRECATED_ENV)
    if old:
        what = (f"it is ignored because {ENV} is set" if root else
                f"using it for now; set {ENV}={old} instead")
        warnings.warn(f"{_DEPRECATED_ENV} is deprecated: {ENV} now moves every equivar cache "
                      f"({what})", DeprecationWarning, stacklevel=2)
        root = root or old
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = Path(xdg) / "equivar" if xdg else Path.home() / ".cache" / "equivar"
    return Path(root).joinpath(*parts)
