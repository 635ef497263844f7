"""Reading structures into an :class:`~equivar.data.AtomsDataset`, and writing equivar ``.npz``.

Formats:
    * anything ``ase.io.read`` reads (extxyz, xyz, cif, traj, ...), through ASE;
    * ``.npz``, equivar's layout (written by :func:`write_npz`)::

        z [total_atoms] int, pos [total_atoms, 3], n_atoms [n_frames] int,
        cell [n_frames, 3, 3] (optional), pbc [n_frames, 3] bool (optional),
        total_charge [n_frames], spin [n_frames] (optional),
        per_atom_keys [k] str: names of the per-atom targets (leading axis total_atoms);
        every other array is a per-frame target (leading axis n_frames).

    * ``.npz``, MD17/sGDML layout: ``R [F, N, 3]``, ``z [N]``, optional ``E [F]`` or ``[F, 1]``
      and ``F [F, N, 3]``. Energies and forces are taken as they are, **in the file's units**
      (MD17/sGDML files use kcal/mol and kcal/mol/Angstrom, not eV); convert them yourself.
    * HDF5 shards (a directory with ``manifest.json``, see :mod:`equivar.data.shards`), read
      lazily as a :class:`~equivar.data.ShardedDataset`.

Labels kept under keys of their own (MACE's ``energy_key="REF_energy"`` ...) are read with
``read(..., energy_key=..., forces_key=..., stress_key=..., virial_key=...)``; see
:mod:`equivar.data.labels` for where each is looked up.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from equivar import keys as K
from equivar.atomic import atomic_write
from equivar.data.dataset import AtomsDataset
from equivar.data.frames import NOT_TARGETS, frame_fields
from equivar.data.graph import make_atoms
from equivar.data.labels import LabelKeys, check_atoms_labels
from equivar.data.shard_format import is_shard_path
from equivar.data.shard_reader import ShardedDataset

if TYPE_CHECKING:
    import ase
    from torch_geometric.data import Data

__all__ = ["iread", "read", "write_npz"]

_NPZ_STRUCTURE = {"z", "pos", "n_atoms", "cell", "pbc", "total_charge", "spin", "per_atom_keys"}


def read(
    path: str | os.PathLike,
    cutoff: float,
    *,
    index: int | slice | str = ":",
    dtype: torch.dtype | None = None,
    energy_key: str = K.ENERGY,
    forces_key: str = K.FORCES,
    stress_key: str = K.STRESS,
    virial_key: str = K.VIRIAL,
) -> AtomsDataset | ShardedDataset:
    """Read a file of structures (with their targets) into a dataset of graphs.

    Args:
        path: ``.npz`` (equivar or MD17/sGDML layout, see the module docstring), any file
            ``ase.io.read`` understands (extxyz, ...), or HDF5 shards written by
            :func:`~equivar.data.write_shards` / ``equivar convert`` (their directory or its
            ``manifest.json``).
        cutoff: neighbour cutoff radius (Angstrom).
        index: which frames, in ASE's syntax (``":"``, ``"-10:"``, ``"::2"``, an int or a slice).
            Default ``":"``: all.
        dtype: floating dtype of the graphs. Default: ``torch.get_default_dtype()``.
        energy_key: where each frame keeps its energy: ``atoms.info[energy_key]`` or the
            calculator's result (extxyz ``energy=`` lands there). Default ``"energy"``.
        forces_key: where it keeps its forces: ``atoms.arrays[forces_key]`` (an extxyz
            ``Properties`` column) or the calculator's. Default ``"forces"``.
        stress_key: where it keeps its stress (3x3, 6 Voigt or 9 values), like the energy.
            Default ``"stress"``.
        virial_key: where it keeps its virial (eV), like the stress. Default ``"virial"``.
            In ``.npz`` files and shards each key names an array / stored field. The labels are
            stored under equivar's names (``energy``, ``forces``, ...) and the keys they came
            from are dropped. A key left at its default is optional (unlabelled files read as
            before); any other key must be in every frame (see :mod:`equivar.data.labels`).

    Returns:
        An :class:`AtomsDataset` (its ``.atoms`` are the frames read, labels under the file's
        keys), or for shards a lazy :class:`~equivar.data.ShardedDataset` that reads and builds
        each graph on access.

    Raises:
        ValueError: a frame without a label whose key is not the default; the message names
            the file, the frame, the key, the keys the frame has and the closest of them.

    Example:
        >>> ds = read("train.extxyz", cutoff=5.0)  # doctest: +SKIP
        >>> big = read("train_shards/", cutoff=5.0)  # lazy: nothing is loaded yet  # doctest: +SKIP
        >>> mace = read("train.xyz", cutoff=5.0, energy_key="REF_energy",
        ...             forces_key="REF_forces")  # doctest: +SKIP
    """
    labels = LabelKeys(energy_key=energy_key, forces_key=forces_key, stress_key=stress_key,
                       virial_key=virial_key)
    p = Path(path)
    if is_shard_path(p):
        dataset = ShardedDataset(p, cutoff, dtype=dtype, labels=labels)
        chosen = _frame_selection(len(dataset), index)
        return dataset if len(chosen) == len(dataset) else dataset.subset(chosen)
    if p.is_dir():
        raise FileNotFoundError(
            f"path {str(p)!r} is a directory without a shard manifest (manifest.json); give a "
            "structure file or a directory written by `equivar convert`"
        )
    if not p.is_file():
        raise FileNotFoundError(f"path {str(p)!r} does not exist or is not a file")
    frames = list(_with_labels(iread(p, index), labels, p, index))
    if not frames:  # a blank or truncated file is not "0 structures, success"
        chosen = "" if index == ":" else f" at index {index!r}"
        raise ValueError(f"path {str(p)!r} holds no structures{chosen} (an empty or blank file?)")
    try:
        return AtomsDataset(frames, cutoff, dtype=dtype, labels=labels)
    except ValueError as err:  # "structure k: ..." - add the file it came from
        raise ValueError(f"path {str(p)!r}, {err}") from err


def _atomic_numbers(z: np.ndarray, where: str, name: str) -> np.ndarray:
    """``z`` as int64 after checking it holds whole numbers 1..118: a fractional 6.5 was
    silently truncated to carbon."""
    z = np.asarray(z)
    if z.dtype.kind not in "iuf" or (z.dtype.kind == "f" and not np.isfinite(z).all()):
        raise ValueError(f"{where}: {name} must hold atomic numbers, got dtype {z.dtype}")
    whole = np.round(z)
    if np.any(whole != z):
        k = int(np.flatnonzero(whole != z)[0])
        raise ValueError(f"{where}: {name}[{k}] = {float(z.flat[k]):g} is not a whole atomic "
                         "number")
    if z.size and (whole.min() < 1 or whole.max() > 118):
        k = int(np.flatnonzero((whole < 1) | (whole > 118))[0])
        raise ValueError(f"{where}: {name}[{k}] = {float(z.flat[k]):g} is not an element "
                         "(1..118)")
    return whole.astype(np.int64)


def _with_labels(
    frames: Iterable[ase.Atoms], labels: LabelKeys, path: Path, index: int | slice | str
) -> Iterator[ase.Atoms]:
    """``frames``, each checked for its labels; an error names the file and the frame."""
    for k, atoms in enumerate(frames):
        try:
            check_atoms_labels(atoms, labels)
        except ValueError as err:
            raise ValueError(f"path {str(path)!r}, {_frame_name(k, index)}: {err}") from None
        yield atoms


def _frame_name(k: int, index: int | slice | str) -> str:
    """How an error names the ``k``-th frame read with ``index``: its number in the file when
    the selection says it without counting the frames (``":"``, ``"10:"``, ``"::2"``, ``3``)."""
    from ase.io.formats import string2index

    sel = string2index(index) if isinstance(index, str) else index
    if isinstance(sel, (int, np.integer)) and sel >= 0:
        return f"frame {int(sel)}"
    if isinstance(sel, slice) and (sel.start or 0) >= 0 and (sel.step or 1) > 0:
        return f"frame {(sel.start or 0) + k * (sel.step or 1)}"
    return f"frame {k} of those chosen by index={index!r}"


def iread(path: str | os.PathLike, index: int | slice | str = ":") -> Iterator[ase.Atoms]:
    """Structures of a file one at a time, with their targets (what :func:`read` builds graphs
    of); extxyz and other ASE formats are streamed, ``.npz`` arrays are loaded once.

    Args:
        path: ``.npz`` (equivar or MD17/sGDML layout) or any file ``ase.io.read`` understands.
        index: which frames, in ASE's syntax. Default ``":"``: all.

    Returns:
        An iterator of ``ase.Atoms``.

    Example:
        >>> n = sum(1 for _ in iread("train.extxyz"))  # doctest: +SKIP
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"path {str(p)!r} does not exist or is not a file")
    if p.suffix.lower() == ".npz":
        return _iter_npz(p, index)
    return _iter_ase(p, index)


def _iter_ase(path: Path, index: int | slice | str) -> Iterator[ase.Atoms]:
    """Frames through ``ase.io.iread`` (streamed); an unknown format or a malformed frame (a
    truncated file, a wrong atom-count line, an unknown element) becomes a ValueError naming the
    file and the frame, never the parser's own traceback."""
    import ase.io
    from ase.io.formats import UnknownFileTypeError

    if path.stat().st_size == 0:  # ase calls it an unknown format; it holds no structures
        return
    frames = ase.io.iread(path, index=index)
    k = 0
    while True:
        try:
            atoms = next(frames, None)
        except UnknownFileTypeError as err:
            raise ValueError(
                f"path {str(path)!r}: unknown file format (extension {path.suffix!r}); use .npz "
                f"or a format ase.io.read understands, e.g. .extxyz ({err})"
            ) from err
        except KeyError as err:  # ase's symbol table: an element that does not exist
            raise ValueError(f"path {str(path)!r}, {_frame_name(k, index)}: unknown element "
                             f"symbol {err.args[0]!r}") from err
        except (ValueError, IndexError, TypeError, AssertionError, OSError, RuntimeError,
                StopIteration) as err:  # XYZError is a ValueError; a cut file ends a generator
            raise ValueError(f"path {str(path)!r}, {_frame_name(k, index)}: malformed or "
                             f"truncated ({type(err).__name__}: {err})") from err
        if atoms is None:
            return
        yield atoms
        k += 1


def _frame_selection(n_frames: int, index: int | slice | str) -> list[int]:
    """Frame numbers chosen by an ASE-style ``index``."""
    from ase.io.formats import string2index

    sel = string2index(index) if isinstance(index, str) else index
    frames = list(range(n_frames))
    if isinstance(sel, slice):
        return frames[sel]
    if isinstance(sel, (int, np.integer)):
        if not -n_frames <= sel < n_frames:
            raise ValueError(f"index {sel} is out of range for {n_frames} frames")
        return [frames[sel]]
    raise TypeError(f"index must be an int, a slice or a string, got {type(index).__name__}")


def _iter_npz(path: Path, index: int | slice | str) -> Iterator[ase.Atoms]:
    """Frames of an equivar or MD17/sGDML ``.npz`` file as ``ase.Atoms`` with their targets
    (the layout is checked before the first frame is made)."""
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic[:2] != b"PK":  # np.load would try to unpickle it (refused: allow_pickle=False)
        raise ValueError(f"path {str(path)!r} is not an .npz file (a zip archive of arrays): it "
                         f"starts with {magic!r}")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {key: f[key] for key in f.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as err:
        raise ValueError(f"path {str(path)!r} is a corrupt or truncated .npz file "
                         f"({type(err).__name__}: {err})") from err
    if "n_atoms" in arrays:
        return _read_equivar_npz(arrays, path, index)
    if "R" in arrays:
        return _read_md17_npz(arrays, path, index)
    raise ValueError(
        f"path {str(path)!r}: unrecognised .npz layout, found keys {sorted(arrays)}; expected "
        "equivar's (z, pos, n_atoms, ...) or MD17/sGDML's (R, z, E, F)"
    )


def _require(arrays: dict, names: Iterable[str], path: Path, layout: str) -> None:
    missing = [n for n in names if n not in arrays]
    if missing:
        raise ValueError(
            f"path {str(path)!r}: {layout} .npz is missing required key(s) {missing}; "
            f"found {sorted(arrays)}"
        )


def _read_equivar_npz(arrays: dict, path: Path, index: int | slice | str) -> Iterator[ase.Atoms]:
    _require(arrays, ["z", "pos", "n_atoms"], path, "equivar")
    where = f"path {str(path)!r}"
    arrays = {**arrays, "z": _atomic_numbers(arrays["z"], where, "z")}
    n_atoms = arrays["n_atoms"].astype(np.int64).reshape(-1)  # [n_frames]
    n_frames, total = len(n_atoms), int(n_atoms.sum())
    if np.any(n_atoms < 0):
        raise ValueError(f"{where}: n_atoms has negative entries")
    if arrays["z"].shape != (total,) or arrays["pos"].shape != (total, 3):
        raise ValueError(
            f"{where}: n_atoms sums to {total} but z has shape {arrays['z'].shape} and pos "
            f"{arrays['pos'].shape} (expected [{total}] and [{total}, 3])"
        )
    per_atom = {str(k) for k in arrays.get("per_atom_keys", np.zeros(0, dtype=str)).tolist()}
    expected = {"cell": (n_frames, 3, 3), "pbc": (n_frames, 3)}
    for key, shape in expected.items():
        if key in arrays and arrays[key].shape != shape:
            raise ValueError(f"{where}: {key} has shape {arrays[key].shape}, expected {shape}")
    targets = {k: v for k, v in arrays.items() if k not in _NPZ_STRUCTURE}
    inputs = [(k, arrays[k]) for k in ("total_charge", "spin") if k in arrays]
    for key, value in [*targets.items(), *inputs]:
        lead = total if key in per_atom else n_frames
        if value.ndim == 0 or value.shape[0] != lead:
            kind = "per-atom (total_atoms)" if key in per_atom else "per-frame (n_frames)"
            raise ValueError(
                f"{where}: {key} has shape {value.shape}, expected leading axis {lead} {kind}"
            )
    missing = sorted(per_atom - set(targets))
    if missing:
        raise ValueError(f"{where}: per_atom_keys names {missing}, which are not in the file")
    starts = np.concatenate([[0], np.cumsum(n_atoms)])  # [n_frames + 1]

    def frame(f: int) -> ase.Atoms:
        a, b = starts[f], starts[f + 1]
        cell = arrays["cell"][f] if "cell" in arrays else None
        pbc = arrays["pbc"][f] if "pbc" in arrays else None
        if pbc is None and cell is not None:
            pbc = np.linalg.norm(cell, axis=-1) > 0
        return make_atoms(
            arrays["z"][a:b],
            arrays["pos"][a:b],
            cell,
            pbc,
            total_charge=arrays["total_charge"][f] if "total_charge" in arrays else None,
            spin=arrays["spin"][f] if "spin" in arrays else None,
            graph_targets={k: v[f] for k, v in targets.items() if k not in per_atom},
            node_targets={k: v[a:b] for k, v in targets.items() if k in per_atom},
        )

    return map(frame, _frame_selection(n_frames, index))  # checked above, built on demand


def _read_md17_npz(arrays: dict, path: Path, index: int | slice | str) -> Iterator[ase.Atoms]:
    _require(arrays, ["R", "z"], path, "MD17/sGDML")
    where = f"path {str(path)!r}"
    if "lattice" in arrays:
        raise ValueError(f"{where}: periodic sGDML files ('lattice') are not supported")
    pos, z = arrays["R"], _atomic_numbers(arrays["z"].reshape(-1), where, "z")
    if pos.ndim != 3 or pos.shape[2] != 3 or pos.shape[1] != len(z):
        raise ValueError(f"{where}: R has shape {pos.shape}, expected [n_frames, {len(z)}, 3]")
    n_frames = pos.shape[0]
    energy = arrays.get("E")
    if energy is not None:
        if energy.shape not in ((n_frames,), (n_frames, 1)):
            raise ValueError(
                f"{where}: E has shape {energy.shape}, expected [{n_frames}] or [F, 1]"
            )
        energy = energy.reshape(n_frames)
    forces = arrays.get("F")
    if forces is not None and forces.shape != pos.shape:
        raise ValueError(f"{where}: F has shape {forces.shape}, expected {pos.shape} like R")

    def frame(f: int) -> ase.Atoms:
        graph = {} if energy is None else {K.ENERGY: np.float64(energy[f])}
        node = {} if forces is None else {K.FORCES: forces[f]}
        return make_atoms(z, pos[f], graph_targets=graph, node_targets=node)

    return map(frame, _frame_selection(n_frames, index))  # checked above, built on demand


def write_npz(path: str | os.PathLike, structures: Iterable[ase.Atoms | Data]) -> None:
    """Write structures and their targets to an equivar ``.npz`` (read back by :func:`read`).

    The file is written to a temporary name and renamed, so a crash never leaves half a file.

    Args:
        path: destination, normally ending in ``.npz``.
        structures: ``ase.Atoms`` or graphs (``Data``, an :class:`AtomsDataset`); every frame
            must carry the same targets with the same per-frame shapes.

    Shapes:
        see the module docstring for the arrays written.
    """
    frames = [frame_fields(item) for item in structures]
    if not frames:
        raise ValueError("structures is empty: nothing to write")
    node_keys = set().union(*(nk for _, nk in frames))
    target_keys = set(frames[0][0]) - NOT_TARGETS
    for k, (fields, _) in enumerate(frames):
        keys_k = set(fields) - NOT_TARGETS
        if keys_k != target_keys:
            raise ValueError(
                f"structure {k} has targets {sorted(keys_k)} but structure 0 has "
                f"{sorted(target_keys)}; every frame must carry the same targets"
            )
    out: dict[str, np.ndarray] = {
        "z": np.concatenate([f[K.ATOMIC_NUMBERS] for f, _ in frames]).astype(np.int64),
        "pos": np.concatenate([f[K.POSITIONS] for f, _ in frames]),  # [total_atoms, 3]
        "n_atoms": np.array([len(f[K.ATOMIC_NUMBERS]) for f, _ in frames], dtype=np.int64),
        "cell": np.concatenate([f[K.CELL].reshape(1, 3, 3) for f, _ in frames]),
        "pbc": np.concatenate([f[K.PBC].reshape(1, 3) for f, _ in frames]).astype(bool),
        "per_atom_keys": np.array(sorted(node_keys & target_keys), dtype=np.str_),
    }
    for key in (K.TOTAL_CHARGE, K.SPIN):
        if all(key in f for f, _ in frames):
            out[key] = np.concatenate([f[key].reshape(1) for f, _ in frames])  # [n_frames]
    for key in sorted(target_keys):
        parts = [f[key] for f, _ in frames]  # node: [n_atoms, ...]; graph: [1, ...]
        try:
            out[key] = np.concatenate(parts)
        except ValueError as err:
            raise ValueError(f"target {key!r} has different shapes across structures") from err
    atomic_write(path, lambda handle: np.savez(handle, **out))
