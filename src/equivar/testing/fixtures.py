"""Small random structures, batched with edges, for symmetry tests (ours and our users').

Atoms are kept at least ``min_distance`` (0.9 Angstrom) apart by rejection sampling, so the
structures are physically sensible inputs. Graphs are built by :func:`equivar.data.from_ase`
(imported when a fixture is called, not when this module is imported).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["random_molecule_batch", "random_crystal_batch"]

_MAX_TRIES = 1000


def _count(rng: np.random.Generator, n_atoms: int | tuple[int, int]) -> int:
    if isinstance(n_atoms, int):
        lo = hi = n_atoms
    else:
        lo, hi = n_atoms
    if not 1 <= lo <= hi:
        raise ValueError(f"n_atoms must be a positive int or a (min, max) range, got {n_atoms!r}")
    return int(rng.integers(lo, hi + 1))


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def _batch(data_list):
    from torch_geometric.data import Batch

    return Batch.from_data_list(data_list)


def random_molecule_batch(
    n_graphs: int = 2,
    n_atoms: int | tuple[int, int] = (3, 8),
    species: Sequence[int] = (1, 6, 7, 8),
    cutoff: float = 4.0,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    min_distance: float = 0.9,
):
    """A batch of random, connected molecules (no periodicity) with edges within ``cutoff``.

    Each molecule grows atom by atom: a new atom is placed 0.9-1.8 Angstrom from a random
    existing atom and rejected if it comes closer than ``min_distance`` to any other.

    Args:
        n_graphs: number of molecules. Default 2.
        n_atoms: atoms per molecule, an int or an inclusive ``(min, max)`` range. Default (3, 8).
        species: atomic numbers to draw from. Default H, C, N, O.
        cutoff: neighbour cutoff in Angstrom for the edges. Default 4.0.
        dtype: floating dtype of positions. Default float64.
        seed: seed (numpy ``default_rng``).
        min_distance: smallest allowed interatomic distance in Angstrom. Default 0.9.

    Returns:
        A ``torch_geometric.data.Batch`` from :func:`equivar.data.from_ase`.

    Shapes:
        ``pos``: ``[n_nodes, 3]``; ``edge_index``: ``[2, n_edges]``; ``cell``: ``[n_graphs, 3, 3]``.

    Example:
        >>> from equivar.testing import random_molecule_batch
        >>> batch = random_molecule_batch(n_graphs=2, seed=1)
        >>> batch.num_graphs
        2
    """
    import ase

    from equivar.data import from_ase

    rng = np.random.default_rng(seed)
    data_list = []
    for _ in range(n_graphs):
        n = _count(rng, n_atoms)
        positions = [np.zeros(3)]
        while len(positions) < n:
            for _ in range(_MAX_TRIES):
                anchor = positions[int(rng.integers(len(positions)))]
                candidate = anchor + _unit(rng) * rng.uniform(min_distance, 2 * min_distance)
                dist = np.linalg.norm(np.asarray(positions) - candidate, axis=1)
                if dist.min() >= min_distance:
                    positions.append(candidate)
                    break
            else:
                raise RuntimeError("random_molecule_batch: could not place an atom")
        numbers = rng.choice(np.asarray(species), size=n)
        atoms = ase.Atoms(numbers=numbers, positions=np.asarray(positions))
        data_list.append(from_ase(atoms, cutoff, dtype=dtype))
    return _batch(data_list)


def random_crystal_batch(
    n_graphs: int = 1,
    n_atoms: int | tuple[int, int] = (1, 4),
    species: Sequence[int] = (3, 8, 14),
    cutoff: float = 4.0,
    cell_size: tuple[float, float] = (3.0, 5.0),
    triclinic: bool = True,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    min_distance: float = 0.9,
):
    """A batch of random periodic crystals (``pbc`` all True) with edges within ``cutoff``.

    Cell lengths are drawn from ``cell_size``, which may be smaller than ``2 * cutoff`` (then an
    atom sees several images of a neighbour, and of itself: the case that tests the shifts).
    Triclinic cells have angles drawn in [70, 110] degrees. Atoms are rejected if any periodic
    image comes closer than ``min_distance``.

    Args:
        n_graphs: number of crystals. Default 1.
        n_atoms: atoms per cell, an int or an inclusive ``(min, max)`` range. Default (1, 4).
        species: atomic numbers to draw from. Default Li, O, Si.
        cutoff: neighbour cutoff in Angstrom. Default 4.0.
        cell_size: ``(min, max)`` lattice-vector length in Angstrom. Default (3.0, 5.0).
        triclinic: draw cell angles (else an orthorhombic cell). Default True.
        dtype: floating dtype of positions and cell. Default float64.
        seed: seed (numpy ``default_rng``).
        min_distance: smallest allowed interatomic distance in Angstrom. Default 0.9.

    Returns:
        A ``torch_geometric.data.Batch`` from :func:`equivar.data.from_ase`.

    Shapes:
        ``pos``: ``[n_nodes, 3]``; ``cell``: ``[n_graphs, 3, 3]``; ``shifts``: ``[n_edges, 3]``.

    Example:
        >>> from equivar.testing import random_crystal_batch
        >>> batch = random_crystal_batch(seed=0)
        >>> bool(batch.pbc.all())
        True
    """
    import ase
    from ase.geometry import cellpar_to_cell
    from ase.neighborlist import neighbor_list

    from equivar.data import from_ase

    if cell_size[0] <= min_distance:
        raise ValueError(f"cell_size must exceed min_distance={min_distance}, got {cell_size}")
    rng = np.random.default_rng(seed)
    data_list = []
    for _ in range(n_graphs):
        n = _count(rng, n_atoms)
        for _ in range(_MAX_TRIES):  # a cell with a sensible volume
            lengths = rng.uniform(*cell_size, size=3)
            angles = rng.uniform(70.0, 110.0, size=3) if triclinic else np.full(3, 90.0)
            cell = cellpar_to_cell(np.concatenate([lengths, angles]))
            if abs(np.linalg.det(cell)) > 0.5 * np.prod(lengths):
                break
        atoms = ase.Atoms(cell=cell, pbc=True)
        while len(atoms) < n:
            for _ in range(_MAX_TRIES):
                trial = atoms.copy()
                trial.append(ase.Atom("H", rng.uniform(size=3) @ cell))
                if len(neighbor_list("i", trial, min_distance)) == 0:
                    atoms = trial
                    break
            else:
                raise RuntimeError("random_crystal_batch: could not place an atom; "
                                   "use fewer atoms or a larger cell_size")
        atoms.set_atomic_numbers(rng.choice(np.asarray(species), size=n))
        data_list.append(from_ase(atoms, cutoff, dtype=dtype))
    return _batch(data_list)
