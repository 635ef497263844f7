"""The HDF5 shard format: its layout, its constants and the manifest check.

A shard directory holds ``manifest.json`` and ``shard-00000.h5``, ``shard-00001.h5``, ... of at
most ``shard_size`` structures each. Ragged per-atom arrays are stored concatenated, with offsets::

    shard-KKKKK.h5   attrs: format="equivar-shard", version=1, n_structures, n_atoms
        atom_offsets   [n_structures + 1] int64   atoms of structure s: offsets[s]:offsets[s+1]
        node/<name>    [n_atoms, ...]             pos, z, forces, charges, other per-atom fields
        graph/<name>   [n_structures, ...]        cell [.., 1, 3, 3], pbc [.., 1, 3],
                                                  total_charge, spin, energy [.., 1], stress, ...

The manifest records counts, fields (level, dtype, trailing shape), units, the file size of each
shard and the format version. :mod:`equivar.data.shard_writer` writes this layout and
:mod:`equivar.data.shard_reader` reads it; both take the constants from here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from equivar import keys as K

__all__ = ["FORMAT", "MANIFEST", "UNITS", "VERSION", "import_h5py", "is_shard_path",
           "load_manifest", "shard_name"]  # fmt: skip

#: ``format`` of a manifest, its ``version`` (also each shard's), and the manifest's file name.
FORMAT, VERSION, MANIFEST = "equivar-shards", 1, "manifest.json"
#: Units of the known fields (equivar's ASE convention, see :mod:`equivar.keys`); values are
#: stored as read, without conversion.
UNITS = {
    K.POSITIONS: "Angstrom", K.CELL: "Angstrom", K.ATOMIC_NUMBERS: "1", K.PBC: "1",
    K.TOTAL_CHARGE: "e", K.SPIN: "1 (multiplicity 2S+1)", K.ENERGY: "eV", K.NODE_ENERGY: "eV",
    K.FORCES: "eV/Angstrom", K.STRESS: "eV/Angstrom^3", K.VIRIAL: "eV", K.DIPOLE: "e*Angstrom",
    K.POLARIZABILITY: "Angstrom^3", K.CHARGES: "e",
}  # fmt: skip


def import_h5py():
    """The ``h5py`` module, or an ImportError that says how to install it."""
    try:
        import h5py
    except ImportError as err:  # pragma: no cover - h5py is a dependency
        raise ImportError("HDF5 shards need h5py: pip install h5py") from err
    return h5py


def is_shard_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` names shards: a directory with a manifest or ``shard-*.h5`` files, a
    ``.json`` manifest, or an ``.h5``/``.hdf5`` file (the reader then explains what to give)."""
    p = Path(path)
    if p.is_dir():
        return (p / MANIFEST).is_file() or any(p.glob("shard-*.h5"))
    return p.suffix.lower() in (".json", ".h5", ".hdf5")


def shard_name(k: int) -> str:
    """File name of shard ``k``: ``shard-00000.h5``, ``shard-00001.h5``, ..."""
    return f"shard-{k:05d}.h5"


def load_manifest(path: Path) -> tuple[Path, dict]:
    """``(directory, manifest)`` of a shard directory or manifest path, checked: the format and
    version, the shard entries and counts, and each listed shard's presence and file size.

    Raises:
        FileNotFoundError: no manifest (an interrupted conversion says so), or a missing shard.
        ValueError: not JSON, another format or version, inconsistent counts, a shard whose
            size differs from the manifest's (truncated or modified).
    """
    if path.suffix.lower() in (".h5", ".hdf5"):
        raise ValueError(f"path {str(path)!r} is one shard; give its directory or {MANIFEST}")
    directory, file = (path, path / MANIFEST) if path.is_dir() else (path.parent, path)
    if not file.is_file():
        if directory.is_dir() and any(directory.glob("shard-*.h5")):
            raise FileNotFoundError(
                f"shards in {str(directory)!r} have no {MANIFEST}: the conversion was "
                "interrupted or failed; run it again")
        raise FileNotFoundError(f"shard manifest {str(file)!r} does not exist")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"shard manifest {str(file)!r} is not valid JSON ({err})") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{str(file)!r} is not an equivar shard manifest (format "
                         f"{manifest.get('format') if isinstance(manifest, dict) else None!r}, "
                         f"expected {FORMAT!r})")
    if manifest.get("version") != VERSION:
        raise ValueError(f"shard manifest {str(file)!r} has version {manifest.get('version')!r}; "
                         f"this equivar reads version {VERSION} (convert again, or upgrade)")
    shards, fields = manifest.get("shards"), manifest.get("fields")
    entry_keys = {"file", "n_structures", "n_atoms", "bytes"}
    if not isinstance(shards, list) or not all(
        isinstance(s, dict) and entry_keys <= set(s) for s in shards
    ):
        raise ValueError(f"shard manifest {str(file)!r}: 'shards' must be a list of entries "
                         f"with {sorted(entry_keys)}")
    if not isinstance(fields, dict) or not {K.POSITIONS, K.ATOMIC_NUMBERS} <= set(fields):
        raise ValueError(f"shard manifest {str(file)!r}: 'fields' must name at least pos and z")
    counted = sum(int(s["n_structures"]) for s in shards)
    if counted != manifest.get("n_structures") or len(shards) != manifest.get("n_shards"):
        raise ValueError(f"shard manifest {str(file)!r}: says {manifest.get('n_structures')} "
                         f"structures in {manifest.get('n_shards')} shards but lists "
                         f"{counted} in {len(shards)}")
    for shard in shards:
        f = directory / shard["file"]
        if not f.is_file():
            raise FileNotFoundError(f"shard {str(f)!r} listed in {str(file)!r} is missing")
        size = f.stat().st_size
        if size != shard["bytes"]:
            raise ValueError(f"shard {str(f)!r} has {size} bytes but the manifest says "
                             f"{shard['bytes']}: truncated or modified; convert again")
    return directory, manifest
