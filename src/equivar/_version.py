"""The package version and the versions a saved file records (checkpoints, exports, shards)."""

from __future__ import annotations

import platform

__version__ = "0.1.0"


def versions() -> dict[str, str]:
    """``{"equivar", "torch", "e3nn", "python"}`` versions, as plain strings (``weights_only``
    loading refuses torch's ``TorchVersion``)."""
    import e3nn
    import torch

    return {"equivar": __version__, "torch": str(torch.__version__),
            "e3nn": str(e3nn.__version__), "python": platform.python_version()}  # fmt: skip
