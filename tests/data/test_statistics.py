"""compute_statistics on synthetic data with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch_geometric.data import Data

from equivar.data import AtomsDataset, DatasetStatistics, compute_statistics

TRUE_SHIFTS = {1: -13.6, 6: -1029.5, 8: -2041.25}


def synthetic(n_structures: int = 12, noise: float = 0.0, seed: int = 0) -> list[Data]:
    """Graphs whose energy is exactly sum of per-element shifts (+ optional per-atom noise)."""
    rng = np.random.default_rng(seed)
    species = np.array(sorted(TRUE_SHIFTS))
    graphs = []
    for _ in range(n_structures):
        n = int(rng.integers(2, 9))
        z = rng.choice(species, size=n)
        energy = sum(TRUE_SHIFTS[int(v)] for v in z) + noise * n * rng.normal()
        edge_index = torch.tensor([[0, 1], [1, 0]])
        graphs.append(
            Data(
                z=torch.tensor(z),
                pos=torch.zeros(n, 3),
                edge_index=edge_index,
                energy=torch.tensor([energy], dtype=torch.float64),
                forces=torch.full((n, 3), 2.0, dtype=torch.float64),
            )
        )
    return graphs


def test_recovers_atomic_energies_exactly():
    graphs = synthetic()
    stats = compute_statistics(graphs)
    assert stats.species == [1, 6, 8]
    assert stats.atomic_energies.keys() == TRUE_SHIFTS.keys()
    for z, e in TRUE_SHIFTS.items():
        assert stats.atomic_energies[z] == pytest.approx(e, abs=1e-9)
    assert stats.energy_residual_rms_per_atom == pytest.approx(0.0, abs=1e-9)
    assert stats.forces_rms == pytest.approx(2.0)
    n_atoms = [len(g.z) for g in graphs]
    assert stats.mean_num_atoms == pytest.approx(np.mean(n_atoms))
    assert stats.mean_num_neighbors == pytest.approx(2 * len(graphs) / sum(n_atoms))
    assert stats.n_structures == len(graphs)


def test_residual_with_noise():
    stats = compute_statistics(synthetic(n_structures=40, noise=0.01, seed=1))
    assert 0.001 < stats.energy_residual_rms_per_atom < 0.02
    for z, e in TRUE_SHIFTS.items():
        assert stats.atomic_energies[z] == pytest.approx(e, abs=0.05)


def test_rank_deficient_same_composition():
    """One composition (an MD trajectory): minimum-norm shifts still reproduce the energies."""
    z = torch.tensor([6, 1, 1, 1, 1])
    graphs = [
        Data(z=z, edge_index=torch.zeros(2, 0, dtype=torch.long), energy=torch.tensor([e]))
        for e in (-40.0, -40.5, -39.5)
    ]
    stats = compute_statistics(graphs)
    predicted = stats.atomic_energies[6] + 4 * stats.atomic_energies[1]
    assert predicted == pytest.approx(-40.0, abs=1e-5)
    assert all(np.isfinite(v) for v in stats.atomic_energies.values())


def test_without_energy_only_neighbour_statistics():
    from ase.build import molecule

    ds = AtomsDataset([molecule("H2O"), molecule("CH4")], cutoff=1.2)
    stats = compute_statistics(ds)
    assert stats.atomic_energies == {} and stats.forces_rms is None
    assert stats.energy_residual_rms_per_atom is None
    assert stats.mean_num_neighbors == pytest.approx((4 + 8) / 8)
    assert stats.species == [1, 6, 8]


def test_to_dict_from_dict_round_trip(tmp_path):
    stats = compute_statistics(synthetic())
    d = stats.to_dict()
    assert DatasetStatistics.from_dict(d) == stats
    assert DatasetStatistics.from_dict(json.loads(json.dumps(d))) == stats  # string keys
    path = tmp_path / "stats.pt"
    torch.save(d, path)
    assert DatasetStatistics.from_dict(torch.load(path, weights_only=True)) == stats
    with pytest.raises(ValueError, match="unknown field"):
        DatasetStatistics.from_dict({**d, "bogus": 1})


def test_errors():
    graphs = synthetic(3)
    del graphs[1].energy
    with pytest.raises(ValueError, match="energy is present on 2 of 3"):
        compute_statistics(graphs)
    with pytest.raises(ValueError, match="empty"):
        compute_statistics([])
    with pytest.raises(ValueError, match="'z' and 'edge_index'"):
        compute_statistics([Data(pos=torch.zeros(1, 3))])
