"""QM9 from qm9pack: the npz cache, the standard split, and targets in published units.

The fast tests convert only the first 1200 molecules into a temporary cache (under a second);
those touching all 130,831 molecules are marked slow. None writes to the user's cache.
"""

from pathlib import Path

import numpy as np
import pytest
from ase.io import read
from ase.units import Hartree

pytest.importorskip("pandas")
qm9mod = pytest.importorskip("equivar.data.datasets.qm9")
if qm9mod.qm9pack_version() == "":
    pytest.skip("qm9pack is not installed", allow_module_level=True)

SHIPPED = Path(__file__).resolve().parents[2] / "datasets" / "qm9_100.extxyz"
N_SMALL = 1200
MEV = 1000 * Hartree  # hartree -> meV, the module's constant written out
# QM9 isolated-atom U0 (atomref.txt), hartree, written out again to check the module's table
ATOM_U0 = {"H": -0.500273, "C": -37.846772, "N": -54.583861, "O": -75.064579, "F": -99.718730}


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory):
    """A cache of the first 1200 molecules (QM9 indices 1..1234 minus the uncharacterized)."""
    path = tmp_path_factory.mktemp("qm9") / "qm9_small.npz"
    qm9mod.build_cache(path, nrows=N_SMALL)
    return path


@pytest.fixture(scope="module")
def shipped():
    """The shipped 100-molecule extxyz, indexed by qm9pack row (energies there are in eV)."""
    return {a.info["qm9pack_row"]: a for a in read(SHIPPED, ":", format="extxyz")}


# --- the split -------------------------------------------------------------------------------


def test_standard_split_sizes_disjoint_and_complete():
    s = qm9mod.qm9_splits()
    assert [len(s[k]) for k in ("train", "valid", "test")] == [110_000, 10_000, 10_831]
    everything = np.concatenate([s["train"], s["valid"], s["test"]])
    assert len(np.unique(everything)) == qm9mod.QM9_SIZE == 130_831
    assert everything.min() == 0 and everything.max() == 130_830


def test_split_is_deterministic_and_seeded():
    a, b, c = qm9mod.qm9_splits(seed=0), qm9mod.qm9_splits(seed=0), qm9mod.qm9_splits(seed=1)
    for key in ("train", "valid", "test"):
        assert np.array_equal(a[key], b[key])
        assert not np.array_equal(a[key], c[key])
    # pinned: a change of numpy's generator or of our recipe would silently move molecules
    expected = np.random.default_rng(0).permutation(130_831)
    assert np.array_equal(a["test"], expected[120_000:])


def test_split_rejects_sizes_that_leave_no_test_set():
    with pytest.raises(ValueError, match="leave no test"):
        qm9mod.qm9_splits(100, sizes=(90, 10))
    assert len(qm9mod.qm9_splits(100, sizes=(80, 10))["test"]) == 10


# --- the cache ---------------------------------------------------------------------------------


def test_cache_layout_and_atomic_write(small_cache):
    arrays = qm9mod.load_arrays(small_cache)
    n = len(arrays["n_atoms"])
    assert n == N_SMALL
    assert arrays["pos"].dtype == np.float64 and arrays["pos"].shape == (arrays["offsets"][-1], 3)
    assert arrays["z"].dtype == np.uint8 and set(np.unique(arrays["z"])) <= {1, 6, 7, 8, 9}
    assert arrays["qm9_index"][0] == 1 and np.all(np.diff(arrays["qm9_index"]) > 0)
    assert [p.name for p in small_cache.parent.iterdir()] == [small_cache.name]  # no temp left


def test_cache_matches_the_shipped_subset_exactly(small_cache, shipped):
    """Positions, species and raw properties of the molecules both hold."""
    arrays = qm9mod.load_arrays(small_cache)
    rows = [r for r in shipped if r < N_SMALL]
    assert rows == [358, 699, 1083]  # QM9 368, 709, 1111
    for r in rows:
        atoms = shipped[r]
        a, b = arrays["offsets"][r], arrays["offsets"][r + 1]
        assert arrays["qm9_index"][r] == atoms.info["qm9_index"]
        assert arrays["z"][a:b].tolist() == atoms.numbers.tolist()
        assert np.allclose(arrays["pos"][a:b], atoms.positions, atol=5e-9, rtol=0)  # 8 decimals
        assert arrays["InternalEnergy_0K_au"][r] * Hartree == atoms.info["U0"]  # same float
        assert arrays["Dipole_debye"][r] == atoms.info["mu"]


def test_targets_in_published_units_by_hand(small_cache, shipped):
    """meV, D and bohr^3, and U0 as an atomization energy, recomputed from the shipped eV."""
    arrays = qm9mod.load_arrays(small_cache)
    atomized = qm9mod.target_values(arrays, ["U0", "homo", "lumo", "gap", "mu", "alpha"])
    total = qm9mod.target_values(arrays, ["U0"], atomization=False)
    for r in (358, 699, 1083):
        info, symbols = shipped[r].info, shipped[r].get_chemical_symbols()
        reference_ev = sum(ATOM_U0[s] for s in symbols) * Hartree
        assert total["U0"][r] == pytest.approx(1000 * info["U0"], rel=1e-15)
        assert atomized["U0"][r] == pytest.approx(1000 * (info["U0"] - reference_ev), abs=1e-6)
        for key in ("homo", "lumo", "gap"):
            assert atomized[key][r] == pytest.approx(1000 * info[key], rel=1e-14)
        assert atomized["mu"][r] == info["mu"] and atomized["alpha"][r] == info["alpha"]


def test_methane_by_hand(small_cache):
    """QM9 molecule 1 from its raw record: U0 -40.47893 Ha, HOMO -0.3877 Ha, gap 0.5048 Ha."""
    values = qm9mod.target_values(qm9mod.load_arrays(small_cache))
    u0_atomization_ha = -40.47893 - (-37.846772 + 4 * -0.500273)  # -0.631066 Ha
    assert values["U0"][0] == pytest.approx(u0_atomization_ha * 27211.386024367243, abs=1e-6)
    assert values["U0"][0] == pytest.approx(-17172.18, abs=0.01)  # 17.17 eV to atomize CH4
    assert values["homo"][0] == pytest.approx(-0.3877 * MEV, rel=1e-14)
    assert values["gap"][0] == pytest.approx(13736.308, abs=1e-3)
    assert values["mu"][0] == 0.0 and values["alpha"][0] == 13.21 and values["cv"][0] == 6.469
    assert values["zpve"][0] == pytest.approx(0.044749 * MEV, rel=1e-14)


def test_missing_qm9pack_is_named(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "qm9pack" else real(name, *a)
    )
    with pytest.raises(ModuleNotFoundError, match="pip install qm9pack"):
        qm9mod.build_cache(tmp_path / "x.npz", nrows=5)
    assert not list(tmp_path.iterdir())


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EQUIVAR_CACHE", str(tmp_path))
    assert qm9mod.cache_path() == tmp_path / f"qm9_v{qm9mod.CACHE_FORMAT}.npz"
    monkeypatch.delenv("EQUIVAR_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert qm9mod.cache_dir() == tmp_path / "xdg" / "equivar"


# --- the datasets ------------------------------------------------------------------------------


def test_qm9_datasets_on_a_small_cache(small_cache):
    sizes = (800, 200)  # 1200 molecules: 800 / 200 / 200
    parts = {k: qm9mod.qm9(k, ["U0", "gap"], cutoff=5.0, sizes=sizes, cache=small_cache)
             for k in ("train", "valid", "test")}  # fmt: skip
    assert [len(parts[k]) for k in ("train", "valid", "test")] == [800, 200, 200]
    ids = {k: {int(g.qm9_id) for g in ds} for k, ds in parts.items()}
    assert not ids["train"] & ids["valid"] and not ids["train"] & ids["test"]
    assert not ids["valid"] & ids["test"]
    graph = parts["train"][0]
    assert {"U0", "gap", "qm9_id", "edge_index"} <= set(graph.keys())
    assert "homo" not in graph and graph.U0.shape == (1,)
    assert parts["train"].cutoff == 5.0
    # limit: the first molecules of the same permutation, so smaller sets are nested
    small = qm9mod.qm9("train", ["gap"], sizes=sizes, limit=50, cache=small_cache)
    assert [int(g.qm9_id) for g in small] == [int(g.qm9_id) for g in parts["train"]][:50]
    assert float(small[0].gap) == pytest.approx(float(parts["train"][0].gap))


def test_qm9_graph_values_and_dtype(small_cache):
    import torch

    arrays = qm9mod.load_arrays(small_cache)
    ds = qm9mod.qm9("valid", ["U0", "mu"], sizes=(800, 200), limit=5, cache=small_cache,
                    dtype=torch.float64)  # fmt: skip
    rows = qm9mod.qm9_splits(N_SMALL, 0, (800, 200))["valid"][:5]
    values = qm9mod.target_values(arrays, ["U0", "mu"])
    for graph, r in zip(ds, rows, strict=True):
        assert int(graph.qm9_id) == arrays["qm9_index"][r]
        assert graph.pos.dtype == torch.float64
        a, b = arrays["offsets"][r], arrays["offsets"][r + 1]
        assert torch.equal(graph.pos, torch.from_numpy(arrays["pos"][a:b]))
        assert float(graph.U0) == values["U0"][r] and float(graph.mu) == values["mu"][r]


def test_qm9_rejects_bad_arguments(small_cache):
    with pytest.raises(ValueError, match="did you mean 'gap'"):
        qm9mod.qm9("train", ["gpa"], sizes=(800, 200), cache=small_cache)
    with pytest.raises(ValueError, match="split must be one of"):
        qm9mod.qm9("training", ["gap"], cache=small_cache)
    with pytest.raises(ValueError, match="exceeds the 200 molecules"):
        qm9mod.qm9("test", ["gap"], sizes=(800, 200), limit=201, cache=small_cache)
    with pytest.raises(ValueError, match="leave no test"):
        qm9mod.qm9("test", ["gap"], cache=small_cache)  # the standard split needs all of QM9


# --- all of QM9 --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("qm9_full") / "qm9.npz"
    qm9mod.build_cache(path)
    return path


@pytest.mark.slow
def test_full_cache_size_and_every_shipped_molecule(full_cache, shipped):
    arrays = qm9mod.load_arrays(full_cache)
    assert len(arrays["n_atoms"]) == 130_831 and arrays["offsets"][-1] == 2_359_210
    assert full_cache.stat().st_size < 80e6
    atomized = qm9mod.target_values(arrays, ["U0", "gap", "alpha"])
    for r, atoms in shipped.items():
        a, b = arrays["offsets"][r], arrays["offsets"][r + 1]
        assert arrays["z"][a:b].tolist() == atoms.numbers.tolist()
        assert np.allclose(arrays["pos"][a:b], atoms.positions, atol=5e-9, rtol=0)
        reference = sum(ATOM_U0[s] for s in atoms.get_chemical_symbols()) * Hartree
        assert atomized["U0"][r] == pytest.approx(1000 * (atoms.info["U0"] - reference), abs=1e-6)
        assert atomized["gap"][r] == pytest.approx(1000 * atoms.info["gap"], rel=1e-14)
        assert atomized["alpha"][r] == atoms.info["alpha"]


@pytest.mark.slow
def test_full_standard_split_datasets(full_cache):
    test = qm9mod.qm9("test", ["gap"], cache=full_cache, limit=None)
    valid = qm9mod.qm9("valid", ["gap"], cache=full_cache, limit=500)
    assert len(test) == 10_831 and len(valid) == 500
    assert not {int(g.qm9_id) for g in test} & {int(g.qm9_id) for g in valid}


@pytest.mark.slow
def test_corrupt_cache_is_rebuilt(tmp_path):
    path = tmp_path / "qm9.npz"
    path.write_bytes(b"not an npz")
    arrays = qm9mod.load_arrays(path)
    assert len(arrays["n_atoms"]) == 130_831
