"""Equivarification against augmentation, on images (C4) and on molecules (the octahedral group).

(a) scikit-learn's bundled 8x8 digits (``load_digits``, no download). A fixed stratified split per
seed (1257 train / 540 test); every test image is rotated by a random multiple of 90 degrees.
Models: a plain CNN; the same CNN trained with random rot90 augmentation; the same CNN
equivarified globally (``equivarify(cnn, cyclic(4), invariant=True, action="image")``, logits
averaged over the 4 rotations); a layer-wise equivarified CNN (lifting conv, group conv on the
stacked orientations, pointwise head; G-CNN style) of about the same parameter count. Trained on
5%, 10%, 25% and 100% of the training set for the same number of Adam steps. Also reported: the
relative change of the logits when the (disk-masked) test images are rotated by 45 degrees with
bilinear interpolation (``image_rotation_error``), a measured approximate-equivariance error.

(b) the shipped QM9 subset (``datasets/qm9_100.extxyz``, 100 molecules, 1794 atoms): regression of
the Mulliken charge of every atom from its environment (the 8 nearest atoms as positions relative
to it, sorted by distance, with one-hot species, plus the atom's own species) by an MLP on the
raw coordinates. Split by molecule (train on 15 or 70 molecules, test on the other 30). Models:
plain; augmentation by random octahedral rotations; equivarified with the octahedral group O
(24 evaluations, invariant mean); frame averaging (PCA frames, O(3), 8 evaluations). Test MAE
(e) with the test environments rotated by random elements of O and by random SO(3) rotations.

Times: ``train_x`` is the training wall time and ``infer_x`` the test-set forward time, both
relative to the plain model in the same setting (one run, one machine).

Usage:
    python benchmarks/equivarify.py [--quick] [--json PATH] [--seeds N] [--steps N]
        [--qm9-steps N] [--threads N] [--part {a,b,both}]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/common.py
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "src"))  # equivar, uninstalled

from common import hardware, median_time, print_table, standard_parser, versions, write_json  # noqa: E402, I001

ROOT = Path(__file__).resolve().parents[1]
QM9 = ROOT / "datasets" / "qm9_100.extxyz"
FRACTIONS = (0.05, 0.10, 0.25, 1.0)
SPECIES = (1, 6, 7, 8, 9)
NEIGHBOURS = 8


# --- shared ---------------------------------------------------------------------------------------
def train(model, batches, steps: int, lr: float, loss_fn) -> float:
    """Adam for ``steps`` steps on ``batches()`` (a callable giving (inputs, target)); returns the
    wall time."""
    import torch

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        inputs, target = batches()
        loss = loss_fn(model(*inputs), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    return time.perf_counter() - start


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


# --- (a) digits under C4 --------------------------------------------------------------------------
def digits_models(kind: str):
    from torch import nn

    from equivar.symmetry import cyclic, equivarify

    def cnn():
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU(), nn.Linear(64, 10))

    if kind in ("plain", "augment"):
        return cnn()
    if kind == "equivarify":
        return equivarify(cnn(), cyclic(4), invariant=True, action="image")
    # layer-wise: the second conv reads the 4 stacked orientations (4 * 12 channels)
    layers = nn.Sequential(
        nn.Conv2d(1, 12, 3, padding=1), nn.ReLU(), nn.Conv2d(4 * 12, 24, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(24 * 16, 64), nn.ReLU(), nn.Linear(64, 10))
    return equivarify(layers, cyclic(4), invariant=True, action="image", layerwise=True)


DIGIT_MODELS = ("plain", "augment", "equivarify", "layerwise")


def run_digits(seeds: list[int], fractions: tuple[float, ...], steps: int) -> list[dict]:
    import numpy as np
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from equivar.symmetry import image_rotation_error

    data = load_digits()
    images = torch.tensor(data.images / 16.0, dtype=torch.float32).unsqueeze(1)  # [n, 1, 8, 8]
    labels = torch.tensor(data.target, dtype=torch.long)
    results: dict[tuple[str, float], dict[str, list[float]]] = {}
    for seed in seeds:
        idx_train, idx_test = train_test_split(np.arange(len(labels)), test_size=540,
                                               stratify=data.target, random_state=seed)
        gen = torch.Generator().manual_seed(seed)
        x_test = images[idx_test]
        turns = torch.randint(0, 4, (len(idx_test),), generator=gen)
        x_test = torch.stack([torch.rot90(x, int(k), dims=(-2, -1)) for x, k in zip(x_test, turns,
                                                                                    strict=True)])
        y_test = labels[idx_test]
        order = torch.randperm(len(idx_train), generator=gen)
        for fraction in fractions:
            n_train = max(10, round(fraction * len(idx_train)))
            chosen = torch.as_tensor(idx_train)[order[:n_train]]
            x_train, y_train = images[chosen], labels[chosen]
            plain_times = None
            for kind in DIGIT_MODELS:
                torch.manual_seed(seed)
                model = digits_models(kind)
                batch_gen = torch.Generator().manual_seed(1000 + seed)
                batch = min(64, n_train)

                def batches(kind=kind, x_train=x_train, y_train=y_train, batch=batch,
                            batch_gen=batch_gen):
                    pick = torch.randint(0, len(y_train), (batch,), generator=batch_gen)
                    x = x_train[pick]
                    if kind == "augment":
                        k = torch.randint(0, 4, (batch,), generator=batch_gen)
                        x = torch.stack([torch.rot90(im, int(t), dims=(-2, -1))
                                         for im, t in zip(x, k, strict=True)])
                    return (x,), y_train[pick]

                t_train = train(model, batches, steps, 2e-3, torch.nn.functional.cross_entropy)
                with torch.no_grad():
                    t_infer, logits = median_time(lambda m=model, x=x_test: m(x), repeats=3)
                    err45 = image_rotation_error(model, x_test[:200], [math.pi / 4])[0].item()
                acc = (logits.argmax(1) == y_test).float().mean().item()
                if kind == "plain":
                    plain_times = (t_train, t_infer)
                rec = results.setdefault((kind, fraction), {"acc": [], "train_x": [],
                                                            "infer_x": [], "err45": []})
                rec["acc"].append(100 * acc)
                rec["train_x"].append(t_train / plain_times[0])
                rec["infer_x"].append(t_infer / plain_times[1])
                rec["err45"].append(err45)
                rec["params"] = sum(p.numel() for p in model.parameters())
                rec["n_train"] = n_train
            print(f"done digits seed={seed} fraction={fraction}", file=sys.stderr, flush=True)
    rows = []
    for (kind, fraction), rec in results.items():
        acc, acc_std = mean_std(rec["acc"])
        rows.append({"part": "a", "fraction": fraction, "n_train": rec["n_train"], "model": kind,
                     "params": rec["params"], "acc_mean": acc, "acc_std": acc_std,
                     "train_x": statistics.fmean(rec["train_x"]),
                     "infer_x": statistics.fmean(rec["infer_x"]),
                     "err45": statistics.fmean(rec["err45"]), "seeds": len(rec["acc"])})
    rows.sort(key=lambda r: (r["fraction"], DIGIT_MODELS.index(r["model"])))
    return rows


# --- (b) QM9 atom environments under the octahedral group -----------------------------------------
def environments():
    """Every atom of the QM9 subset as (relative positions of its 8 nearest atoms, invariant
    features, charge, molecule index)."""
    import ase.io
    import numpy as np
    import torch

    pos_list, feat_list, charges, molecule = [], [], [], []
    eye = np.eye(len(SPECIES))
    for m, atoms in enumerate(ase.io.read(QM9, index=":")):
        z = np.array([SPECIES.index(int(n)) for n in atoms.numbers])
        r = atoms.positions
        q = atoms.get_charges()
        d = np.linalg.norm(r[None] - r[:, None], axis=-1)  # [n, n]
        for i in range(len(atoms)):
            nb = np.argsort(d[i], kind="stable")[1:NEIGHBOURS + 1]
            pos_list.append(r[nb] - r[i])
            feat_list.append(np.concatenate([eye[z[nb]].reshape(-1), eye[z[i]]]))
            charges.append(q[i])
            molecule.append(m)
    f64 = torch.float64
    pos = torch.tensor(np.array(pos_list), dtype=f64)  # [n_atoms, NEIGHBOURS, 3]
    feats = torch.tensor(np.array(feat_list), dtype=f64)  # [n_atoms, (NEIGHBOURS + 1) * 5]
    return pos, feats, torch.tensor(charges, dtype=f64), torch.tensor(molecule)


class EnvironmentMLP:
    """Factory of the plain model: MLP on the flattened relative positions and the features."""

    @staticmethod
    def build():
        import torch
        from torch import nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                n_in = NEIGHBOURS * 3 + NEIGHBOURS * len(SPECIES) + len(SPECIES)
                self.mlp = nn.Sequential(nn.Linear(n_in, 128), nn.SiLU(), nn.Linear(128, 128),
                                         nn.SiLU(), nn.Linear(128, 1))

            def forward(self, pos, feats):  # [batch, k, 3], [batch, n_feats] -> [batch]
                return self.mlp(torch.cat([pos.flatten(1), feats], 1)).squeeze(-1)

        return Net().double()


QM9_MODELS = ("plain", "augment", "equivarify", "frames")


def qm9_model(kind: str):
    from equivar.symmetry import FrameAveraging, equivarify, octahedral

    net = EnvironmentMLP.build()
    if kind == "equivarify":
        return equivarify(net, octahedral(), invariant=True)
    if kind == "frames":
        return FrameAveraging(net, group="O3", center=False)
    return net


def run_qm9(seeds: list[int], sizes: tuple[int, ...], steps: int) -> list[dict]:
    import torch

    from equivar.symmetry import octahedral, pca_frames
    from equivar.testing import random_rotation

    pos, feats, charges, molecule = environments()
    mats = octahedral().matrices()
    frames = pca_frames(pos, center=False)
    n_degenerate = int((frames.degenerate > 0).sum())
    min_gap = frames.gaps.min().item()
    results: dict[tuple[str, int], dict[str, list[float]]] = {}
    for seed in seeds:
        gen = torch.Generator().manual_seed(seed)
        perm = torch.randperm(100, generator=gen)
        test_mask = torch.isin(molecule, perm[:30])
        test_pos, test_feats, test_q = pos[test_mask], feats[test_mask], charges[test_mask]
        rot_o = mats[torch.randint(0, 24, (len(test_q),), generator=gen)]  # [n_test, 3, 3]
        rot_so3 = torch.stack([random_rotation(torch.float64, gen) for _ in range(len(test_q))])
        tests = {"mae": test_pos, "mae_O": test_pos @ rot_o.transpose(1, 2),
                 "mae_SO3": test_pos @ rot_so3.transpose(1, 2)}
        for size in sizes:
            train_mask = torch.isin(molecule, perm[30:30 + size])
            tr_pos, tr_feats, tr_q = pos[train_mask], feats[train_mask], charges[train_mask]
            # reference: the mean charge of each species in the training set
            z_train, z_test = tr_feats[:, -len(SPECIES):].argmax(1), test_feats[:, -5:].argmax(1)
            means = torch.stack([tr_q[z_train == s].mean() if (z_train == s).any() else tr_q.mean()
                                 for s in range(len(SPECIES))])
            baseline = (means[z_test] - test_q).abs().mean().item()
            plain_times = None
            for kind in QM9_MODELS:
                torch.manual_seed(seed)
                model = qm9_model(kind)
                batch_gen = torch.Generator().manual_seed(2000 + seed)

                def batches(kind=kind, tr_pos=tr_pos, tr_feats=tr_feats, tr_q=tr_q,
                            batch_gen=batch_gen):
                    pick = torch.randint(0, len(tr_q), (128,), generator=batch_gen)
                    p = tr_pos[pick]
                    if kind == "augment":
                        turn = mats[torch.randint(0, 24, (128,), generator=batch_gen)]
                        p = p @ turn.transpose(1, 2)
                    return (p, tr_feats[pick]), tr_q[pick]

                t_train = train(model, batches, steps, 1e-3, torch.nn.functional.mse_loss)
                rec = results.setdefault((kind, size), {"train_x": [], "infer_x": [],
                                                        "mae": [], "mae_O": [], "mae_SO3": []})
                with torch.no_grad():
                    t_infer, _ = median_time(
                        lambda m=model, p=test_pos, f=test_feats: m(p, f), repeats=3)
                    for key, p in tests.items():
                        rec[key].append(1e3 * (model(p, test_feats) - test_q).abs().mean().item())
                if kind == "plain":
                    plain_times = (t_train, t_infer)
                rec["train_x"].append(t_train / plain_times[0])
                rec["infer_x"].append(t_infer / plain_times[1])
                rec.setdefault("baseline", []).append(1e3 * baseline)
                rec["n_train"] = int(train_mask.sum())
            print(f"done qm9 seed={seed} molecules={size}", file=sys.stderr, flush=True)
    rows = []
    for (kind, size), rec in results.items():
        row = {"part": "b", "train_molecules": size, "train_atoms": rec["n_train"], "model": kind}
        for key in ("mae", "mae_O", "mae_SO3"):
            row[f"{key}_mean"], row[f"{key}_std"] = mean_std(rec[key])
        row["train_x"] = statistics.fmean(rec["train_x"])
        row["infer_x"] = statistics.fmean(rec["infer_x"])
        row["species_mean_mae"] = statistics.fmean(rec["baseline"])
        row["degenerate_envs"], row["min_rel_gap"] = n_degenerate, min_gap
        row["seeds"] = len(rec["mae"])
        rows.append(row)
    rows.sort(key=lambda r: (r["train_molecules"], QM9_MODELS.index(r["model"])))
    return rows


# --- output ---------------------------------------------------------------------------------------
def pm(mean: float, std: float, digits: int = 1) -> str:
    return f"{mean:.{digits}f} +- {std:.{digits}f}"


def table_a(rows: list[dict]) -> list[dict]:
    return [{"train_%": f"{100 * r['fraction']:g}", "n_train": r["n_train"], "model": r["model"],
             "params": r["params"], "test_acc_% (rot90)": pm(r["acc_mean"], r["acc_std"]),
             "err_45deg": f"{r['err45']:.3f}", "train_x": f"{r['train_x']:.2f}",
             "infer_x": f"{r['infer_x']:.2f}"} for r in rows]


def table_b(rows: list[dict]) -> list[dict]:
    return [{"train_mols": r["train_molecules"], "train_atoms": r["train_atoms"],
             "model": r["model"], "MAE_me": pm(r["mae_mean"], r["mae_std"]),
             "MAE_me_O": pm(r["mae_O_mean"], r["mae_O_std"]),
             "MAE_me_SO3": pm(r["mae_SO3_mean"], r["mae_SO3_std"]),
             "train_x": f"{r['train_x']:.2f}", "infer_x": f"{r['infer_x']:.2f}"} for r in rows]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], parents=[standard_parser()])
    ap.add_argument("--seeds", type=int, default=None, help="seeds (default 3; 1 with --quick)")
    ap.add_argument("--steps", type=int, default=None, help="Adam steps per digits model "
                    "(default 300; 60 with --quick)")
    ap.add_argument("--qm9-steps", type=int, default=None, help="Adam steps per QM9 model "
                    "(default 800; 100 with --quick)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--part", choices=("a", "b", "both"), default="both")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    seeds = list(range(args.seeds or (1 if args.quick else 3)))
    steps = args.steps or (60 if args.quick else 300)
    qm9_steps = args.qm9_steps or (100 if args.quick else 800)
    fractions = (0.10, 1.0) if args.quick else FRACTIONS
    sizes = (15,) if args.quick else (15, 70)
    start = time.perf_counter()
    rows_a = run_digits(seeds, fractions, steps) if args.part in ("a", "both") else []
    rows_b = run_qm9(seeds, sizes, qm9_steps) if args.part in ("b", "both") else []
    print(f"# hardware: {hardware()}")
    print(f"# versions: {versions()}")
    print(f"# seeds {seeds}, digits steps {steps}, qm9 steps {qm9_steps}, threads {args.threads}, "
          f"wall {time.perf_counter() - start:.0f} s")
    if rows_b:
        r = rows_b[0]
        print(f"# (b) charges of QM9 atoms (MAE in milli-e); predicting the species mean gives "
              f"{r['species_mean_mae']:.1f} me; PCA frames of the environments: "
              f"{r['degenerate_envs']} degenerate, smallest relative eigenvalue gap "
              f"{r['min_rel_gap']:.2g}")
        print_table(table_b(rows_b))
    if rows_a:
        print("# (a) sklearn digits, test set rotated by random multiples of 90 degrees")
        print_table(table_a(rows_a))
    if args.json:
        write_json(args.json, "equivarify", rows_a + rows_b)


if __name__ == "__main__":
    main()
