"""Conversion between ``ase.Atoms`` and equivar graphs (``torch_geometric.data.Data``).

A graph carries the structure fields of :mod:`equivar.keys` (``pos, z, cell, pbc, edge_index,
shifts, total_charge, spin``) plus every numeric target the ``Atoms`` carries, gathered from
(later sources win on a name clash) ``atoms.info`` (graph level), ``atoms.arrays`` (node level) and
the attached calculator's ``results`` (``ase.io.read`` puts extxyz energies/forces there).
Labels kept under keys of their own (``REF_energy``, ...) are moved to equivar's names as a
:class:`~equivar.data.LabelKeys` says (see :mod:`equivar.data.labels`).

Names that PyG treats specially are skipped: anything containing ``"index"`` or equal to
``"face"`` (PyG would offset it by the node count when batching), the structure keys, ``batch``,
``ptr`` and names of ``Data`` methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from equivar import keys as K
from equivar.data.labels import KEY_FIELDS, LabelKeys, check_atoms_labels, missing_label
from equivar.data.neighbors import radius_graph
from equivar.data.validation import (
    MIN_DISTANCE,
    check_cutoff,
    check_edge_lengths,
    validate_structure,
)

if TYPE_CHECKING:
    import ase
    from torch_geometric.data import Data

__all__ = ["from_ase", "to_ase"]

#: Calculator results that are per atom (leading axis ``n_nodes``); all others are per graph.
_NODE_RESULTS = {"forces", "charges", "magmoms", "energies", "stresses", "born_effective_charges"}
#: ASE calculator names -> equivar names (both directions).
_FROM_ASE_NAME = {"energies": K.NODE_ENERGY}
_TO_ASE_NAME = {v: k for k, v in _FROM_ASE_NAME.items()}
#: Per-atom arrays that describe the structure or its dynamics, not a target.
_ASE_INTERNAL_ARRAYS = {
    "numbers", "positions", "momenta", "masses", "tags", "initial_charges", "initial_magmoms"
}  # fmt: skip
#: ``atoms.info`` entries read as inputs (total charge, spin multiplicity), not targets.
_INPUT_INFO = {"charge", "spin"}
#: Fields never copied as targets: structure, PyG bookkeeping.
_RESERVED = set(K.STRUCTURE_KEYS) | {K.NUM_NODES, K.PTR, K.EDGE_VECTORS, K.EDGE_LENGTHS}


def _voigt_to_full(v: np.ndarray) -> np.ndarray:
    """ASE Voigt ``(xx, yy, zz, yz, xz, xy)`` -> symmetric 3x3: ``[..., 6] -> [..., 3, 3]``."""
    xx, yy, zz, yz, xz, xy = np.moveaxis(v, -1, 0)
    rows = [[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def full_to_voigt(m: np.ndarray) -> np.ndarray:
    """Symmetric 3x3 -> ASE Voigt order ``(xx, yy, zz, yz, xz, xy)``; ``[..., 3, 3] -> [..., 6]``.

    Example:
        >>> full_to_voigt(np.diag([1.0, 2.0, 3.0])).tolist()
        [1.0, 2.0, 3.0, 0.0, 0.0, 0.0]
    """
    return np.stack(
        [m[..., 0, 0], m[..., 1, 1], m[..., 2, 2], m[..., 1, 2], m[..., 0, 2], m[..., 0, 1]], -1
    )


# The former private name, which equivar.simulate.calculator still imports; new code uses
# full_to_voigt.
_full_to_voigt = full_to_voigt


def _usable_key(key: str) -> bool:
    """True if ``key`` can be stored on a ``Data`` and batched without PyG special-casing it."""
    from torch_geometric.data import Data

    if not isinstance(key, str) or key in _RESERVED or "index" in key or key == "face":
        return False
    return not callable(getattr(Data, key, None))


def _to_tensor(value: Any, dtype: torch.dtype) -> torch.Tensor | None:
    """Floats -> ``dtype``, integers -> int64; anything else (strings, booleans, objects) ->
    None, i.e. skipped: flags and masks are not targets."""
    try:
        arr = np.asarray(value)
    except ValueError:  # ragged lists and the like are not targets
        return None
    if arr.dtype.kind == "f":
        return torch.as_tensor(arr, dtype=dtype)
    if arr.dtype.kind in "iu":
        return torch.as_tensor(arr.astype(np.int64))
    return None


def _graph_target(key: str, value: Any, dtype: torch.dtype) -> torch.Tensor | None:
    """A graph-level target with a leading axis of 1; Voigt stresses and virials become 3x3."""
    t = _to_tensor(value, dtype)
    if t is None:
        return None
    if key in (K.STRESS, K.VIRIAL) and t.shape == (6,):
        t = torch.as_tensor(_voigt_to_full(t.numpy()), dtype=dtype)  # [3, 3]
    return t.unsqueeze(0)  # [1, ...]


def _node_target(key: str, value: Any, n: int, dtype: torch.dtype) -> torch.Tensor | None:
    """A node-level target ``[n_nodes, ...]``; per-atom Voigt stresses become 3x3."""
    t = _to_tensor(value, dtype)
    if t is None:
        return None
    if t.dim() == 0 or t.shape[0] != n:
        raise ValueError(f"per-atom target {key!r} has shape {tuple(t.shape)}, expected [{n}, ...]")
    if key == "stresses" and t.shape == (n, 6):
        t = torch.as_tensor(_voigt_to_full(t.numpy()), dtype=dtype)  # [n_nodes, 3, 3]
    return t


def relabel(fields: dict, node_keys: set[str], labels: LabelKeys | None) -> None:
    """Move the labels kept under keys of their own to equivar's names, in place (the key
    they came from is dropped; a same-named field, e.g. the calculator's ``energy`` when
    ``energy_key="REF_energy"``, is replaced). Stress and virial become 3x3; integer labels
    become the floating dtype of ``pos``.

    Args:
        fields: a structure's fields (``pos`` and the targets, graph-level with a leading axis
            of 1); modified.
        node_keys: names of the per-atom fields; modified.
        labels: the keys; None or the defaults change nothing.

    Raises:
        ValueError: a label missing, per atom where it should be per frame (or the reverse), or
            of the wrong shape; the message names the label and its key.

    Shapes:
        energy ``[1]``; forces ``[n_nodes, 3]``; stress, virial ``[1, 3, 3]`` (from ``[1, 6]``
        Voigt or ``[1, 9]`` row-major values too).
    """
    renamed = {} if labels is None else labels.renamed()
    if not renamed:
        return
    for target, key in renamed.items():
        if key not in fields:
            raise ValueError(missing_label(target, key, {"fields": sorted(
                k for k in fields if k not in _RESERVED)}))
    # take every source out before storing any: stress_key="virial", virial_key="stress" swap
    values = {t: (fields.pop(k), k in node_keys) for t, k in renamed.items()}
    node_keys.difference_update(renamed.values())
    n, dtype = fields[K.POSITIONS].shape[0], fields[K.POSITIONS].dtype
    for target, (value, node) in values.items():
        name = f"the {target} label {renamed[target]!r} ({KEY_FIELDS[target]})"
        per_atom = K.FIELDS[target].level == "node"
        if node != per_atom:
            raise ValueError(f"{name} is per {'atom' if node else 'frame'}; it must be per "
                             f"{'atom' if per_atom else 'frame'}")
        if not value.is_floating_point():  # extxyz reads "energy=-5" as an integer
            value = value.to(dtype)
        if target in (K.STRESS, K.VIRIAL) and value.shape == (1, 6):
            value = torch.as_tensor(_voigt_to_full(value.numpy()), dtype=value.dtype)
        elif target in (K.STRESS, K.VIRIAL) and value.shape == (1, 9):
            value = value.reshape(1, 3, 3)  # [1, 3, 3]
        expected = (n, 3) if target == K.FORCES else {K.ENERGY: (1,)}.get(target, (1, 3, 3))
        if tuple(value.shape) != expected:
            what = "one number per frame" if target == K.ENERGY else f"shape {list(expected)}"
            raise ValueError(f"{name} has shape {list(value.shape)}, expected {what}")
        fields[target] = value
        (node_keys.add if per_atom else node_keys.discard)(target)


def atoms_fields(
    atoms: ase.Atoms, dtype: torch.dtype | None = None, *, labels: LabelKeys | None = None
) -> tuple[dict, set[str]]:
    """Every field of a graph except the edges, and the names of the node-level targets.

    Args:
        atoms: the structure (not modified).
        dtype: floating dtype of positions, cell and float targets. Default: torch's default.
        labels: keys under which the structure keeps its energy, forces, stress and virial
            (see :mod:`equivar.data.labels`). Default: equivar's names.

    Returns:
        ``(fields, node_keys)``: a dict of tensors named as in :mod:`equivar.keys`, and the set of
        target names whose leading axis is ``n_nodes``.
    """
    import ase

    if not isinstance(atoms, ase.Atoms):
        raise TypeError(f"atoms must be an ase.Atoms, got {type(atoms).__name__}")
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating dtype, got {dtype}")
    n = len(atoms)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    cell = atoms.cell.array if pbc.any() else np.zeros((3, 3))
    charge = atoms.info.get("charge", atoms.get_initial_charges().sum())
    spin = atoms.info.get("spin", 1.0)
    for field, value in (("info['charge']", charge), ("info['spin']", spin)):
        if np.ndim(value) != 0 or isinstance(value, (str, bytes)) or not np.isfinite(value):
            raise ValueError(f"atoms.{field} must be a finite number, got {value!r}")
    if float(spin) < 1:
        raise ValueError(f"atoms.info['spin'] is the multiplicity 2S+1 >= 1, got {spin!r}")
    fields: dict[str, torch.Tensor] = {
        K.POSITIONS: torch.as_tensor(atoms.positions, dtype=dtype),  # [n_nodes, 3]
        K.ATOMIC_NUMBERS: torch.as_tensor(atoms.numbers, dtype=torch.int64),  # [n_nodes]
        K.CELL: torch.as_tensor(cell, dtype=dtype).unsqueeze(0),  # [1, 3, 3]
        K.PBC: torch.as_tensor(pbc).unsqueeze(0),  # [1, 3]
        K.TOTAL_CHARGE: torch.tensor([float(charge)], dtype=dtype),  # [1]
        K.SPIN: torch.tensor([float(spin)], dtype=dtype),  # [1]
    }
    node_keys: set[str] = set()

    def put(key: str, value: Any, node: bool) -> None:
        if not _usable_key(key):
            return
        t = _node_target(key, value, n, dtype) if node else _graph_target(key, value, dtype)
        if t is not None:
            fields[key] = t
            (node_keys.add if node else node_keys.discard)(key)

    for key, value in atoms.info.items():
        if key not in _INPUT_INFO:
            put(key, value, node=False)
    for key, value in atoms.arrays.items():
        if key not in _ASE_INTERNAL_ARRAYS:
            put(key, value, node=True)
    results = getattr(atoms.calc, "results", None) or {}
    for key, value in results.items():
        if value is not None:
            put(_FROM_ASE_NAME.get(key, key), value, node=key in _NODE_RESULTS)
    check_atoms_labels(atoms, labels)  # names what atoms has, before relabel sees only fields
    relabel(fields, node_keys, labels)
    for key, value in fields.items():  # a NaN label would train every step on NaN, silently
        if key not in _RESERVED and value.is_floating_point() and not torch.isfinite(value).all():
            bad = int((~torch.isfinite(value)).sum())
            raise ValueError(f"target {key!r} has {bad} non-finite value(s) (NaN or inf); "
                             "remove the structure or its label")
    return fields, node_keys


def checked_graph(fields: dict, cutoff: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a structure's fields and build its radius graph; the coincident-atom check reads
    the graph's edge lengths instead of running a second neighbour search.

    Shapes:
        fields: ``pos [n_nodes, 3]``, ``z [n_nodes]``, ``cell [1, 3, 3]``, ``pbc [1, 3]``;
        returns ``edge_index [2, n_edges]`` and ``shifts [n_edges, 3]``.
    """
    pos, cell, pbc = fields[K.POSITIONS], fields[K.CELL], fields[K.PBC]
    check_cutoff(cutoff)
    graph_sees_pairs = float(cutoff) > MIN_DISTANCE  # else the edges miss close pairs
    validate_structure(
        pos,
        fields[K.ATOMIC_NUMBERS],
        cell,
        pbc,
        cutoff=cutoff,
        check_distances=not graph_sees_pairs,
    )
    edge_index, shifts = radius_graph(pos, cutoff, cell, pbc)  # [2, n_edges], [n_edges, 3]
    if graph_sees_pairs:
        check_edge_lengths(pos.double(), edge_index, shifts, cell)
    return edge_index, shifts


def from_ase(
    atoms: ase.Atoms,
    cutoff: float,
    *,
    dtype: torch.dtype | None = None,
    labels: LabelKeys | None = None,
) -> Data:
    """Build a validated graph with periodic edges and targets from an ``ase.Atoms``.

    Args:
        atoms: the structure; cells smaller than twice the cutoff are fine.
        cutoff: neighbour cutoff radius (Angstrom).
        dtype: floating dtype of positions, cell, shifts and float targets. Default:
            ``torch.get_default_dtype()``.
        labels: keys under which ``atoms`` keeps its energy, forces, stress and virial, e.g.
            ``LabelKeys(energy_key="REF_energy")`` (see :mod:`equivar.data.labels`). Default:
            equivar's names (``energy``, ``forces``, ``stress``, ``virial``).

    Returns:
        A ``Data`` with ``pos, z, cell, pbc, edge_index, shifts, total_charge, spin`` and the
        targets found (``energy, forces, stress, dipole, charges, ...``). ``cell`` is zero when
        no direction is periodic; ``total_charge`` is ``info['charge']``, else the sum of the
        initial charges; ``spin`` is ``info['spin']`` (multiplicity), else 1.

    Shapes:
        pos: ``[n_nodes, 3]``; z: ``[n_nodes]``; cell: ``[1, 3, 3]``; pbc: ``[1, 3]``;
        edge_index: ``[2, n_edges]``; shifts: ``[n_edges, 3]``; total_charge, spin, energy:
        ``[1]``; forces: ``[n_nodes, 3]``; stress: ``[1, 3, 3]``; dipole: ``[1, 3]``;
        charges: ``[n_nodes]``; other info entries ``[1, ...]``, other arrays ``[n_nodes, ...]``.

    Example:
        >>> from ase.build import bulk
        >>> data = from_ase(bulk("Cu", "fcc", a=3.6), cutoff=3.0)
        >>> data.edge_index.shape, data.shifts.shape
        (torch.Size([2, 12]), torch.Size([12, 3]))
    """
    from torch_geometric.data import Data

    fields, _ = atoms_fields(atoms, dtype, labels=labels)
    fields[K.EDGE_INDEX], fields[K.EDGE_SHIFTS] = checked_graph(fields, cutoff)
    return Data(**fields)


def is_node_level(key: str, value: Any, n_nodes: int) -> bool:
    """Whether a target is per atom: known fields by :data:`equivar.keys.FIELDS`, others by
    their leading axis (an unknown target of a one-atom structure counts as per graph)."""
    if key in K.FIELDS:
        return K.FIELDS[key].level == "node"
    if key in _NODE_RESULTS:
        return True
    shape = tuple(getattr(value, "shape", ()))
    return n_nodes != 1 and len(shape) > 0 and shape[0] == n_nodes


def make_atoms(
    z: Any,
    pos: Any,
    cell: Any = None,
    pbc: Any = None,
    *,
    total_charge: float | None = None,
    spin: float | None = None,
    graph_targets: dict | None = None,
    node_targets: dict | None = None,
) -> ase.Atoms:
    """Assemble an ``ase.Atoms``; calculator properties go to a ``SinglePointCalculator``, other
    graph targets to ``info`` and other node targets to ``arrays``.

    Shapes:
        z: ``[n_nodes]``; pos: ``[n_nodes, 3]``; cell: ``[3, 3]``; pbc: ``[3]``; graph targets
        without the leading graph axis; node targets ``[n_nodes, ...]``.
    """
    import ase
    from ase.calculators.calculator import all_properties
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms = ase.Atoms(numbers=np.asarray(z), positions=np.asarray(pos, dtype=float))
    if cell is not None:
        atoms.cell = np.asarray(cell, dtype=float)
    if pbc is not None:
        atoms.pbc = np.asarray(pbc, dtype=bool)
    if total_charge is not None:
        atoms.info["charge"] = float(total_charge)
    if spin is not None:
        atoms.info["spin"] = float(spin)
    results: dict[str, Any] = {}
    for key, value in (graph_targets or {}).items():
        v = np.asarray(value)
        name = _TO_ASE_NAME.get(key, key)
        if key == K.STRESS and v.shape == (3, 3) and np.allclose(v, v.T, rtol=0, atol=0):
            results[name] = full_to_voigt(v)  # [6]
        elif name in all_properties and key != K.STRESS and v.dtype.kind == "f":
            results[name] = v.item() if v.ndim == 0 else v
        else:
            atoms.info[key] = v.item() if v.ndim == 0 else v
    for key, value in (node_targets or {}).items():
        v = np.asarray(value)
        name = _TO_ASE_NAME.get(key, key)
        if name == "stresses" and v.shape[1:] == (3, 3):
            results[name] = full_to_voigt(v)  # [n_nodes, 6]
        elif name in all_properties and v.dtype.kind == "f":
            results[name] = v
        else:
            atoms.arrays[key] = v
    if results:
        atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def to_ase(data: Data) -> ase.Atoms:
    """Turn one graph back into an ``ase.Atoms`` (inverse of :func:`from_ase` up to edges).

    Energies, forces, stress (as Voigt), dipole, charges and other ASE calculator properties are
    attached through a ``SinglePointCalculator``; other graph targets go to ``atoms.info``, other
    node targets to ``atoms.arrays``; ``total_charge``/``spin`` to ``info['charge'/'spin']``.

    Args:
        data: a single graph (a ``Batch`` of one graph is accepted).

    Returns:
        The structure with its targets; ``from_ase(to_ase(data), cutoff)`` rebuilds ``data``.

    Shapes:
        data.pos: ``[n_nodes, 3]``; data.cell: ``[1, 3, 3]`` or ``[3, 3]``; data.pbc: ``[1, 3]``.
    """
    n = int(data[K.POSITIONS].shape[0])
    if getattr(data, "num_graphs", 1) != 1:
        raise ValueError(f"to_ase converts one graph, got a batch of {data.num_graphs}")

    def numpy(key: str) -> np.ndarray | None:
        value = data[key] if key in data else None
        return None if value is None else value.detach().cpu().numpy()

    cell, pbc = numpy(K.CELL), numpy(K.PBC)
    charge, spin = numpy(K.TOTAL_CHARGE), numpy(K.SPIN)
    graph_targets, node_targets = {}, {}
    skip = _RESERVED | {K.BATCH, K.PTR}
    for key in data.keys():
        value = data[key]
        if key in skip or not isinstance(value, torch.Tensor):
            continue
        v = value.detach().cpu().numpy()
        if is_node_level(key, v, n):
            node_targets[key] = v
        else:
            graph_targets[key] = v[0] if v.ndim and v.shape[0] == 1 else v
    return make_atoms(
        numpy(K.ATOMIC_NUMBERS),
        numpy(K.POSITIONS),
        None if cell is None else cell.reshape(3, 3),
        None if pbc is None else pbc.reshape(3),
        total_charge=None if charge is None else float(charge.reshape(-1)[0]),
        spin=None if spin is None else float(spin.reshape(-1)[0]),
        graph_targets=graph_targets,
        node_targets=node_targets,
    )
