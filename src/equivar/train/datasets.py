"""The structures a run trains, validates and tests on: the config's files or objects passed to
``fit``, as datasets of graphs at the model's cutoff and dtype, with the held-out splits."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from equivar import keys as K
from equivar.train.config import TrainConfig
from equivar.train.split import OBJECT_MARK, held_out

if TYPE_CHECKING:
    from collections.abc import Sequence

    import ase
    from torch_geometric.data import Data

    from equivar.data import AtomsDataset, LabelKeys, ShardedDataset

    #: What ``fit(train=..., valid=..., test=...)`` takes.
    DataObject = AtomsDataset | ShardedDataset | Sequence[ase.Atoms] | Sequence[Data] | None

__all__ = ["as_dataset", "describe_object", "resolve_datasets"]


def describe_object(value: Any) -> str:
    """How a recorded config names structures given as an object (never a readable path)."""
    from equivar.data import ShardedDataset

    if isinstance(value, ShardedDataset):
        return f"{OBJECT_MARK}ShardedDataset, {len(value)} structures from {str(value.path)!r}>"
    if isinstance(value, (list, tuple)):
        kinds = "/".join(sorted({type(v).__name__ for v in value}))
        return f"{OBJECT_MARK}in-memory {type(value).__name__} of {len(value)} {kinds}>"
    return f"{OBJECT_MARK}in-memory {type(value).__name__}, {len(value)} structures>"


def as_dataset(value: DataObject, name: str, cutoff: float, dtype: torch.dtype,
                labels: LabelKeys):
    """``fit``'s ``train``/``valid``/``test`` argument as a dataset of graphs at ``cutoff`` in
    ``dtype`` (None stays None).

    Lists of ``ase.Atoms`` (or of ``Data``) become an :class:`~equivar.data.AtomsDataset`, the
    Atoms' labels read with ``labels`` (the config's label keys). Datasets in another dtype are
    rebuilt in the training one (from their ``ase.Atoms`` when they have them, so float64
    graphs are exact); datasets built at another cutoff, or from Atoms with other label keys,
    are refused, since their edges would not be the model's, or the run would record keys its
    labels were not read with.

    Raises:
        TypeError: any other kind of object (the message names the argument).
        ValueError: an empty dataset or list, a dataset built at another cutoff or with other
            label keys, or Atoms without a label the keys name.
    """
    import ase
    from torch_geometric.data import Data

    from equivar.data import AtomsDataset, ShardedDataset

    if value is None:
        return None
    where = f"fit({name}=...)"
    if isinstance(value, (AtomsDataset, ShardedDataset)):
        kind = type(value).__name__
        if len(value) == 0:
            raise ValueError(f"{where}: the {kind} holds no structures")
        if float(value.cutoff) != float(cutoff):
            raise ValueError(
                f"{where}: the {kind} was built with cutoff {value.cutoff:g} but data.cutoff (the "
                f"model's cutoff) is {cutoff:g}; set data.cutoff={value.cutoff:g} or build the "
                f"dataset with cutoff={cutoff:g}"
            )
        if value.labels is not None and value.labels != labels:  # None: built from Data
            raise ValueError(
                f"{where}: the {kind} was built with {value.labels} but the config has "
                f"{labels}; set data.energy_key etc. to the keys the dataset was built with, "
                f"or build it with labels={labels!r}"
            )
        if isinstance(value, ShardedDataset):  # builds each graph on access: in our dtype
            return value if value.dtype == dtype else value.with_dtype(dtype)
        if value[0][K.POSITIONS].dtype == dtype:
            return value
        if value.atoms is not None:
            return AtomsDataset(value.atoms, cutoff, dtype=dtype, labels=value.labels)
        return AtomsDataset(list(value), cutoff, dtype=dtype)
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"{where} is an empty {type(value).__name__}")
        if all(isinstance(v, (ase.Atoms, Data)) for v in value):
            try:
                if all(isinstance(v, ase.Atoms) for v in value):
                    return AtomsDataset(value, cutoff, dtype=dtype, labels=labels)
                return AtomsDataset(value, cutoff, dtype=dtype)
            except (TypeError, ValueError) as err:
                raise type(err)(f"{where}: {err}") from err
        kinds = sorted({type(v).__name__ for v in value})
        raise TypeError(f"{where} must hold ase.Atoms (or torch_geometric Data), got a "
                        f"{type(value).__name__} of {kinds}")
    hint = ("; file paths go in the config (data.train, data.valid, data.test)"
            if isinstance(value, (str, Path)) else "")
    raise TypeError(f"{where} must be an equivar.data.AtomsDataset, an equivar.data."
                    f"ShardedDataset, a list of ase.Atoms or None, got {type(value).__name__}"
                    f"{hint}")


def resolve_datasets(
    config: TrainConfig,
    dtype: torch.dtype,
    train: DataObject = None,
    valid: DataObject = None,
    test: DataObject = None,
):
    """``(train, valid, test)`` datasets: the objects given (see :func:`as_dataset`), else
    the config's files; held-out fractions of ``train`` for whichever of valid/test is
    neither (:func:`equivar.train.split.held_out`, which ``equivar evaluate`` uses too). The
    split depends on ``data.seed`` and the training set only, so the same objects give the same
    split on ``--resume``."""
    from equivar.data import read

    d = config.data
    given = {"train": train, "valid": valid, "test": test}
    for name, value in given.items():
        path = getattr(d, name)
        if value is None and path.startswith(OBJECT_MARK):
            raise ValueError(
                f"data.{name} is {path!r}: this run's {name} structures were passed to fit() "
                f"as an object; pass them again (fit(config, {name}=..., resume=True))"
            )
    if train is None and not d.train:
        raise ValueError("data.train must name a file of training structures (or pass them to "
                         "fit(config, train=...))")
    labels = d.label_keys()
    train = as_dataset(train, "train", d.cutoff, dtype, labels)
    valid = as_dataset(valid, "valid", d.cutoff, dtype, labels)
    test = as_dataset(test, "test", d.cutoff, dtype, labels)
    keys = labels.as_dict()  # every file is read with the config's label keys
    if train is None:
        index = f":{d.max_structures}" if d.max_structures else ":"
        train = read(d.train, d.cutoff, index=index, dtype=dtype, **keys)
    elif d.max_structures and d.max_structures < len(train):
        train = train.subset(range(d.max_structures))
    if valid is None and d.valid:
        valid = read(d.valid, d.cutoff, dtype=dtype, **keys)
    if test is None and d.test:
        test = read(d.test, d.cutoff, dtype=dtype, **keys)
    return held_out(train, d, valid=valid, test=test)
