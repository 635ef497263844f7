"""Writing structures into HDF5 shards (the layout: :mod:`equivar.data.shard_format`).

Every field of a graph except its edges is stored with the dtype it had (``ase.Atoms`` give
float64), so graphs read back are bit-identical to those an :class:`AtomsDataset` builds in
memory. Shards and the manifest are written atomically (:mod:`equivar.atomic`), the manifest
last: a directory without ``manifest.json`` is an unfinished conversion.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from equivar import keys as K
from equivar.atomic import atomic_write, atomic_write_text
from equivar.data.frames import frame_fields
from equivar.data.shard_format import FORMAT, MANIFEST, UNITS, VERSION, import_h5py, shard_name
from equivar.data.validation import validate_structure

if TYPE_CHECKING:
    import ase
    from torch_geometric.data import Data

__all__ = ["ShardWriter", "write_shards"]

#: Fields of a graph that are not stored: edges are rebuilt at the reader's cutoff.
_NOT_STORED = {K.EDGE_INDEX, K.EDGE_SHIFTS, K.EDGE_VECTORS, K.EDGE_LENGTHS, K.BATCH, K.PTR}
_NODE_STRUCTURE = {K.POSITIONS, K.ATOMIC_NUMBERS}
_CHUNK_BYTES = 1 << 14  # compressed datasets: ~16 KiB chunks, so one structure is a small read


def _frame(item: ase.Atoms | Data, k: int) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Numpy fields of one structure (no edges) and the level of each, validated."""
    if getattr(item, "num_graphs", 1) != 1:
        raise ValueError(f"structure {k}: a Batch of {item.num_graphs} graphs; add them one by one")
    try:
        fields, node_keys = frame_fields(item)
    except TypeError as err:
        raise TypeError(f"structure {k}: {err}") from err
    fields = {name: v for name, v in fields.items() if name not in _NOT_STORED}
    if K.ATOMIC_NUMBERS not in fields:
        raise ValueError(f"structure {k}: graph has no {K.ATOMIC_NUMBERS!r} field")
    fields.pop(K.NUM_NODES, None)
    dtype = fields[K.POSITIONS].dtype
    fields.setdefault(K.TOTAL_CHARGE, np.zeros(1, dtype))  # the defaults of graph_from_fields
    fields.setdefault(K.SPIN, np.ones(1, dtype))
    try:
        validate_structure(fields[K.POSITIONS], fields[K.ATOMIC_NUMBERS], fields[K.CELL],
                           fields[K.PBC], check_distances=False)  # distances: at read time
    except (ValueError, TypeError) as err:
        raise type(err)(f"structure {k}: {err}") from err
    levels = {n: "node" if n in _NODE_STRUCTURE or n in node_keys else "graph" for n in fields}
    for name in fields:
        if "/" in name:
            raise ValueError(f"structure {k}: field name {name!r} contains '/', which HDF5 "
                             "reads as a group separator; rename it")
    return fields, levels


class ShardWriter:
    """Streams structures into HDF5 shards; holds at most one shard's arrays in memory.

    Use as a context manager (or call :meth:`close`): on an exception the shards written so
    far are removed and no manifest is written.

    Args:
        directory: output folder (created); must not hold a finished conversion unless
            ``overwrite``.
        shard_size: structures per shard. Default 10,000.
        compression: ``None`` (default: fastest random reads), ``"gzip"`` or ``"lzf"``
            (lossless; chunks of ~16 KiB, so a read decompresses a little more than a frame).
        overwrite: replace a finished conversion in ``directory``. Default False.

    Attributes:
        metadata: JSON-serialisable dict stored in the manifest under ``"metadata"``.

    Example:
        >>> with ShardWriter("shards/", shard_size=1000) as w:  # doctest: +SKIP
        ...     for atoms in ase.io.iread("big.extxyz"):
        ...         w.add(atoms)
    """

    def __init__(self, directory: str | os.PathLike, *, shard_size: int = 10_000,
                 compression: str | None = None, overwrite: bool = False) -> None:
        if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
            raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}")
        if compression not in (None, "gzip", "lzf"):
            raise ValueError(f"compression must be None, 'gzip' or 'lzf', got {compression!r}")
        import_h5py()
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise ValueError(f"directory {str(self.directory)!r} exists and is not a folder")
        manifest = self.directory / MANIFEST
        if manifest.exists():
            if not overwrite:
                raise ValueError(f"directory {str(self.directory)!r} already holds shards "
                                 f"({MANIFEST}); pass overwrite=True (--overwrite) to replace")
            manifest.unlink()  # first: a killed overwrite must not look finished
        self._created = not self.directory.exists()
        self.directory.mkdir(parents=True, exist_ok=True)
        for pattern in (".shard-*.tmp", f".{MANIFEST}.*.tmp"):  # left by a killed conversion
            for stale in self.directory.glob(pattern):
                stale.unlink()
        self.shard_size, self.compression = shard_size, compression
        self.metadata: dict[str, Any] = {}
        self._specs: dict[str, dict[str, Any]] | None = None
        self._buffer: list[dict[str, np.ndarray]] = []
        self._shards: list[dict[str, Any]] = []
        self._n, self._species = 0, set()
        self._closed = False

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    @property
    def n_structures(self) -> int:
        """Structures added so far."""
        return self._n

    def add(self, structure: ase.Atoms | Data) -> None:
        """Append one structure (``ase.Atoms`` or a single graph ``Data``); every structure must
        carry the same fields with the same dtypes and per-structure shapes as the first."""
        if self._closed:
            raise ValueError("ShardWriter is closed")
        fields, levels = _frame(structure, self._n)
        specs = {n: {"level": levels[n], "dtype": v.dtype.str,
                     "shape": list(v.shape[1:] if levels[n] == "node" else v.shape)}
                 for n, v in fields.items()}
        if self._specs is None:
            self._specs = specs
        elif specs != self._specs:
            self._mismatch(specs)
        self._species.update(int(z) for z in np.unique(fields[K.ATOMIC_NUMBERS]))
        self._buffer.append(fields)
        self._n += 1
        if len(self._buffer) >= self.shard_size:
            self._flush()

    def _mismatch(self, specs: dict) -> None:
        first, k = self._specs or {}, self._n
        if set(specs) != set(first):
            raise ValueError(
                f"structure {k} has fields {sorted(specs)} but structure 0 has {sorted(first)} "
                f"(differing: {sorted(set(specs) ^ set(first))}); every structure in a set of "
                "shards must carry the same fields")
        for name in sorted(specs):
            if specs[name] != first[name]:
                raise ValueError(f"structure {k}: field {name!r} is {specs[name]} but in "
                                 f"structure 0 it is {first[name]} (level, dtype, shape)")

    def _flush(self) -> None:
        """Write the buffered structures as the next shard, atomically (:mod:`equivar.atomic`:
        a temporary ``.shard-KKKKK.h5.*.tmp``, fsync, rename); h5py writes through the open
        file (its ``fileobj`` driver), streaming as it does to a named file."""
        h5py = import_h5py()
        frames, self._buffer = self._buffer, []
        n_atoms = np.array([len(f[K.ATOMIC_NUMBERS]) for f in frames], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(n_atoms)]).astype(np.int64)  # [n + 1]
        name = shard_name(len(self._shards))

        def write(handle: BinaryIO) -> None:
            with h5py.File(handle, "w") as h5:
                h5.attrs.update(format="equivar-shard", version=VERSION,
                                n_structures=len(frames), n_atoms=int(offsets[-1]))
                h5.create_dataset("atom_offsets", data=offsets)
                for field, spec in (self._specs or {}).items():
                    parts = [f[field] for f in frames]
                    if spec["level"] == "node":
                        data = np.concatenate(parts)  # [n_atoms, ...]
                    else:
                        data = np.stack(parts)  # [n_structures, ...]
                    h5.create_dataset(f"{spec['level']}/{field}", data=data, **self._layout(data))

        atomic_write(self.directory / name, write)
        self._shards.append({"file": name, "n_structures": len(frames),
                             "n_atoms": int(offsets[-1]),
                             "bytes": (self.directory / name).stat().st_size})

    def _layout(self, data: np.ndarray) -> dict[str, Any]:
        if self.compression is None or data.size == 0:
            return {}
        row = max(1, data.itemsize * int(np.prod(data.shape[1:], dtype=np.int64)))
        chunks = (min(len(data), max(1, _CHUNK_BYTES // row)), *data.shape[1:])
        return {"compression": self.compression, "shuffle": True, "chunks": chunks}

    def close(self) -> Path:
        """Write the last shard and then the manifest; return the manifest's path."""
        if self._closed:
            return self.directory / MANIFEST
        if self._n == 0:
            self.abort()
            raise ValueError("structures is empty: nothing to write")
        if self._buffer:
            self._flush()
        from equivar._version import __version__

        h5py = import_h5py()
        manifest = {
            "format": FORMAT, "version": VERSION, "n_structures": self._n,
            "n_atoms": sum(s["n_atoms"] for s in self._shards), "n_shards": len(self._shards),
            "shard_size": self.shard_size, "compression": self.compression,
            "species": sorted(self._species), "fields": self._specs,
            "units": {n: UNITS[n] for n in self._specs or {} if n in UNITS},
            "units_note": "the units equivar assumes (ASE's); values are stored as read, "
                          "not converted (MD17/sGDML .npz inputs keep their file's units)",
            "shards": self._shards, "metadata": self.metadata,
            "created_by": {"equivar": __version__, "h5py": h5py.__version__,
                           "hdf5": h5py.version.hdf5_version},
        }  # fmt: skip
        atomic_write_text(self.directory / MANIFEST, json.dumps(manifest, indent=1))
        listed = {s["file"] for s in self._shards}
        for old in self.directory.glob("shard-*.h5"):  # from an earlier, longer conversion
            if old.name not in listed:
                old.unlink()
        self._closed = True
        return self.directory / MANIFEST

    def abort(self) -> None:
        """Remove the shards written so far; nothing is left that looks like a conversion."""
        for shard in self._shards:
            (self.directory / shard["file"]).unlink(missing_ok=True)
        self._shards, self._buffer, self._closed = [], [], True
        if self._created and not any(self.directory.iterdir()):
            self.directory.rmdir()


def write_shards(structures: Iterable[ase.Atoms | Data], directory: str | os.PathLike, *,
                 shard_size: int = 10_000, compression: str | None = None,
                 overwrite: bool = False, metadata: dict | None = None) -> Path:
    """Write structures (any iterable, consumed once, streamed) into HDF5 shards.

    Args:
        structures: ``ase.Atoms`` or single graphs ``Data`` (e.g. an :class:`AtomsDataset`, a
            generator over ``equivar.data.iread``), all with the same fields.
        directory: output folder, see :class:`ShardWriter`.
        shard_size: structures per shard (one shard is held in memory). Default 10,000.
        compression: None, ``"gzip"`` or ``"lzf"``. Default None.
        overwrite: replace a finished conversion in ``directory``. Default False.
        metadata: JSON-serialisable dict stored in the manifest. Default None.

    Returns:
        The path of ``manifest.json``; read the shards with :func:`equivar.data.read` or
        :class:`ShardedDataset`.

    Example:
        >>> from ase.build import molecule
        >>> import tempfile
        >>> from equivar.data import ShardedDataset
        >>> out = write_shards([molecule("H2O"), molecule("CH4")], tempfile.mkdtemp())
        >>> len(ShardedDataset(out, cutoff=3.0))
        2
    """
    with ShardWriter(directory, shard_size=shard_size, compression=compression,
                     overwrite=overwrite) as writer:
        writer.metadata.update(metadata or {})
        for structure in structures:
            writer.add(structure)
    return writer.directory / MANIFEST
