"""Property model: every target kind has the symmetry it declares; dipole and charges physics."""

import pytest
import torch

from equivar.models import build
from equivar.testing import assert_equivariant, random_molecule_batch

TARGETS = {
    "U0": "sum", "gap": "mean", "q": "node", "v": "vector", "mu": "dipole", "alpha": "tensor",
}  # fmt: skip


def small_property(dtype=torch.float64, **options):
    opts = dict(preset="S", species=[1, 6, 7, 8], cutoff=3.5, num_channels=8, lmax=2,
                targets=TARGETS, dtype=dtype, target_shifts={"U0": {1: -0.5, 6: -37.8}})
    opts.update(options)
    return build("property", **opts)


def test_every_target_kind_is_equivariant(dtype):
    model = small_property(dtype)
    batch = random_molecule_batch(n_graphs=3, cutoff=3.5, dtype=dtype, seed=11)
    batch.total_charge = torch.tensor([0.0, 1.0, -1.0], dtype=dtype)
    errors = assert_equivariant(model, batch)
    assert set(TARGETS) | {"mu_charges"} <= set(errors)
    out = model(batch)
    assert out["U0"].shape == (3,) and out["q"].shape == (batch.num_nodes,)
    assert out["v"].shape == (3, 3) and out["mu"].shape == (3, 3)
    assert out["alpha"].shape == (3, 3, 3)


def test_charges_sum_to_total_charge_and_tensor_is_symmetric():
    model = small_property()
    batch = random_molecule_batch(n_graphs=3, cutoff=3.5, dtype=torch.float64, seed=12)
    batch.total_charge = torch.tensor([0.0, 2.0, -1.0], dtype=torch.float64)
    out = model(batch)
    sums = torch.zeros(3, dtype=torch.float64).index_add(0, batch.batch, out["mu_charges"])
    assert torch.allclose(sums, batch.total_charge, atol=1e-12)
    assert torch.allclose(out["alpha"], out["alpha"].transpose(-1, -2), atol=1e-12)


def test_per_element_shifts_are_applied():
    model = small_property()
    batch = random_molecule_batch(n_graphs=1, cutoff=3.5, dtype=torch.float64, seed=13)
    base = model(batch)["U0"]
    model.shift_scale["U0"].shift += 1.0
    assert torch.allclose(model(batch)["U0"] - base, torch.tensor([float(batch.num_nodes)],
                                                                   dtype=torch.float64))


def test_bad_targets_are_rejected():
    with pytest.raises(ValueError, match="unknown kind 'scalar'"):
        small_property(targets={"U0": "scalar"})
    with pytest.raises(ValueError, match="needs targets"):
        build("property", preset="S")
    with pytest.raises(ValueError, match="lmax=1 is too small"):
        small_property(lmax=1)
    with pytest.raises(ValueError, match="not a target"):
        small_property(target_scales={"H": 2.0})


def test_statistics_set_species_and_neighbours_but_not_energy_shifts():
    from equivar.data import compute_statistics
    from equivar.testing import random_molecule_batch as rmb

    batch = rmb(n_graphs=3, species=(1, 6), cutoff=3.5, dtype=torch.float64, seed=14)
    datas = batch.to_data_list()
    for d in datas:
        d.energy = torch.tensor([1.0], dtype=torch.float64)
    stats = compute_statistics(datas)
    model = build("property", preset="S", cutoff=3.5, statistics=stats, targets={"U0": "sum"})
    assert model.species == [1, 6]
    assert model.backbone.blocks[0].conv.avg_num_neighbors == stats.mean_num_neighbors
