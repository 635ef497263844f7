"""Graphs from structures: periodic neighbour lists, ASE/extxyz/npz I/O, datasets (in memory,
or lazily from HDF5 shards for data larger than memory), statistics.

Everything here returns ``torch_geometric.data.Data`` graphs whose fields are named in
:mod:`equivar.keys`. ASE, vesin and PyG are imported only when a function needs them.
"""

from equivar.data.dataset import AtomsDataset, loader
from equivar.data.graph import from_ase, to_ase
from equivar.data.io import iread, read, write_npz
from equivar.data.labels import LabelKeys
from equivar.data.neighbors import radius_graph
from equivar.data.shards import ShardedDataset, ShardWriter, write_shards
from equivar.data.statistics import DatasetStatistics, compute_statistics
from equivar.data.validation import check_species, validate_structure

__all__ = [
    "AtomsDataset",
    "DatasetStatistics",
    "LabelKeys",
    "ShardWriter",
    "ShardedDataset",
    "check_species",
    "compute_statistics",
    "from_ase",
    "iread",
    "loader",
    "radius_graph",
    "read",
    "to_ase",
    "validate_structure",
    "write_npz",
    "write_shards",
]
