"""An in-memory dataset of graphs built once from ``ase.Atoms`` or ``Data``, and its loader."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from equivar import keys as K
from equivar.data.graph import checked_graph, from_ase
from equivar.data.labels import LabelKeys
from equivar.data.validation import check_cutoff

if TYPE_CHECKING:
    import ase
    from torch_geometric.data import Data
    from torch_geometric.loader import DataLoader

__all__ = ["AtomsDataset", "loader"]

#: Derived fields dropped (and recomputed) when a dataset is built from existing graphs.
_DERIVED = {K.EDGE_INDEX, K.EDGE_SHIFTS, K.EDGE_VECTORS, K.EDGE_LENGTHS, K.BATCH, K.PTR}


def _rebuild(data: Data, cutoff: float, dtype: torch.dtype | None) -> Data:
    """Copy of ``data`` with checked structure fields and edges recomputed at ``cutoff``."""
    from torch_geometric.data import Data

    if not isinstance(data, Data):
        raise TypeError(f"expected torch_geometric.data.Data, got {type(data).__name__}")
    return graph_from_fields({key: data[key] for key in data.keys()}, cutoff, dtype)


def graph_from_fields(fields: dict[str, Any], cutoff: float, dtype: torch.dtype | None) -> Data:
    """A validated graph from a structure's fields: floats cast to ``dtype``, missing ``cell``,
    ``pbc``, ``total_charge``, ``spin`` defaulted, derived fields dropped and the edges built at
    ``cutoff`` (the path of graphs given as ``Data`` and of :class:`ShardedDataset` frames).

    Args:
        fields: at least ``pos`` and ``z``; not modified.
        cutoff: neighbour cutoff radius (Angstrom).
        dtype: floating dtype of the graph. None: the dtype of ``pos``.

    Shapes:
        pos: ``[n_nodes, 3]``; z: ``[n_nodes]``; cell: 9 entries (-> ``[1, 3, 3]``); pbc: 3
        entries (-> ``[1, 3]``); returns a ``Data`` with ``edge_index [2, n_edges]`` and
        ``shifts [n_edges, 3]`` added.
    """
    from torch_geometric.data import Data

    for key in (K.POSITIONS, K.ATOMIC_NUMBERS):
        if key not in fields:
            raise ValueError(f"graph has no {key!r} field")
    pos = fields[K.POSITIONS]
    dtype = pos.dtype if dtype is None else dtype
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key in _DERIVED:
            continue
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            value = value.to(dtype)
        out[key] = value
    out.setdefault(K.CELL, torch.zeros(1, 3, 3, dtype=dtype))  # [1, 3, 3]
    out.setdefault(K.PBC, torch.zeros(1, 3, dtype=torch.bool))  # [1, 3]
    out.setdefault(K.TOTAL_CHARGE, torch.zeros(1, dtype=dtype))  # [1]
    out.setdefault(K.SPIN, torch.ones(1, dtype=dtype))  # [1]
    for key, size in ((K.CELL, 9), (K.PBC, 3)):
        if not isinstance(out[key], torch.Tensor) or out[key].numel() != size:
            raise ValueError(f"{key} must be a tensor with {size} entries (one graph)")
    out[K.CELL] = out[K.CELL].reshape(1, 3, 3)
    out[K.PBC] = out[K.PBC].reshape(1, 3).bool()
    out[K.EDGE_INDEX], out[K.EDGE_SHIFTS] = checked_graph(out, cutoff)
    return Data(**out)


def _split_counts(sizes: Sequence[int] | Sequence[float], n: int) -> list[int]:
    """Part sizes of a split of ``n`` items (see :meth:`SplitMixin.split` for the rules)."""
    values = list(sizes)
    if not values:
        raise ValueError("sizes must name at least one part")
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        counts = [int(v) for v in values]
        if min(counts) < 0 or sum(counts) > n:
            raise ValueError(f"sizes {counts} must be >= 0 and sum to at most {n}")
    elif all(isinstance(v, (float, np.floating)) for v in values):
        total = float(sum(values))
        if min(values) < 0 or total > 1 + 1e-9:
            raise ValueError(f"fractions {values} must be >= 0 and sum to at most 1")
        counts = [int(np.floor(v * n + 1e-9)) for v in values]
        if abs(total - 1) < 1e-9:
            for k in range(n - sum(counts)):
                counts[k % len(counts)] += 1
    else:
        raise TypeError(f"sizes must be all int (sizes) or all float (fractions), got {values}")
    return counts


class SplitMixin:
    """``split`` for datasets with ``__len__`` and ``subset(indices)`` (in-memory and sharded
    datasets split the same way: the same seed gives the same indices)."""

    def split(self, sizes: Sequence[int] | Sequence[float], seed: int = 0) -> tuple:
        """Random disjoint subsets, the same for the same ``seed``.

        Args:
            sizes: integer sizes (sum at most ``len(self)``), or fractions in (0, 1] (sum at most
                1; each part gets ``floor(f * len)``, and when they sum to 1 the remainder goes
                one by one to the first parts so that every graph is used).
            seed: seed of the permutation (``numpy.random.default_rng``). Default 0.

        Returns:
            One dataset of this class (from :meth:`subset`) per entry of ``sizes``.

        Example:
            >>> train, valid = ds.split([0.8, 0.2], seed=1)  # doctest: +SKIP
        """
        n = len(self)  # type: ignore[arg-type]
        counts = _split_counts(sizes, n)
        order = np.random.default_rng(seed).permutation(n)
        bounds = np.cumsum([0, *counts])
        return tuple(
            self.subset(order[a:b].tolist())  # type: ignore[attr-defined]
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        )


class AtomsDataset(SplitMixin, torch.utils.data.Dataset):
    """Graphs of a list of structures, built and validated eagerly once, then served from memory.

    Every graph is made at construction (so a bad structure fails at once, naming its index) and
    cached; ``dataset[i]`` returns the cached ``Data`` itself, so treat it as read-only (a PyG
    ``DataLoader`` copies while batching). Graphs given as ``Data`` have their edges rebuilt with
    this dataset's ``cutoff`` so that every graph agrees with :attr:`cutoff`.

    Args:
        structures: ``ase.Atoms`` (converted by :func:`equivar.data.from_ase`) or ``Data`` with at
            least ``pos`` and ``z``; not a mix.
        cutoff: neighbour cutoff radius (Angstrom).
        dtype: floating dtype of the graphs. Default: ``torch.get_default_dtype()`` for Atoms,
            the graph's own ``pos`` dtype for Data.
        labels: keys under which the ``ase.Atoms`` keep their energy, forces, stress and
            virial, e.g. ``LabelKeys(energy_key="REF_energy")`` (see
            :mod:`equivar.data.labels`). Default: equivar's names. Graphs (``Data``) carry
            their targets under equivar's names already, so they take only the default.

    Example:
        >>> from ase.build import molecule
        >>> ds = AtomsDataset([molecule("H2O"), molecule("CH4")], cutoff=3.0)
        >>> len(ds), ds[1].z.tolist()
        (2, [6, 1, 1, 1, 1])
    """

    def __init__(
        self,
        structures: Iterable[ase.Atoms | Data],
        cutoff: float,
        *,
        dtype: torch.dtype | None = None,
        labels: LabelKeys | None = None,
    ) -> None:
        import ase
        from torch_geometric.data import Data

        check_cutoff(cutoff)
        if labels is not None and not isinstance(labels, LabelKeys):
            raise TypeError(f"labels must be an equivar.data.LabelKeys, got "
                            f"{type(labels).__name__}")
        items = list(structures)
        n_atoms = sum(isinstance(s, ase.Atoms) for s in items)
        n_data = sum(isinstance(s, Data) for s in items)
        if n_atoms + n_data != len(items) or (n_atoms and n_data):
            kinds = sorted({type(s).__name__ for s in items})
            raise TypeError(f"structures must be all ase.Atoms or all Data, got {kinds}")
        if n_data and labels is not None and labels.renamed():
            raise ValueError(f"label keys ({labels}) say where ase.Atoms keep their labels; "
                             "graphs (Data) carry them under equivar's names already: rename "
                             "their fields or build the graphs from the ase.Atoms")
        graphs = []
        for k, item in enumerate(items):
            try:
                if n_atoms:
                    graphs.append(from_ase(item, cutoff, dtype=dtype, labels=labels))
                else:
                    graphs.append(_rebuild(item, cutoff, dtype))
            except (ValueError, TypeError) as err:
                raise type(err)(f"structure {k}: {err}") from err
        self._graphs: list[Data] = graphs
        self._atoms: list[ase.Atoms] | None = items if n_atoms else None
        self._cutoff = float(cutoff)
        self._labels = (labels or LabelKeys()) if n_atoms else None

    @classmethod
    def _from_cache(
        cls,
        graphs: list[Data],
        atoms: list[ase.Atoms] | None,
        cutoff: float,
        labels: LabelKeys | None,
    ) -> AtomsDataset:
        """A dataset over already-built graphs (used by :meth:`subset`; no work is redone)."""
        obj = cls.__new__(cls)
        obj._graphs, obj._atoms, obj._cutoff, obj._labels = graphs, atoms, cutoff, labels
        return obj

    @property
    def cutoff(self) -> float:
        """The neighbour cutoff (Angstrom) every graph was built with."""
        return self._cutoff

    @property
    def labels(self) -> LabelKeys | None:
        """The keys the labels were read from (None if built from ``Data``, whose fields were
        named already); rebuilding from :attr:`atoms` needs the same."""
        return self._labels

    @property
    def atoms(self) -> list[ase.Atoms] | None:
        """The source ``ase.Atoms`` (same objects, not copies), or None if built from ``Data``."""
        return None if self._atoms is None else list(self._atoms)

    def __len__(self) -> int:
        return len(self._graphs)

    def __getitem__(self, index: int) -> Data:
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise TypeError(f"index must be an integer, got {type(index).__name__}")
        return self._graphs[int(index)]

    def __iter__(self) -> Iterator[Data]:
        return iter(self._graphs)

    def __repr__(self) -> str:
        return f"AtomsDataset({len(self)} graphs, cutoff={self._cutoff:g})"

    def subset(self, indices: Sequence[int]) -> AtomsDataset:
        """The graphs at ``indices`` (in that order) as a new dataset sharing the cache."""
        idx = [int(i) for i in indices]
        atoms = None if self._atoms is None else [self._atoms[i] for i in idx]
        return self._from_cache([self._graphs[i] for i in idx], atoms, self._cutoff,
                                self._labels)


def loader(dataset: Any, batch_size: int, shuffle: bool = False, **kwargs: Any) -> DataLoader:
    """A ``torch_geometric.loader.DataLoader`` over ``dataset`` (graphs batched into a ``Batch``).

    Args:
        dataset: an :class:`AtomsDataset`, a :class:`~equivar.data.ShardedDataset` (read by
            the workers with ``num_workers > 0``) or any sequence of ``Data``.
        batch_size: graphs per batch.
        shuffle: reshuffle every epoch. Default False.
        **kwargs: passed to the DataLoader (``num_workers``, ``drop_last``, ``generator`` ...).

    Returns:
        The loader; each batch has the fields of the graphs plus ``batch`` and ``ptr``.

    Raises:
        ValueError: if the graphs do not all carry the same fields (PyG cannot batch those; e.g.
            a molecule without ``stress`` next to a crystal with one). Checked for in-memory
            datasets; shards hold the same fields in every structure by construction.
    """
    from torch_geometric.loader import DataLoader

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(dataset, (AtomsDataset, Sequence)) and len(dataset) > 0:
        first = set(dataset[0].keys())
        for k in range(1, len(dataset)):
            fields = set(dataset[k].keys())
            if fields != first:
                raise ValueError(
                    f"dataset: structure {k} has fields {sorted(fields)} but structure 0 has "
                    f"{sorted(first)}; graphs batched together must carry the same fields "
                    f"(differing: {sorted(fields ^ first)})"
                )
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, **kwargs)
