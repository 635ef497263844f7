"""The generated datasets ``emt_metals.npz`` (ASE EMT) and ``ethanol_dft.npz`` (pyscf B3LYP):
layout, units, provenance, labels against their calculators, and the generators' determinism.

EMT labels are recomputed here (milliseconds), and one pyscf label (about a second, skipped
without pyscf).
"""

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

DATASETS = Path(__file__).resolve().parents[2] / "datasets"
EMT_FILE = DATASETS / "emt_metals.npz"
DFT_FILE = DATASETS / "ethanol_dft.npz"
XTB_ETHANOL = DATASETS / "md17_xtb" / "ethanol.npz"
HARTREE = 27.211386245988


@pytest.fixture(scope="module")
def scripts():
    """The generator scripts as modules (they live in datasets/, outside the package)."""
    sys.path.insert(0, str(DATASETS))
    try:
        yield (
            importlib.import_module("make_emt_metals"),
            importlib.import_module("make_ethanol_dft"),
        )
    finally:
        sys.path.remove(str(DATASETS))


def _load(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _frame(arrays: dict, f: int):
    """Frame ``f`` of an equivar-layout npz as ase.Atoms, plus its atom slice."""
    from ase import Atoms

    starts = np.concatenate([[0], np.cumsum(arrays["n_atoms"])])
    a, b = starts[f], starts[f + 1]
    pbc = arrays["pbc"][f]
    atoms = Atoms(numbers=arrays["z"][a:b], positions=arrays["pos"][a:b].astype(np.float64),
                  cell=arrays["cell"][f], pbc=pbc)  # fmt: skip
    return atoms, slice(a, b)


# ------------------------------------------------------------------------------ EMT metals


@pytest.fixture(scope="module")
def emt():
    return _load(EMT_FILE)


def test_emt_layout_and_units(emt):
    assert EMT_FILE.stat().st_size < 1_000_000
    n_frames, total = len(emt["n_atoms"]), int(emt["n_atoms"].sum())
    assert n_frames == 324 and set(emt["n_atoms"]) == {32}
    assert emt["z"].shape == (total,) and emt["pos"].shape == (total, 3)
    assert emt["pos"].dtype == np.float32 and emt["forces"].dtype == np.float32
    assert emt["forces"].shape == (total, 3)
    assert emt["energy"].shape == (n_frames,) and emt["energy"].dtype == np.float64
    assert emt["cell"].shape == (n_frames, 3, 3) and emt["pbc"].all()
    assert emt["per_atom_keys"].tolist() == ["forces"]
    assert set(emt["system"]) == {"Cu", "Pt", "CuAu"}
    assert {int(z) for z in np.unique(emt["z"])} == {29, 78, 79}
    # EMT energies are per-atom cohesive-energy deviations: small, positive at finite T
    per_atom = emt["energy"] / emt["n_atoms"]
    assert 0.0 < per_atom.min() and per_atom.max() < 0.5
    rms = np.sqrt(np.mean(emt["forces"].astype(np.float64) ** 2))
    assert 0.2 < rms < 2.0, rms  # eV/Angstrom for 300-1100 K metals
    # positions are wrapped and stored exactly on the 2^-12 Angstrom grid
    assert np.array_equal(emt["pos"] * 4096, np.round(emt["pos"] * 4096))


def test_emt_stress_present_symmetric_and_varied(emt):
    stress = emt["stress"]
    assert stress.shape == (len(emt["n_atoms"]), 3, 3)
    np.testing.assert_allclose(stress, np.swapaxes(stress, 1, 2), atol=1e-12)
    # strained cells give pressures of both signs and shear components
    pressure = -np.trace(stress, axis1=1, axis2=2) / 3
    assert pressure.min() < -0.005 and pressure.max() > 0.005  # eV/Angstrom^3 (0.8 GPa)
    assert np.abs(stress[:, 0, 1]).max() > 0.005


def test_emt_provenance():
    from equivar.data.datasets.emt import read_metadata

    meta = read_metadata(EMT_FILE)
    assert meta["dataset"] == "emt_metals"
    assert "EMT" in meta["calculator"]
    assert meta["units"]["energy"] == "eV" and meta["units"]["forces"] == "eV/Angstrom"
    assert meta["units"]["stress"].startswith("eV/Angstrom^3")
    assert meta["versions"]["ase"] and meta["script"] == "datasets/make_emt_metals.py"
    assert len(meta["runs"]) == 27
    temps = {r["temperature_K"] for r in meta["runs"]}
    assert temps == {300.0, 700.0, 1100.0}
    strained = [r for r in meta["runs"] if np.any(r["strain"])]
    assert len(strained) == 18


@pytest.mark.parametrize("f", [0, 200])
def test_emt_labels_recomputed(emt, f):
    """A stored frame relabelled by EMT: same energy, forces (to their 2^-14 rounding), stress;
    forces are -dE/dx by central differences, stress dE/d(strain)/V."""
    from ase.calculators.emt import EMT

    atoms, rows = _frame(emt, f)
    atoms.calc = EMT()
    assert atoms.get_potential_energy() == pytest.approx(emt["energy"][f], abs=1e-10)
    np.testing.assert_allclose(atoms.get_forces(), emt["forces"][rows], atol=2.0**-14)
    np.testing.assert_allclose(atoms.get_stress(voigt=False), emt["stress"][f], atol=1e-10)

    h = 1e-4
    for i, c in [(0, 0), (7, 1), (31, 2)]:
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[i, c] += h
        minus.positions[i, c] -= h
        plus.calc, minus.calc = EMT(), EMT()
        fd = -(plus.get_potential_energy() - minus.get_potential_energy()) / (2 * h)
        assert fd == pytest.approx(float(emt["forces"][rows][i, c]), abs=1e-4)
    eps = 1e-5
    for a, b in [(0, 0), (0, 1)]:
        energies = []
        for sign in (1, -1):
            strain = np.eye(3)
            strain[a, b] += sign * eps / (1 if a == b else 2)
            strain[b, a] += 0 if a == b else sign * eps / 2
            s = atoms.copy()
            s.set_cell(atoms.cell[:] @ strain, scale_atoms=True)
            s.calc = EMT()
            energies.append(s.get_potential_energy())
        d = (energies[0] - energies[1]) / (2 * eps) / atoms.get_volume()
        assert d == pytest.approx(emt["stress"][f][a, b], abs=1e-6)


def test_emt_reads_as_periodic_graphs():
    from equivar.data.datasets.emt import load_emt_metals

    ds = load_emt_metals(5.0, systems=["Pt"])
    assert len(ds) == 108
    g = ds[0]
    assert g.stress.shape == (1, 3, 3) and g.forces.shape == (32, 3)
    assert g.shifts.abs().sum() > 0  # edges cross the periodic boundary
    with pytest.raises(ValueError, match="unknown system"):
        load_emt_metals(5.0, systems="Fe")


def test_emt_script_is_deterministic(scripts, tmp_path):
    """Two tiny runs give the same bytes, and one run of the default protocol reproduces the
    committed frames."""
    make_emt, make_dft = scripts
    tiny = dict(frames=2, interval=4, equil=6, repeat=(1, 1, 1), systems=("Cu", "CuAu"))
    paths = []
    for k in range(2):
        arrays, meta = make_emt.generate(**tiny)
        paths.append(tmp_path / f"tiny{k}.npz")
        make_dft.write_npz(paths[-1], arrays, meta)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    arrays = _load(paths[0])
    assert len(arrays["n_atoms"]) == 2 * 2 * len(make_emt.RUNS)
    assert set(arrays["n_atoms"]) == {4}

    committed = _load(EMT_FILE)
    frames, _ = make_emt.run_frames("CuAu", 4, seed=0, frames=2, interval=25, equil=200,
                                    repeat=(2, 2, 2))  # fmt: skip
    rows = np.flatnonzero((committed["system"] == "CuAu") & (committed["run"] == 4))[:2]
    for rec, f in zip(frames, rows, strict=True):
        atoms, sl = _frame(committed, f)
        assert np.array_equal(rec["atoms"].numbers, atoms.numbers)
        np.testing.assert_allclose(rec["atoms"].positions, atoms.positions, atol=2.0**-12)
        assert rec["energy"] == pytest.approx(committed["energy"][f], abs=1e-6)


# ------------------------------------------------------------------------------ ethanol DFT


@pytest.fixture(scope="module")
def dft():
    if not DFT_FILE.is_file():
        pytest.skip("datasets/ethanol_dft.npz not generated yet")
    return _load(DFT_FILE)


def test_dft_layout_and_units(dft):
    assert DFT_FILE.stat().st_size < 1_000_000
    n_frames = len(dft["n_atoms"])
    assert n_frames >= 200 and set(dft["n_atoms"]) == {9}
    assert dft["pos"].shape == (9 * n_frames, 3) and dft["forces"].shape == (9 * n_frames, 3)
    assert dft["energy"].shape == (n_frames,) and not dft["pbc"].any()
    assert dft["per_atom_keys"].tolist() == ["forces"]
    assert dft["z"][:9].tolist() == [6, 6, 8, 1, 1, 1, 1, 1, 1]
    # total energies of ethanol near its minimum, stored in eV: HF/6-31G about -153.99 hartree,
    # B3LYP/6-31G about -154.97
    from equivar.data.datasets.emt import read_metadata

    centre = {"HF": -153.99, "B3LYP": -154.97}[read_metadata(DFT_FILE)["settings"]["method"]]
    assert np.all(np.abs(dft["energy"] / HARTREE - centre) < 0.06)
    forces = dft["forces"].astype(np.float64).reshape(n_frames, 9, 3)
    rms = np.sqrt(np.mean(forces**2))
    assert 0.4 < rms < 2.0, rms  # eV/Angstrom at 500 K
    # no net force beyond the integration grid's translational error
    assert np.abs(forces.sum(axis=1)).max() < 0.01


def test_dft_frames_are_the_xtb_frames(dft):
    """Positions are the source's stored positions, exactly; the DFT and xTB energies of the
    same frames track each other."""
    xtb = _load(XTB_ETHANOL)
    frame = dft["source_frame"]
    assert np.all(np.diff(frame) > 0) and frame[0] >= 0 and frame[-1] < len(xtb["E"])
    np.testing.assert_array_equal(dft["pos"].reshape(-1, 9, 3), xtb["R"][frame])
    np.testing.assert_array_equal(dft["xtb_energy"], xtb["E"][frame])
    np.testing.assert_array_equal(dft["md_step"], xtb["md_step"][frame])
    assert np.corrcoef(dft["energy"], dft["xtb_energy"])[0, 1] > 0.8


def test_dft_provenance(dft):
    from equivar.data.datasets.emt import read_metadata

    meta = read_metadata(DFT_FILE)
    s = meta["settings"]
    assert s["method"] in ("HF", "B3LYP") and s["basis"] == "6-31G"
    assert s["conv_tol_hartree"] <= 1e-9 and s["conv_tol_grad"] <= 1e-5
    assert s["reference"] == {"HF": "RHF", "B3LYP": "RKS"}[s["method"]]
    if s["method"] == "B3LYP":
        assert s["grid_level"] >= 2 and s["xc"].startswith("b3lyp")
    assert bool(s["density_fit"]) == bool(s["auxbasis"])
    assert meta["versions"]["pyscf"]
    assert meta["units"] == {"pos": "Angstrom", "energy": "eV", "forces": "eV/Angstrom"}
    assert meta["n_frames"] == len(dft["n_atoms"])
    assert meta["source"]["file"] == "datasets/md17_xtb/ethanol.npz"


def test_dft_reads_as_graphs(dft):
    from equivar.data import read

    ds = read(DFT_FILE, cutoff=5.0, index=":3")
    assert len(ds) == 3 and ds[0].forces.shape == (9, 3)
    assert float(ds[0].energy) == pytest.approx(dft["energy"][0])


def test_dft_chunks_resume_and_assemble(scripts, tmp_path, monkeypatch):
    """A killed run resumes from its chunk files (nothing recomputed) and assembles in source
    order; a fake single point stands in for pyscf."""
    _, make_dft = scripts
    calls = []

    def fake(z, pos, args):
        calls.append(pos.copy())
        return {"energy": -float(np.sum(pos**2)), "forces": 2 * pos, "cycles": 1,
                "scf_s": 0.0, "grad_s": 0.0}  # fmt: skip

    monkeypatch.setattr(make_dft, "single_point", fake)
    argv = ["--frames", "7", "--stride", "3", "--chunk", "3", "--method", "hf",
            "--work-dir", str(tmp_path / "chunks"), "--out", str(tmp_path / "out.npz")]  # fmt: skip
    make_dft.main(argv)
    assert len(calls) == 7
    first = (tmp_path / "out.npz").read_bytes()
    (tmp_path / "out.npz").unlink()
    (tmp_path / "chunks" / "chunk_0002.npz").unlink()  # the run was "killed" in the last chunk
    make_dft.main(argv)
    assert len(calls) == 8  # only the lost chunk's one frame again
    assert (tmp_path / "out.npz").read_bytes() == first
    out = _load(tmp_path / "out.npz")
    assert out["source_frame"].tolist() == [0, 3, 6, 9, 12, 15, 18]  # every 3rd frame first
    xtb = _load(XTB_ETHANOL)
    pos = xtb["R"][out["source_frame"]].astype(np.float64)
    np.testing.assert_allclose(out["energy"], -np.sum(pos**2, axis=(1, 2)))
    assert make_dft.read_metadata(tmp_path / "out.npz")["complete"] is True


def test_frame_order_prefixes_spread_evenly(scripts):
    _, make_dft = scripts
    order = make_dft.frame_order(1500, 5)
    assert sorted(order.tolist()) == list(range(1500))
    assert order[:300].tolist() == list(range(0, 1500, 5))


def test_dft_label_recomputed(scripts, dft):
    """Frame 0 relabelled by pyscf with the stored settings (~1 s for HF, ~4 s for B3LYP)."""
    import argparse

    pytest.importorskip("pyscf")

    _, make_dft = scripts
    s = make_dft.read_metadata(DFT_FILE)["settings"]
    args = argparse.Namespace(method=s["method"].lower(), grid_level=s["grid_level"],
                              density_fit=s["density_fit"], conv_tol=s["conv_tol_hartree"],
                              conv_tol_grad=s["conv_tol_grad"])  # fmt: skip
    sp = make_dft.single_point(dft["z"][:9], dft["pos"][:9].astype(np.float64), args)
    assert sp["energy"] == pytest.approx(dft["energy"][0], abs=1e-6)
    np.testing.assert_allclose(sp["forces"], dft["forces"][:9], atol=1e-4)
