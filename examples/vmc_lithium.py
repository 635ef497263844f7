"""Variational Monte Carlo of the lithium atom with a small FermiNet-style wavefunction: optimise
it by natural gradient (minSR + SPRING), then print its energy with a blocking error bar next to
the Hartree-Fock and exact energies.

The ground state of Li (1s^2 2s, 2S) is invariant under rotations and reflections, so by default
the network sees only electron-nucleus and electron-electron distances (``features="invariant"``):
the symmetry is exact by construction and the optimisation finds the 2s node without help.
``--features cartesian`` is FermiNet's input; it needs ``--pretrain 200`` (Hartree-Fock orbitals
from pyscf) to start near the right nodal surface.

    python examples/vmc_lithium.py                    # ~3 minutes on one CPU core
    python examples/vmc_lithium.py --iterations 3000  # closer to the exact energy, longer
    python examples/vmc_lithium.py --device cuda --walkers 4096 --preset L --iterations 20000

Writes the energy-vs-iteration plot to runs/examples/vmc_lithium.png (with matplotlib installed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from equivar.qmc import atom, vmc

EXACT = -7.478060  # non-relativistic, hartree
HARTREE_FOCK = -7.432727


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=int, default=500)
    p.add_argument("--walkers", type=int, default=256)
    p.add_argument("--preset", default="S", choices=["S", "M", "L"])
    p.add_argument("--features", default="invariant", choices=["invariant", "cartesian"])
    p.add_argument("--pretrain", type=int, default=0, help="HF pre-training steps (pyscf)")
    p.add_argument("--eval-iterations", type=int, default=200)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads (default 1: these tensors are too small to share)")
    p.add_argument("--plot", default="runs/examples/vmc_lithium.png")
    args = p.parse_args()
    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)

    li = atom("Li")
    print(f"{li}; {args.walkers} walkers, {args.iterations} iterations, preset {args.preset}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        args.plot = None
    result = vmc(li, model={"preset": args.preset, "features": args.features},
                 iterations=args.iterations, walkers=args.walkers, pretrain=args.pretrain,
                 eval_iterations=args.eval_iterations, device=args.device, progress=True,
                 plot=args.plot)
    e, err = result.energy, result.error
    print(f"\nE(Li) = {e:.5f} +- {err:.5f} Ha  ({result})")
    recovered = 100 * (HARTREE_FOCK - e) / (HARTREE_FOCK - EXACT)
    print(f"exact {EXACT:.6f} Ha: {1e3 * (e - EXACT):+.2f} mHa; Hartree-Fock {HARTREE_FOCK:.6f} "
          f"Ha; correlation energy recovered {recovered:.0f}%")
    print(f"training {result.train_time:.0f} s, evaluation {result.eval_time:.0f} s"
          + (f"; plot {args.plot}" if args.plot else ""))


if __name__ == "__main__":
    main()
