"""Data larger than memory: structures in HDF5 shards, read back one graph at a time.

A shard directory holds ``manifest.json`` and ``shard-00000.h5``, ``shard-00001.h5``, ... of at
most ``shard_size`` structures each. Ragged per-atom arrays are stored concatenated, with offsets::

    shard-KKKKK.h5   attrs: format="equivar-shard", version=1, n_structures, n_atoms
        atom_offsets   [n_structures + 1] int64   atoms of structure s: offsets[s]:offsets[s+1]
        node/<name>    [n_atoms, ...]             pos, z, forces, charges, other per-atom fields
        graph/<name>   [n_structures, ...]        cell [.., 1, 3, 3], pbc [.., 1, 3],
                                                  total_charge, spin, energy [.., 1], stress, ...

Every field of a graph except its edges is stored with the dtype it had (``ase.Atoms`` give
float64), so graphs read back are bit-identical to those an :class:`AtomsDataset` builds in
memory. The manifest records counts, fields (level, dtype, trailing shape), units, the file size
of each shard and the format version. Shards and the manifest are written to temporary names and
renamed, the manifest last: a directory without ``manifest.json`` is an unfinished conversion.

:class:`ShardedDataset` opens shards on first access in each process (h5py handles do not survive
``fork``, so every DataLoader worker opens its own) and builds each graph's edges on the fly with
the same code as :class:`AtomsDataset`.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from equivar import keys as K
from equivar.data.dataset import SplitMixin, graph_from_fields
from equivar.data.graph import relabel
from equivar.data.labels import KEY_FIELDS, LabelKeys, missing_label
from equivar.data.validation import check_cutoff, validate_structure

if TYPE_CHECKING:
    import ase
    from torch_geometric.data import Data

__all__ = ["ShardWriter", "ShardedDataset", "write_shards"]

FORMAT, VERSION, MANIFEST = "equivar-shards", 1, "manifest.json"
#: Units of the known fields (equivar's ASE convention, see :mod:`equivar.keys`); values are
#: stored as read, without conversion.
UNITS = {
    K.POSITIONS: "Angstrom", K.CELL: "Angstrom", K.ATOMIC_NUMBERS: "1", K.PBC: "1",
    K.TOTAL_CHARGE: "e", K.SPIN: "1 (multiplicity 2S+1)", K.ENERGY: "eV", K.NODE_ENERGY: "eV",
    K.FORCES: "eV/Angstrom", K.STRESS: "eV/Angstrom^3", K.VIRIAL: "eV", K.DIPOLE: "e*Angstrom",
    K.POLARIZABILITY: "Angstrom^3", K.CHARGES: "e",
}  # fmt: skip
#: Fields of a graph that are not stored: edges are rebuilt at the reader's cutoff.
_NOT_STORED = {K.EDGE_INDEX, K.EDGE_SHIFTS, K.EDGE_VECTORS, K.EDGE_LENGTHS, K.BATCH, "ptr"}
_NODE_STRUCTURE = {K.POSITIONS, K.ATOMIC_NUMBERS}
#: Stored structure fields, never a label (left out of "the keys that are there").
_NOT_LABELS = {K.POSITIONS, K.ATOMIC_NUMBERS, K.CELL, K.PBC, K.TOTAL_CHARGE, K.SPIN}
_CHUNK_BYTES = 1 << 14  # compressed datasets: ~16 KiB chunks, so one structure is a small read


def _h5py():
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


def _shard_name(k: int) -> str:
    return f"shard-{k:05d}.h5"


def _atomic_replace(tmp: str, dest: Path) -> None:
    """fsync ``tmp`` and rename it onto ``dest`` (a crash leaves the old file or the new one)."""
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, dest)


def _frame(item: ase.Atoms | Data, k: int) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Numpy fields of one structure (no edges) and the level of each, validated."""
    from equivar.data.io import _frame_fields

    if getattr(item, "num_graphs", 1) != 1:
        raise ValueError(f"structure {k}: a Batch of {item.num_graphs} graphs; add them one by one")
    try:
        fields, node_keys = _frame_fields(item)
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
        _h5py()
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
        for stale in self.directory.glob(".shard-*.tmp"):  # left by a killed conversion
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
        """Write the buffered structures as the next shard (temp file, fsync, rename)."""
        h5py = _h5py()
        frames, self._buffer = self._buffer, []
        n_atoms = np.array([len(f[K.ATOMIC_NUMBERS]) for f in frames], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(n_atoms)]).astype(np.int64)  # [n + 1]
        name = _shard_name(len(self._shards))
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{name}.", suffix=".tmp")
        os.close(fd)
        try:
            with h5py.File(tmp, "w") as h5:
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
            _atomic_replace(tmp, self.directory / name)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
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

        h5py = _h5py()
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
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".shard-manifest.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=1)
        _atomic_replace(tmp, self.directory / MANIFEST)
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


def _load_manifest(path: Path) -> tuple[Path, dict]:
    """``(directory, manifest)`` of a shard directory or manifest path, checked."""
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


class _ShardReader:
    """One open shard: the h5py file, its datasets and its atom offsets."""

    def __init__(self, path: Path, entry: dict, fields: dict) -> None:
        h5py = _h5py()
        try:  # a small chunk cache: only compressed shards use it, and many may be open
            self.file = h5py.File(path, "r", rdcc_nbytes=1 << 18)
        except OSError as err:
            raise ValueError(f"shard {str(path)!r} is not a readable HDF5 file (truncated or "
                             f"corrupt; convert again): {err}") from err
        try:
            attrs = dict(self.file.attrs)
            n, atoms = int(attrs.get("n_structures", -1)), int(attrs.get("n_atoms", -1))
            if (n, atoms) != (entry["n_structures"], entry["n_atoms"]):
                raise ValueError(f"shard {str(path)!r} holds {n} structures and {atoms} atoms "
                                 f"but the manifest says {entry['n_structures']} and "
                                 f"{entry['n_atoms']}")
            self.offsets = self.file["atom_offsets"][()]  # [n_structures + 1]
            self.node, self.graph = {}, {}
            for name, spec in fields.items():
                ds = self.file[f"{spec['level']}/{name}"]
                lead = atoms if spec["level"] == "node" else n
                if ds.shape != (lead, *spec["shape"]):
                    raise ValueError(f"shard {str(path)!r}: {name} has shape {ds.shape}, "
                                     f"expected {(lead, *spec['shape'])}")
                (self.node if spec["level"] == "node" else self.graph)[name] = ds
        except KeyError as err:
            self.file.close()
            raise ValueError(f"shard {str(path)!r} lacks a dataset: {err}") from err
        except BaseException:
            self.file.close()
            raise

    def fields(self, row: int) -> dict[str, torch.Tensor]:
        """The stored fields of structure ``row``: node ``[n_nodes, ...]``, graph as written."""
        a, b = int(self.offsets[row]), int(self.offsets[row + 1])
        out = {name: torch.from_numpy(ds[a:b]) for name, ds in self.node.items()}
        for name, ds in self.graph.items():
            out[name] = torch.from_numpy(np.asarray(ds[row]))
        return out


class ShardedDataset(SplitMixin, torch.utils.data.Dataset):
    """Graphs of structures in HDF5 shards, read and built one at a time on access.

    Nothing but the manifest is loaded at construction (each shard's header is checked);
    ``dataset[i]`` reads structure ``i`` and builds its validated graph with the code
    :class:`AtomsDataset` uses, so the two give identical graphs. Shards are opened on first
    access in each process, which makes the dataset safe for ``DataLoader`` workers (fork or
    spawn); at most ``max_open`` shards stay open per process.

    Args:
        path: a shard directory (written by :func:`write_shards` or ``equivar convert``) or its
            ``manifest.json``.
        cutoff: neighbour cutoff radius (Angstrom).
        dtype: floating dtype of the graphs. Default: ``torch.get_default_dtype()``.
        max_open: open shards kept per process. Default 64.
        labels: keys of the stored fields that hold the energy, forces, stress and virial,
            e.g. ``LabelKeys(energy_key="REF_energy")`` for shards converted from a file that
            keeps its labels there (see :mod:`equivar.data.labels`); checked against the
            manifest at once. Default: equivar's names.

    Shapes:
        as :func:`equivar.data.from_ase`: ``pos [n_nodes, 3]``, ``edge_index [2, n_edges]``, ...

    Example:
        >>> ds = ShardedDataset("shards/", cutoff=5.0)  # doctest: +SKIP
        >>> train, valid = ds.split([0.9, 0.1], seed=0)  # doctest: +SKIP
        >>> batches = loader(train, 32, shuffle=True, num_workers=4)  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike, cutoff: float, *,
                 dtype: torch.dtype | None = None, max_open: int = 64,
                 labels: LabelKeys | None = None) -> None:
        check_cutoff(cutoff)
        self._dir, self._manifest = _load_manifest(Path(path))
        if labels is not None and not isinstance(labels, LabelKeys):
            raise TypeError(f"labels must be an equivar.data.LabelKeys, got "
                            f"{type(labels).__name__}")
        self._labels = labels or LabelKeys()
        stored = self._manifest["fields"]
        self._node_fields = {name for name, spec in stored.items() if spec["level"] == "node"}
        for target, key in self._labels.renamed().items():  # every structure has every field
            where = f"shards in {str(self._dir)!r}"
            if key not in stored:
                raise ValueError(f"{where}: " + missing_label(target, key, {
                    "stored fields": [k for k in stored if k not in _NOT_LABELS]}))
            if stored[key]["level"] != K.FIELDS[target].level:
                raise ValueError(f"{where}: the {target} label {key!r} is stored per "
                                 f"{'atom' if stored[key]['level'] == 'node' else 'structure'}; "
                                 f"{KEY_FIELDS[target]} must name a per-"
                                 f"{'atom' if K.FIELDS[target].level == 'node' else 'structure'}"
                                 " field")
        self._cutoff = float(cutoff)
        self._dtype = torch.get_default_dtype() if dtype is None else dtype
        if not self._dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating dtype, got {self._dtype}")
        self._max_open = max(1, int(max_open))
        counts = [int(s["n_structures"]) for s in self._manifest["shards"]]
        self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)  # [n_shards+1]
        self._index: np.ndarray | None = None  # None: all structures in order
        self._readers: OrderedDict[int, _ShardReader] = OrderedDict()
        self._pid = os.getpid()
        for k in range(len(counts)):  # headers now, so a bad shard fails before training
            self._reader(k)
        self.close()  # no handle is inherited by forked workers

    @property
    def cutoff(self) -> float:
        """The neighbour cutoff (Angstrom) every graph is built with."""
        return self._cutoff

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype every graph is built in."""
        return self._dtype

    def with_dtype(self, dtype: torch.dtype) -> ShardedDataset:
        """The same structures (a view with its own shard handles), built in ``dtype``."""
        if not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating dtype, got {dtype}")
        obj = self.subset(range(len(self)))
        obj._dtype = dtype
        return obj

    @property
    def labels(self) -> LabelKeys:
        """The keys of the stored fields that hold the labels."""
        return self._labels

    @property
    def manifest(self) -> dict:
        """A copy of the manifest (counts, fields, units, shards, metadata)."""
        return copy.deepcopy(self._manifest)

    @property
    def path(self) -> Path:
        """The shard directory."""
        return self._dir

    def __len__(self) -> int:
        return int(self._starts[-1]) if self._index is None else len(self._index)

    def __repr__(self) -> str:
        return (f"ShardedDataset({len(self)} graphs from {len(self._manifest['shards'])} "
                f"shards in {str(self._dir)!r}, cutoff={self._cutoff:g})")

    def _reader(self, shard: int) -> _ShardReader:
        if os.getpid() != self._pid:  # a forked worker: the parent's handles are not ours
            self._readers, self._pid = OrderedDict(), os.getpid()
        reader = self._readers.get(shard)
        if reader is None:
            entry = self._manifest["shards"][shard]
            reader = _ShardReader(self._dir / entry["file"], entry, self._manifest["fields"])
            self._readers[shard] = reader
            while len(self._readers) > self._max_open:
                self._readers.popitem(last=False)[1].file.close()
        self._readers.move_to_end(shard)
        return reader

    def __getitem__(self, index: int) -> Data:
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise TypeError(f"index must be an integer, got {type(index).__name__}")
        n, i = len(self), int(index)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of range for {n} structures")
        i = i % n if self._index is None else int(self._index[i])
        shard = int(np.searchsorted(self._starts, i, side="right")) - 1
        row = i - int(self._starts[shard])
        fields = self._reader(shard).fields(row)
        try:
            relabel(fields, set(self._node_fields), self._labels)
            return graph_from_fields(fields, self._cutoff, self._dtype)
        except (ValueError, TypeError) as err:
            where = f"{self._manifest['shards'][shard]['file']} row {row}"
            raise type(err)(f"structure {i} ({where}): {err}") from err

    def __iter__(self) -> Iterator[Data]:
        for i in range(len(self)):
            yield self[i]

    def subset(self, indices: Sequence[int]) -> ShardedDataset:
        """The structures at ``indices`` (in that order) as a new lazy dataset."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"indices must lie in [-{n}, {n}), got {idx.min()}..{idx.max()}")
        idx = idx % max(n, 1)
        obj = copy.copy(self)
        obj._index = idx if self._index is None else self._index[idx]
        obj._readers, obj._pid = OrderedDict(), os.getpid()
        return obj

    def close(self) -> None:
        """Close the shards this process has open (they reopen on the next access)."""
        if os.getpid() == self._pid:
            for reader in self._readers.values():
                reader.file.close()
        self._readers = OrderedDict()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_readers"], state["_pid"] = OrderedDict(), None  # spawned workers open their own
        return state
