"""Data larger than memory: structures in HDF5 shards, read back one graph at a time.

A shard directory holds ``manifest.json`` and ``shard-00000.h5``, ``shard-00001.h5``, ... of at
most ``shard_size`` structures each (the layout: :mod:`equivar.data.shard_format`). Every field
of a graph except its edges is stored with the dtype it had, so graphs read back are
bit-identical to those an :class:`AtomsDataset` builds in memory. Shards and the manifest are
written atomically, the manifest last: a directory without ``manifest.json`` is an unfinished
conversion.

The work is split by concept: :mod:`~equivar.data.shard_format` (layout, constants, manifest
check), :mod:`~equivar.data.shard_writer` (:class:`ShardWriter`, :func:`write_shards`) and
:mod:`~equivar.data.shard_reader` (:class:`ShardedDataset`); this module gathers them under the
name they have always had.
"""

from __future__ import annotations

from equivar.data.shard_format import (  # noqa: F401 (importable from here, as before the split)
    FORMAT,
    MANIFEST,
    UNITS,
    VERSION,
    is_shard_path,
)
from equivar.data.shard_reader import ShardedDataset
from equivar.data.shard_writer import ShardWriter, write_shards

__all__ = ["ShardWriter", "ShardedDataset", "write_shards"]
