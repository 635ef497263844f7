"""Dataset statistics a potential is normalised with: per-element energy shifts, force scale,
neighbour counts. Computed once before training and stored in the checkpoint (``to_dict``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from equivar import keys as K

if TYPE_CHECKING:
    from torch_geometric.data import Data

__all__ = ["DatasetStatistics", "compute_statistics", "target_statistics"]


@dataclass(frozen=True)
class DatasetStatistics:
    """Summary of a training set.

    Args:
        species: sorted atomic numbers present.
        atomic_energies: per-element energy shift ``{z: e_z}`` (eV), fitted by least squares of
            the total energy on the element counts; empty without energies.
        mean_num_neighbors: edges per node over the whole dataset.
        mean_num_atoms: atoms per structure.
        n_structures: number of structures.
        forces_rms: root mean square of force components (eV/Angstrom), None without forces.
        energy_residual_rms_per_atom: RMS over structures of ``(E - sum_z n_z e_z) / n_atoms``
            (eV/atom), None without energies.
    """

    species: list[int]
    mean_num_neighbors: float
    mean_num_atoms: float
    n_structures: int
    atomic_energies: dict[int, float] = field(default_factory=dict)
    forces_rms: float | None = None
    energy_residual_rms_per_atom: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain Python types only (ints, floats, lists, dicts, None): safe for
        ``torch.save``/``torch.load(weights_only=True)``, JSON and YAML."""
        out = asdict(self)
        out["species"] = [int(z) for z in self.species]
        out["atomic_energies"] = {int(z): float(e) for z, e in self.atomic_energies.items()}
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetStatistics:
        """Inverse of :meth:`to_dict`; also accepts string keys in ``atomic_energies`` (JSON)."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"DatasetStatistics.from_dict: unknown field(s) {unknown}")
        values = dict(d)
        values["species"] = [int(z) for z in d.get("species", [])]
        values["atomic_energies"] = {
            int(z): float(e) for z, e in (d.get("atomic_energies") or {}).items()
        }
        return cls(**values)


def _as_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def compute_statistics(
    dataset: Iterable[Data],
    *,
    energy_key: str = K.ENERGY,
    forces_key: str = K.FORCES,
) -> DatasetStatistics:
    """Per-element energy shifts, force RMS and neighbour statistics of a set of graphs.

    ``atomic_energies`` solve ``min_e || E - N e ||`` where ``N[s, k]`` counts atoms of species
    ``k`` in structure ``s``, with ``numpy.linalg.lstsq`` (``rcond=None``: singular values below
    machine precision times the matrix size are dropped). When ``N`` is rank deficient - e.g. every
    structure has the same composition, as in an MD trajectory - this returns the minimum-norm
    solution: it still reproduces the mean energy of each composition, but the individual element
    values are then not meaningful. Energies must be present on all structures or on none.

    Args:
        dataset: an :class:`~equivar.data.AtomsDataset`, a
            :class:`~equivar.data.ShardedDataset` (streamed in one pass: memory grows with the
            number of structures, not atoms) or any iterable of ``Data`` with ``z``,
            ``edge_index`` and optionally the targets.
        energy_key: graph-level energy field. Default ``"energy"``.
        forces_key: node-level forces field. Default ``"forces"``.

    Returns:
        A frozen :class:`DatasetStatistics`.

    Shapes:
        data.z: ``[n_nodes]``; data.energy: ``[1]``; data.forces: ``[n_nodes, 3]``.

    Example:
        >>> stats = compute_statistics(dataset)  # doctest: +SKIP
        >>> stats.atomic_energies  # doctest: +SKIP
        {1: -13.6, 8: -2041.3}
    """
    # streamed: per structure only its composition (species, counts), atom count and energy
    # are kept, so datasets larger than memory (a ShardedDataset) are summarised in one pass
    compositions: list[tuple[np.ndarray, np.ndarray]] = []  # ([n_species_s], [n_species_s])
    n_atoms_list: list[int] = []
    energies: list[float] = []
    n_edges, force_sq, n_force, n_with_energy = 0, 0.0, 0, 0
    for k, data in enumerate(dataset):
        if K.ATOMIC_NUMBERS not in data or K.EDGE_INDEX not in data:
            raise ValueError(f"structure {k}: graphs need 'z' and 'edge_index' fields")
        z = data[K.ATOMIC_NUMBERS].detach().cpu().numpy().astype(np.int64)  # [n_nodes]
        compositions.append(np.unique(z, return_counts=True))
        n_atoms_list.append(len(z))
        n_edges += int(data[K.EDGE_INDEX].shape[1])
        if energy_key in data and data[energy_key] is not None:
            e = _as_numpy(data[energy_key]).reshape(-1)
            if e.shape != (1,):
                raise ValueError(f"structure {k}: {energy_key} has {e.size} values, expected 1")
            energies.append(float(e[0]))
            n_with_energy += 1
        if forces_key in data and data[forces_key] is not None:
            f = _as_numpy(data[forces_key])  # [n_nodes, 3]
            force_sq += float(np.sum(f * f))
            n_force += f.size
    n_structures = len(n_atoms_list)
    if n_structures == 0:
        raise ValueError("dataset is empty: no statistics to compute")
    if 0 < n_with_energy < n_structures:
        raise ValueError(
            f"{energy_key} is present on {n_with_energy} of {n_structures} structures; "
            "it must be on all or none"
        )
    n_atoms = np.array(n_atoms_list, dtype=np.float64)  # [n_structures]
    species = np.unique(np.concatenate([s for s, _ in compositions]))  # [n_species]
    stats: dict[str, Any] = {
        "species": [int(s) for s in species],
        "mean_num_neighbors": n_edges / max(float(n_atoms.sum()), 1.0),
        "mean_num_atoms": float(n_atoms.mean()),
        "n_structures": n_structures,
        "forces_rms": float(np.sqrt(force_sq / n_force)) if n_force else None,
    }
    if energies:
        counts = np.zeros((n_structures, len(species)))  # [n_structures, n_species]
        for row, (present, count) in enumerate(compositions):
            counts[row, np.searchsorted(species, present)] = count
        e = np.asarray(energies)  # [n_structures]
        shifts, *_ = np.linalg.lstsq(counts, e, rcond=None)  # [n_species]
        residual = (e - counts @ shifts) / n_atoms  # [n_structures]
        stats["atomic_energies"] = {int(s): float(v) for s, v in zip(species, shifts, strict=True)}
        stats["energy_residual_rms_per_atom"] = float(np.sqrt(np.mean(residual**2)))
    return DatasetStatistics(**stats)


def target_statistics(
    dataset: Iterable[Data], targets: dict[str, str]
) -> tuple[dict[str, dict[int, float] | float], dict[str, float]]:
    """Shifts and scales that start a property model's invariant outputs on its training targets.

    ``"sum"`` targets (extensive, e.g. U0) get per-element shifts by least squares on the element
    counts (as :func:`compute_statistics` fits energies) and the per-atom scale
    ``rms(residual / n_atoms) * sqrt(mean n_atoms)``, at which uncorrelated unit per-atom
    outputs sum to the residual's size; ``"mean"`` targets (intensive, e.g. the gap) the mean
    and standard deviation over structures; ``"node"`` targets the same over atoms. Equivariant
    kinds (``"vector"``, ``"dipole"``, ``"tensor"``) take none.

    Args:
        dataset: graphs holding every target in ``targets`` under its name.
        targets: ``{name: kind}`` as for ``build("property", targets=...)``.

    Returns:
        ``(target_shifts, target_scales)`` for ``build("property", ...)``.
    """
    shifts: dict[str, dict[int, float] | float] = {}
    scales: dict[str, float] = {}
    for name, kind in targets.items():
        if kind == "sum":
            stats = compute_statistics(dataset, energy_key=name, forces_key="")
            if not stats.atomic_energies:
                raise ValueError(f"target {name!r} is missing from the training structures")
            shifts[name] = stats.atomic_energies
            rms = stats.energy_residual_rms_per_atom or 0.0
            scales[name] = rms * float(np.sqrt(stats.mean_num_atoms)) or 1.0
        elif kind in ("mean", "node"):
            values = []
            for k, data in enumerate(dataset):
                if name not in data or data[name] is None:
                    raise ValueError(f"structure {k} has no target {name!r}")
                values.append(_as_numpy(data[name]).reshape(-1))
            y = np.concatenate(values)
            shifts[name] = float(y.mean())
            scales[name] = float(y.std()) or 1.0
    return shifts, scales
