"""EMT metals: periodic Cu, Pt and CuAu boxes from ASE Langevin MD with energy, forces, stress.

The file ``datasets/emt_metals.npz`` is made by ``datasets/make_emt_metals.py`` (ASE's effective
medium theory calculator, ``ase.calculators.emt.EMT``; see ``datasets/README.md`` for the
protocol) and ships with the repository in equivar's npz layout: 32-atom fcc boxes, 324 frames,
energies in eV, forces in eV/Angstrom, stress in eV/Angstrom^3 (ASE's sign,
``dE/d(strain) / volume``, as a 3x3). Nothing is downloaded.

EMT is a cheap model potential, not DFT: the set exercises periodic graphs, stress training and
mixed species, and it can be relabelled on the fly (``ase.calculators.emt.EMT``) to check a
model or a pipeline exactly.

Provenance (the run table with temperatures and strains, versions) is JSON in the zip comment of
the file; :func:`read_metadata` returns it.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from equivar.data.dataset import AtomsDataset

__all__ = ["SYSTEMS", "default_path", "load_emt_metals", "read_metadata"]

#: the systems in the file, as stored in its ``system`` array
SYSTEMS = ("Cu", "Pt", "CuAu")


def default_path() -> Path:
    """``$EQUIVAR_EMT_METALS`` if set, else ``datasets/emt_metals.npz`` of the source tree this
    package was installed from (editable install)."""
    env = os.environ.get("EQUIVAR_EMT_METALS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[4] / "datasets" / "emt_metals.npz"


def read_metadata(path: str | os.PathLike | None = None) -> dict:
    """The provenance JSON in the zip comment of a dataset file (``{}`` if there is none).

    Args:
        path: the ``.npz`` file; default :func:`default_path`. Works for any file written by
            the ``datasets/make_*.py`` scripts that store a comment (``ethanol_dft.npz`` too).

    Returns:
        A dict, e.g. ``read_metadata()["runs"][0]["temperature_K"] == 300.0``.
    """
    p = Path(path) if path is not None else default_path()
    if not p.is_file():
        raise FileNotFoundError(f"path {str(p)!r} does not exist or is not a file")
    with zipfile.ZipFile(p) as archive:
        comment = archive.comment.decode()
    return json.loads(comment) if comment else {}


def load_emt_metals(
    cutoff: float = 5.0,
    *,
    systems: str | tuple[str, ...] | list[str] | None = None,
    path: str | os.PathLike | None = None,
    dtype: torch.dtype | None = None,
) -> AtomsDataset:
    """The EMT metal frames as periodic graphs with ``energy``, ``forces`` and ``stress``.

    Args:
        cutoff: neighbour cutoff in Angstrom (default 5: about 3 shells of fcc neighbours).
        systems: None (default: all), one of :data:`SYSTEMS` or a list of them.
        path: the file; default :func:`default_path`.
        dtype: floating dtype of the graphs; default ``torch.get_default_dtype()``.

    Returns:
        An :class:`~equivar.data.AtomsDataset` in file order (system, then run, then time).

    Shapes:
        per graph: ``pos [32, 3]``, ``forces [32, 3]``, ``energy [1]``, ``stress [1, 3, 3]``.

    Example:
        >>> ds = load_emt_metals(5.0, systems="Cu")  # doctest: +SKIP
        >>> len(ds), ds[0].stress.shape  # doctest: +SKIP
        (108, torch.Size([1, 3, 3]))
    """
    from equivar.data.io import read

    p = Path(path) if path is not None else default_path()
    if systems is None:
        return read(p, cutoff, dtype=dtype)
    wanted = (systems,) if isinstance(systems, str) else tuple(systems)
    unknown = [s for s in wanted if s not in SYSTEMS]
    if unknown:
        raise ValueError(f"unknown system(s) {unknown}; choose from {list(SYSTEMS)}")
    if not p.is_file():
        raise FileNotFoundError(f"path {str(p)!r} does not exist or is not a file")
    with np.load(p, allow_pickle=False) as f:
        names = f["system"]  # [n_frames]
    rows = np.flatnonzero(np.isin(names, wanted))
    dataset = read(p, cutoff, dtype=dtype)
    return dataset.subset(rows.tolist())
