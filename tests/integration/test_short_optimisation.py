"""A short optimisation on the shipped ethanol data lowers the energy and force errors."""

from pathlib import Path

import torch

from equivar import keys
from equivar.data import compute_statistics, loader, read
from equivar.models import build

DATA = Path(__file__).resolve().parents[2] / "datasets" / "ethanol_xtb.extxyz"


def test_adam_on_ethanol_lowers_the_loss():
    torch.manual_seed(0)
    dataset = read(DATA, cutoff=4.0, index=":24")
    stats = compute_statistics(dataset)
    model = build("potential", preset="S", num_channels=16, cutoff=4.0, statistics=stats)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    batches = list(loader(dataset, batch_size=8, shuffle=False))

    def loss_of(batch):
        out = model(batch)
        n_atoms = torch.bincount(batch.batch).to(out[keys.ENERGY].dtype)
        e = ((out[keys.ENERGY] - batch.energy) / n_atoms).pow(2).mean()
        f = (out[keys.FORCES] - batch.forces).pow(2).mean()
        return e + f

    def total():
        return sum(loss_of(b).item() for b in batches)

    model.train()
    before = total()
    for _ in range(12):
        for b in batches:
            opt.zero_grad()
            loss_of(b).backward()
            opt.step()
    after = total()
    assert after < 0.5 * before, (before, after)
