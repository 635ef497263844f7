"""Fit a small potential to GFN2-xTB ethanol frames (energies and forces) and report held-out
errors before and after. The full trainer (YAML, checkpoints, EMA, schedules) comes with
`equivar train`; this shows the pieces it is made of.

    python examples/fit_ethanol.py               # about a minute on a laptop CPU
    python examples/fit_ethanol.py --epochs 400  # better numbers, longer
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from equivar.data import compute_statistics, loader, read
from equivar.models import build

#: the repository's shipped data, found from this file (the example runs from any folder)
DATASETS = Path(__file__).resolve().parents[1] / "datasets"


def errors(model, batches) -> tuple[float, float]:
    """Energy MAE per atom (meV/atom) and force MAE (meV/A)."""
    e_err, f_err, n_graphs, n_comp = 0.0, 0.0, 0, 0
    model.eval()
    for b in batches:
        out = model(b)
        n_atoms = torch.bincount(b.batch).to(out["energy"].dtype)
        e_err += ((out["energy"] - b.energy).abs() / n_atoms).sum().item()
        f_err += (out["forces"] - b.forces).abs().sum().item()
        n_graphs, n_comp = n_graphs + b.num_graphs, n_comp + b.forces.numel()
    return 1e3 * e_err / n_graphs, 1e3 * f_err / n_comp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATASETS / "ethanol_xtb.extxyz"))
    parser.add_argument("--epochs", type=int, default=120)
    parser.add_argument("--train", type=int, default=150)
    parser.add_argument("--preset", default="S")
    parser.add_argument("--force-weight", type=float, default=10.0)
    args = parser.parse_args()
    torch.manual_seed(0)

    dataset = read(args.data, cutoff=5.0)
    train, test = dataset.split([args.train, len(dataset) - args.train], seed=0)
    stats = compute_statistics(train)
    model = build("potential", preset=args.preset, cutoff=5.0, statistics=stats)
    print(model)
    train_batches = list(loader(train, batch_size=10, shuffle=False))
    test_batches = list(loader(test, batch_size=25))
    e0, f0 = errors(model, test_batches)
    print(f"held-out before: energy {e0:8.2f} meV/atom   forces {f0:8.1f} meV/A")

    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(train_batches)).tolist()
        for i in order:
            b = train_batches[i]
            out = model(b)
            n_atoms = torch.bincount(b.batch).to(out["energy"].dtype)
            loss = ((out["energy"] - b.energy) / n_atoms).pow(2).mean()
            loss = loss + args.force_weight * (out["forces"] - b.forces).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        if (epoch + 1) % max(1, args.epochs // 5) == 0:
            e, f = errors(model, test_batches)
            print(f"epoch {epoch + 1:4d}  loss {loss.item():.4f}  held-out energy {e:7.2f} "
                  f"meV/atom  forces {f:7.1f} meV/A  ({time.perf_counter() - t0:.0f} s)")
    e1, f1 = errors(model, test_batches)
    print(f"held-out after:  energy {e1:8.2f} meV/atom   forces {f1:8.1f} meV/A")


if __name__ == "__main__":
    main()
