"""MD stability: 100 ps of NVE ethanol with a trained equivar potential, against the xTB MD.

Protocol (issue 3's acceptance test: energy drift per atom per ps, no explosion, bond-length
distributions against the reference MD):

1. Train (``equivar.train.fit``) a small potential on ``datasets/md17_xtb/ethanol.npz``
   (GFN2-xTB Langevin MD at 500 K, 1500 frames): the MD17 random split of
   ``equivar.data.datasets.md17.md17_splits`` (``--train-size`` frames, default 1000; 100
   validation, 400 test frames), ``preset="S"`` with 16 channels and the ZBL prior, the settings
   of ``examples/configs/ethanol.yaml`` otherwise (float32 training, EMA, cosine schedule,
   ``--epochs`` 40).
   ``--checkpoint PATH`` skips training and loads a potential instead.
2. NVE (ASE velocity Verlet through ``equivar.simulate.run_md``, float64 model) for ``--steps``
   steps of ``--dt`` fs (default 200,000 x 0.5 fs = 100 ps) from the first test frame (a
   thermal geometry the model was not trained on), with Maxwell-Boltzmann momenta at exactly
   500 K (no net momentum or rotation). Energies are logged and a frame is kept every ``--log``
   steps (default 20 = 10 fs).
3. Reported: energy drift (slope of a straight-line fit of the total energy against time, eV per
   atom per ps), max |E - E0| (eV and meV/atom), the mean temperature, whether a bond broke or
   formed (bonds = pairs of the start frame closer than 1.2 x the sum of ASE's covalent radii;
   broken = a bond longer than 1.5 x that sum; formed = a non-bonded pair shorter than 1.0 x
   it), and for the C-C, C-O, C-H and O-H bonds the mean and standard deviation of the length in
   the NVE frames and in all 1500 xTB frames, the histogram overlap (sum of min(p, q) over 60
   common bins, 1 = identical) and the Jensen-Shannon divergence (bits, 0 = identical), and the
   same two numbers between the first and the second half of the xTB frames (the sampling-noise
   floor of a 7.5 ps reference). A PNG shows the energies and the four distributions.
   ``mean_T_K`` is ASE's kinetic temperature over 3N degrees of freedom; NVE without net
   momentum or rotation has 3N - 6, so the internal temperature is 3N / (3N - 6) = 9/7 of it.

    python benchmarks/md_ethanol_nve.py --json md_ethanol_nve.json      # ~1-2 h on 2 CPU cores
    python benchmarks/md_ethanol_nve.py --checkpoint runs/x/best.pt     # skip training
    python benchmarks/md_ethanol_nve.py --quick                          # smoke run, ~2 min
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware, print_table, standard_parser, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "datasets" / "md17_xtb" / "ethanol.npz"
PAIRS = ("C-C", "C-O", "C-H", "O-H")
SYMBOL = {1: "H", 6: "C", 8: "O"}


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------
def write_subset(path: Path, source: dict, rows: np.ndarray) -> Path:
    """An MD17-layout npz (R, z, E, F; eV and eV/Angstrom) of the frames ``rows``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, R=source["R"][rows], z=source["z"], E=source["E"][rows], F=source["F"][rows])
    return path


def train(source: dict, splits: dict, args: argparse.Namespace) -> tuple[Path, dict]:
    """``equivar.train.fit`` on the training split; returns (best checkpoint, fit's result)."""
    from equivar.train import fit

    data_dir = args.out_dir / "data"
    files = {k: write_subset(data_dir / f"{k}.npz", source, v) for k, v in splits.items()}
    config = {
        "data": {"train": str(files["train"]), "valid": str(files["valid"]),
                 "test": str(files["test"]), "cutoff": 5.0, "batch_size": 8,
                 "valid_batch_size": 50, "seed": args.seed},
        "model": {"name": "potential",
                  "options": {"preset": "S", "num_channels": 16, "zbl": True}},
        "loss": {"energy": 1.0, "forces": 10.0},
        "optim": {"lr": 0.01, "schedule": "cosine", "warmup_steps": 20, "grad_clip": 10.0,
                  "ema_decay": 0.99},
        "epochs": args.epochs,
        "precision": "float32",
        "device": "cpu",
        "seed": args.seed,
        "output": str(args.out_dir / "train"),
        "progress": False,
    }  # fmt: skip
    result = fit(config, resume=(args.out_dir / "train" / "checkpoint_last.pt").exists())
    return Path(result["checkpoint"]), result


# --------------------------------------------------------------------------------------------
# bonds
# --------------------------------------------------------------------------------------------
def bond_topology(z: np.ndarray, pos: np.ndarray, scale: float = 1.2):
    """Bonded pairs (i < j) of one geometry and their type names ("C-H", ...)."""
    from ase.data import covalent_radii

    r = covalent_radii[z]
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    pairs = [(i, j) for i in range(len(z)) for j in range(i + 1, len(z))
             if d[i, j] < scale * (r[i] + r[j])]  # fmt: skip
    names = ["-".join(sorted((SYMBOL[z[i]], SYMBOL[z[j]]), key="CONH".index)) for i, j in pairs]
    return pairs, names


def pair_distances(traj: np.ndarray) -> np.ndarray:
    """All pair distances: ``[n_frames, n, 3] -> [n_frames, n, n]``."""
    return np.linalg.norm(traj[:, :, None] - traj[:, None], axis=-1)


def bond_events(z: np.ndarray, traj: np.ndarray, pairs: list) -> dict:
    """Broken bonds (> 1.5 x covalent sum) and new close contacts (< 1.0 x) over a trajectory."""
    from ase.data import covalent_radii

    r = covalent_radii[z]
    rsum = r[:, None] + r[None]  # [n, n]
    d = pair_distances(traj)  # [n_frames, n, n]
    bonded = np.zeros(rsum.shape, dtype=bool)
    for i, j in pairs:
        bonded[i, j] = bonded[j, i] = True
    iu = np.triu_indices(len(z), 1)
    ratio = d[:, iu[0], iu[1]] / rsum[iu]  # [n_frames, n_pairs]
    is_bond = bonded[iu]
    broken = np.any(ratio[:, is_bond] > 1.5, axis=1)
    formed = np.any(ratio[:, ~is_bond] < 1.0, axis=1)
    return {
        "frames_with_broken_bond": int(broken.sum()),
        "frames_with_new_bond": int(formed.sum()),
        "first_bad_frame": int(np.flatnonzero(broken | formed)[0]) if (broken | formed).any()
        else -1,
        "max_bond_stretch": float(ratio[:, is_bond].max()),
        "min_nonbond_ratio": float(ratio[:, ~is_bond].min()),
    }  # fmt: skip


def bond_lengths(traj: np.ndarray, pairs: list, names: list) -> dict[str, np.ndarray]:
    """Bond lengths pooled by type: name -> ``[n_frames * n_bonds_of_type]``."""
    out = {}
    for kind in PAIRS:
        idx = [p for p, n in zip(pairs, names, strict=True) if n == kind]
        i, j = np.array(idx).T
        out[kind] = np.linalg.norm(traj[:, i] - traj[:, j], axis=-1).ravel()
    return out


def compare(md: np.ndarray, ref: np.ndarray, bins: int = 60) -> dict:
    """Histogram overlap and Jensen-Shannon divergence (bits) on common bins."""
    lo, hi = min(md.min(), ref.min()), max(md.max(), ref.max())
    edges = np.linspace(lo, hi, bins + 1)
    p = np.histogram(md, edges)[0].astype(float)
    q = np.histogram(ref, edges)[0].astype(float)
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a, b):
        keep = a > 0
        return float(np.sum(a[keep] * np.log2(a[keep] / b[keep])))

    return {"overlap": float(np.minimum(p, q).sum()), "js_bits": 0.5 * kl(p, m) + 0.5 * kl(q, m)}


# --------------------------------------------------------------------------------------------
# plot
# --------------------------------------------------------------------------------------------
def plot(result, md_lengths, ref_lengths, n_atoms: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 5, figsize=(21, 3.8))
    t_ps = result.time_fs * 1e-3
    e0 = result.total_energy[0]
    axes[0].plot(t_ps, (result.potential_energy - e0) / n_atoms * 1e3, lw=0.3, label="potential")
    axes[0].plot(t_ps, (result.total_energy - e0) / n_atoms * 1e3, lw=0.8, label="total")
    axes[0].set(xlabel="time (ps)", ylabel="E - E_total(0) (meV/atom)",
                title=f"NVE drift {result.energy_drift() * 1e3:.3g} meV/atom/ps")  # fmt: skip
    axes[0].legend()
    for ax, kind in zip(axes[1:], PAIRS, strict=True):
        md, ref = md_lengths[kind], ref_lengths[kind]
        edges = np.linspace(min(md.min(), ref.min()), max(md.max(), ref.max()), 61)
        ax.hist(ref, edges, density=True, alpha=0.5, label="GFN2-xTB Langevin MD")
        ax.hist(md, edges, density=True, histtype="step", lw=1.5, label="equivar NVE")
        ax.set(xlabel=f"{kind} distance (Angstrom)", ylabel="density", title=f"{kind} bonds")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     parents=[standard_parser()])  # fmt: skip
    parser.add_argument("--checkpoint", type=Path, default=None, help="skip training")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--train-size", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--steps", type=int, default=200_000, help="NVE steps")
    parser.add_argument("--dt", type=float, default=0.5, help="time step, fs")
    parser.add_argument("--temperature", type=float, default=500.0, help="initial, K")
    parser.add_argument("--log", type=int, default=20, help="steps between logged frames")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "out" / "md_ethanol")
    args = parser.parse_args(argv)
    if args.quick:
        args.train_size, args.epochs, args.steps = 100, 3, 2000
        args.out_dir = args.out_dir.with_name(args.out_dir.name + "_quick")
    torch.set_num_threads(args.threads)
    args.out_dir.mkdir(parents=True, exist_ok=True)

    from ase import Atoms

    from equivar.data.datasets.md17 import md17_splits
    from equivar.simulate import run_md

    with np.load(args.data, allow_pickle=False) as f:
        source = {k: f[k] for k in ("R", "z", "E", "F")}
    z = source["z"]
    splits = md17_splits(len(source["E"]), args.train_size, seed=0)
    t0 = time.perf_counter()
    fit_result: dict = {}
    if args.checkpoint is None:
        checkpoint, fit_result = train(source, splits, args)
    else:
        checkpoint = args.checkpoint
    t_train = time.perf_counter() - t0

    start = Atoms(numbers=z, positions=source["R"][splits["test"][0]].astype(np.float64))
    traj_path = args.out_dir / "nve.extxyz"
    result = run_md(str(checkpoint), start, ensemble="nve", steps=args.steps, dt_fs=args.dt,
                    temperature_K=args.temperature, trajectory=traj_path,
                    trajectory_interval=args.log, log_interval=args.log, progress=False,
                    seed=args.seed, dtype="float64", device="cpu")  # fmt: skip

    from ase.io import iread

    traj = np.stack([a.positions for a in iread(traj_path, ":")])  # [n_frames, n, 3]
    ref = source["R"].astype(np.float64)  # [1500, n, 3]
    pairs, names = bond_topology(z, ref[0])
    md_len, ref_len = bond_lengths(traj, pairs, names), bond_lengths(ref, pairs, names)
    events = bond_events(z, traj, pairs)
    ref_events = bond_events(z, ref, pairs)
    n = len(z)
    etot = result.total_energy
    finite = bool(np.all(np.isfinite(etot)))
    summary = {
        "steps": args.steps,
        "dt_fs": args.dt,
        "time_ps": args.steps * args.dt * 1e-3,
        "md_wall_s": round(result.seconds, 1),
        "steps_per_s": round(result.steps_per_second, 1),
        "drift_eV_per_atom_per_ps": result.energy_drift(),
        "max_abs_dE_eV": float(np.abs(etot - etot[0]).max()),
        "max_abs_dE_meV_per_atom": float(np.abs(etot - etot[0]).max() / n * 1e3),
        "total_energy_sd_meV_per_atom": float(np.std(etot) / n * 1e3),
        "mean_T_K": float(result.temperature_K.mean()),
        "finite": finite,
        "exploded": (not finite) or events["frames_with_broken_bond"] > 0
        or events["frames_with_new_bond"] > 0,
        **{f"md_{k}": v for k, v in events.items()},
        "ref_max_bond_stretch": ref_events["max_bond_stretch"],
        "train_wall_s": round(t_train, 1),
        "checkpoint": str(checkpoint),
        "test_metrics": fit_result.get("test", {}),
    }  # fmt: skip
    rows = []
    half = len(ref) // 2  # sampling-noise floor: the xTB MD's first half against its second
    first, second = (bond_lengths(r, pairs, names) for r in (ref[:half], ref[half:]))
    for kind in PAIRS:
        cmp = compare(md_len[kind], ref_len[kind])
        floor = compare(first[kind], second[kind])
        rows.append({
            "bond": kind, "n_bonds": names.count(kind),
            "md_mean_A": float(md_len[kind].mean()), "md_std_A": float(md_len[kind].std()),
            "xtb_mean_A": float(ref_len[kind].mean()), "xtb_std_A": float(ref_len[kind].std()),
            "overlap": cmp["overlap"], "js_bits": cmp["js_bits"],
            "xtb_halves_overlap": floor["overlap"], "xtb_halves_js_bits": floor["js_bits"],
        })  # fmt: skip
    png = args.out_dir / "md_ethanol_nve.png"
    plot(result, md_len, ref_len, n, png)
    (args.out_dir / "summary.json").write_text(json.dumps({"summary": summary, "rows": rows},
                                                          indent=2, default=float))  # fmt: skip
    print(f"hardware: {hardware()}")
    print(f"wrote {png} and {args.out_dir / 'summary.json'}")
    print_table([{"quantity": k, "value": v} for k, v in summary.items() if k != "test_metrics"])
    print()
    print_table(rows)
    if args.json:
        write_json(args.json, "md_ethanol_nve", [{"summary": summary}, *rows])


if __name__ == "__main__":
    main()
