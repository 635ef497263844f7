"""Write the checkpoints of ``tests/test_legacy_files.py``: files as equivar 0.1.0 wrote them
before the layers refactor (issue 27), kept so that every later version must still load them.

Run once, from the repository root (never again: these files are the record of the old format)::

    python tests/legacy/make_fixtures.py

It writes, next to this script: a training run's ``best.pt`` and ``checkpoint_last.pt``
(float64, a tiny potential on 30 frames of ``datasets/ethanol_xtb.extxyz``), a VMC checkpoint
(He, 3 iterations), an exported ``potential.pt2``, and ``expected.json`` with what each predicts
on the fixed inputs the test rebuilds.
"""

import json
import shutil
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DATA = ROOT / "datasets" / "ethanol_xtb.extxyz"


def main() -> None:
    from equivar.cli import main as cli
    from equivar.data import read
    from equivar.qmc.checkpoint import load_wavefunction
    from equivar.train import fit, load_checkpoint
    from equivar.train.export import export_model, load_exported

    torch.manual_seed(0)
    expected = {}
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        fit({"data": {"train": str(DATA), "max_structures": 30, "cutoff": 3.5, "batch_size": 10,
                      "valid_fraction": 0.2, "test_fraction": 0.2},
             "model": {"name": "potential", "options": {
                 "preset": "S", "num_channels": 4, "num_layers": 1, "lmax": 1, "sh_lmax": 1,
                 "radial_hidden": [8]}},
             "epochs": 1, "precision": "float64", "output": str(run),
             "progress": False})  # fmt: skip
        for name in ("best.pt", "checkpoint_last.pt"):
            shutil.copy(run / name, HERE / name)
        vmc = Path(tmp) / "vmc"
        assert cli(["vmc", "--system", "He", "--iterations", "3", "--walkers", "16",
                    "--eval-iterations", "4", "--burn-in", "5", "--no-progress", "--output",
                    str(vmc)]) == 0  # fmt: skip
        shutil.copy(vmc / "checkpoint.pt", HERE / "vmc_he.pt")

    model = load_checkpoint(HERE / "best.pt")
    dataset = read(DATA, cutoff=3.5)
    frames = [dataset[0], dataset[1]]
    from torch_geometric.data import Batch

    batch = Batch.from_data_list(list(frames))
    out = model(batch)
    expected["best.pt"] = {"energy": out["energy"].tolist(), "forces_0": out["forces"][0].tolist()}
    export_model(model, HERE / "potential.pt2", example=frames[0])
    exported = load_exported(HERE / "potential.pt2")
    got = exported(frames[0])
    expected["potential.pt2"] = {"energy": got["energy"].reshape(-1).tolist()}
    psi = load_wavefunction(HERE / "vmc_he.pt")
    x = torch.linspace(-1.0, 1.0, 6, dtype=torch.float64).reshape(1, 2, 3)
    sign, logabs = psi(x)
    expected["vmc_he.pt"] = {"x": x.tolist(), "sign": sign.tolist(), "logabs": logabs.tolist()}
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    main()
