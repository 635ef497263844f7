"""Reading HDF5 shards (the layout: :mod:`equivar.data.shard_format`) lazily, one graph at a time.

:class:`ShardedDataset` opens shards on first access in each process (h5py handles do not survive
``fork``, so every DataLoader worker opens its own) and builds each graph's edges on the fly with
the same code as :class:`AtomsDataset`, so the graphs are bit-identical to those built in memory.
"""

from __future__ import annotations

import copy
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from equivar import keys as K
from equivar.data.dataset import SplitMixin, graph_from_fields
from equivar.data.graph import relabel
from equivar.data.labels import KEY_FIELDS, LabelKeys, missing_label
from equivar.data.shard_format import import_h5py, load_manifest
from equivar.data.validation import check_cutoff

if TYPE_CHECKING:
    from torch_geometric.data import Data

__all__ = ["ShardedDataset"]

#: Stored structure fields, never a label (left out of "the keys that are there").
_NOT_LABELS = {K.POSITIONS, K.ATOMIC_NUMBERS, K.CELL, K.PBC, K.TOTAL_CHARGE, K.SPIN}


class _ShardReader:
    """One open shard: the h5py file, its datasets and its atom offsets."""

    def __init__(self, path: Path, entry: dict, fields: dict) -> None:
        h5py = import_h5py()
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
        self._dir, self._manifest = load_manifest(Path(path))
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
