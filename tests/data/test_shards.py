"""HDF5 shards: graphs read back lazily equal the in-memory ones bit for bit, in loaders with and
without workers, through split/subset, statistics and training; broken shards fail clearly."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

pytest.importorskip("h5py")

from equivar import keys as K  # noqa: E402
from equivar.data import (  # noqa: E402
    AtomsDataset,
    ShardedDataset,
    ShardWriter,
    compute_statistics,
    loader,
    read,
    write_shards,
)

ROOT = Path(__file__).resolve().parents[2]
ETHANOL = ROOT / "datasets" / "ethanol_xtb.extxyz"


def frames(n: int = 5) -> list:
    """Periodic Cu of 4 or 8 atoms with every kind of target: energy, forces, stress (Voigt ->
    3x3), dipole, charges, a per-atom array and an integer info entry."""
    out = []
    rng = np.random.default_rng(0)
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((1, 1, 1 + k % 2))
        atoms.rattle(0.05, seed=k)
        m = len(atoms)
        atoms.calc = SinglePointCalculator(
            atoms, energy=rng.normal(), forces=rng.normal(size=(m, 3)),
            stress=rng.normal(size=6), dipole=rng.normal(size=3), charges=rng.normal(size=m))
        atoms.info["step"] = k
        atoms.arrays["q"] = rng.normal(size=(m, 2))
        out.append(atoms)
    return out


def assert_identical(got, expected):
    """Same fields, dtypes, shapes and bits (no tolerance)."""
    assert len(got) == len(expected)
    for k, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert sorted(g.keys()) == sorted(e.keys()), k
        for key in e.keys():
            assert g[key].dtype == e[key].dtype and torch.equal(g[key], e[key]), (k, key)


@pytest.fixture
def shards(tmp_path):
    data = frames()
    write_shards(data, tmp_path / "shards", shard_size=2)
    return tmp_path / "shards", data


def test_round_trip_is_bit_identical_to_the_in_memory_dataset(shards):
    path, data = shards
    ds = read(path, 3.0, dtype=torch.float64)
    assert isinstance(ds, ShardedDataset) and len(ds) == 5
    expected = AtomsDataset(data, 3.0, dtype=torch.float64)
    assert_identical(list(ds), list(expected))
    g = ds[1]
    assert g[K.STRESS].shape == (1, 3, 3) and g["q"].shape == (8, 2) and g[K.CHARGES].shape == (8,)
    assert g["step"].dtype == torch.int64 and g[K.PBC].dtype == torch.bool
    # float32 graphs round the stored float64 exactly as from_ase does
    assert_identical(list(read(path, 3.0, dtype=torch.float32)),
                     list(AtomsDataset(data, 3.0, dtype=torch.float32)))
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["version"] == 1 and manifest["n_structures"] == 5
    assert [s["n_structures"] for s in manifest["shards"]] == [2, 2, 1]
    assert manifest["n_atoms"] == 4 + 8 + 4 + 8 + 4 and manifest["species"] == [29]
    assert manifest["fields"][K.FORCES] == {"level": "node", "dtype": "<f8", "shape": [3]}
    assert manifest["units"][K.STRESS] == "eV/Angstrom^3"
    assert ds.manifest == manifest and read(path / "manifest.json", 3.0).path == path


def test_graphs_and_compression_round_trip(tmp_path):
    graphs = AtomsDataset(frames(3), 3.0, dtype=torch.float32)  # Data in, float32 kept
    write_shards(graphs, tmp_path / "g", compression="gzip")
    ds = ShardedDataset(tmp_path / "g", 3.0, dtype=torch.float32)
    assert ds.manifest["fields"][K.POSITIONS]["dtype"] == "<f4"
    assert_identical(list(ds), list(AtomsDataset(list(graphs), 3.0)))
    # a scalar graph-level extra and an integer per-atom one survive too
    extra = [g.clone() for g in graphs]
    for k, g in enumerate(extra):
        g.temperature, g.tag = torch.tensor(300.0 + k), torch.arange(g.num_nodes)
    write_shards(extra, tmp_path / "extra")
    back = list(ShardedDataset(tmp_path / "extra", 3.0, dtype=torch.float32))
    assert back[2].temperature.shape == () and back[2].temperature.item() == 302.0
    assert_identical(back, list(AtomsDataset(extra, 3.0)))
    # another cutoff: edges are rebuilt on read
    assert_identical(list(ShardedDataset(tmp_path / "g", 2.0, dtype=torch.float32)),
                     list(AtomsDataset(list(graphs), 2.0)))


def test_loader_with_two_workers_gives_the_same_batches(shards):
    path, _ = shards
    ds = read(path, 3.0, dtype=torch.float64)
    ds[0]  # the parent has shards open when the workers fork
    serial = list(loader(ds, 2))
    parallel = list(loader(ds, 2, num_workers=2))
    assert len(serial) == len(parallel) == 3
    for a, b in zip(serial, parallel, strict=True):
        assert_identical([a], [b])
    shuffled = [loader(ds, 2, shuffle=True, num_workers=w,
                       generator=torch.Generator().manual_seed(3)) for w in (0, 2)]
    for a, b in zip(*shuffled, strict=True):
        assert_identical([a], [b])


@pytest.mark.slow
def test_loader_with_spawned_workers(shards):
    path, _ = shards
    ds = read(path, 3.0, dtype=torch.float64)
    serial = list(loader(ds, 2))
    spawned = list(loader(ds, 2, num_workers=2, multiprocessing_context="spawn"))
    for a, b in zip(serial, spawned, strict=True):
        assert_identical([a], [b])


def test_pickled_dataset_reopens_its_shards(shards):
    path, _ = shards
    ds = read(path, 3.0, dtype=torch.float64)
    first = ds[4]
    clone = pickle.loads(pickle.dumps(ds))  # what a spawned worker receives
    assert not clone._readers
    assert_identical([clone[4]], [first])
    ds.close()
    assert_identical([ds[4]], [first])


def test_subset_split_and_index_match_the_in_memory_dataset(shards):
    path, data = shards
    ds = read(path, 3.0, dtype=torch.float64)
    mem = AtomsDataset(data, 3.0, dtype=torch.float64)
    for sizes in ([0.6, 0.4], [2, 1]):
        for got, expected in zip(ds.split(sizes, seed=7), mem.split(sizes, seed=7), strict=True):
            assert isinstance(got, ShardedDataset)
            assert_identical(list(got), list(expected))
    sub = ds.subset([4, 0, -1])
    assert_identical(list(sub), [mem[4], mem[0], mem[4]])
    assert_identical(list(sub.subset([1])), [mem[0]])
    assert_identical([ds[-1]], [mem[4]])
    assert_identical(list(read(path, 3.0, index="1:4", dtype=torch.float64)), list(mem)[1:4])
    with pytest.raises(IndexError, match="out of range"):
        ds[5]
    with pytest.raises(IndexError, match="indices must lie"):
        ds.subset([7])
    with pytest.raises(TypeError, match="index must be an integer"):
        ds[1.0]


def test_with_dtype_is_a_view_in_another_dtype(shards):
    path, data = shards
    ds = read(path, 3.0, dtype=torch.float64).subset([3, 1])
    f32 = ds.with_dtype(torch.float32)
    assert ds.dtype == torch.float64 and f32.dtype == torch.float32 and len(f32) == 2
    assert_identical(list(f32), list(AtomsDataset([data[3], data[1]], 3.0, dtype=torch.float32)))
    assert ds[0].pos.dtype == torch.float64  # the original is untouched
    with pytest.raises(TypeError, match="floating dtype"):
        ds.with_dtype(torch.int64)


def test_statistics_stream_over_shards(shards):
    path, data = shards
    got = compute_statistics(read(path, 3.0, dtype=torch.float64))
    assert got == compute_statistics(AtomsDataset(data, 3.0, dtype=torch.float64))


def test_convert_cli(tmp_path):
    from equivar.cli import main

    out = tmp_path / "shards"
    assert main(["convert", str(ETHANOL), "-o", str(out), "--shard-size", "5",
                 "--index", ":12", "-q"]) == 0
    ds = read(out, 3.5, dtype=torch.float64)
    assert len(ds) == 12 and ds.manifest["n_shards"] == 3
    assert ds.manifest["metadata"]["sources"][0]["n_structures"] == 12
    assert_identical(list(ds), list(read(ETHANOL, 3.5, index=":12", dtype=torch.float64)))
    assert main(["convert", str(ETHANOL), "-o", str(out), "-q"]) == 2  # no silent overwrite
    assert main(["convert", str(ETHANOL), "-o", str(tmp_path / "x"), "--shard-size", "0"]) == 2


def test_fit_trains_from_a_shard_directory(tmp_path):
    from equivar.train import fit

    out = tmp_path / "shards"
    write_shards(read(ETHANOL, 3.5, index=":12", dtype=torch.float64), out, shard_size=5)
    cfg = {
        "data": {"train": str(out), "cutoff": 3.5, "batch_size": 4, "valid_batch_size": 4,
                 "valid_fraction": 0.17, "test_fraction": 0.17},
        "model": {"name": "potential", "options": {"preset": "S", "num_channels": 4}},
        "optim": {"lr": 5e-3, "ema_decay": 0.0},
        "epochs": 1, "precision": "float64", "output": str(tmp_path / "run"),
        "progress": False,
    }  # fmt: skip
    result = fit(cfg)
    assert (tmp_path / "run" / "best.pt").is_file() and result["test"]["forces_mae"] > 0


@pytest.mark.slow
def test_training_from_shards_equals_training_from_the_file(tmp_path):
    from equivar.train import fit

    write_shards(read(ETHANOL, 3.5, index=":20", dtype=torch.float64), tmp_path / "s")
    results = []
    for name, train in (("file", ETHANOL), ("shards", tmp_path / "s")):
        cfg = {
            "data": {"train": str(train), "max_structures": 20, "cutoff": 3.5, "batch_size": 4,
                     "valid_fraction": 0.2, "test_fraction": 0.2},
            "model": {"name": "potential", "options": {"preset": "S", "num_channels": 4}},
            "epochs": 2, "precision": "float64", "output": str(tmp_path / name),
            "progress": False,
        }  # fmt: skip
        results.append(fit(cfg)["test"])
    assert results[0] == results[1]


def test_writer_errors_and_interrupted_conversions(tmp_path):
    data = frames(3)
    data[1].positions[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"structure 1: pos .*(NaN|finite)"):
        write_shards(data, tmp_path / "nan", shard_size=1)
    assert not (tmp_path / "nan").exists()  # the shard of structure 0 was removed
    data = frames(3)
    del data[2].calc.results["stress"]
    with pytest.raises(ValueError, match=r"structure 2 has fields .*differing: \['stress'\]"):
        write_shards(data, tmp_path / "mixed")
    with pytest.raises(TypeError, match="structure 0: structures must be ase.Atoms or Data"):
        write_shards([np.zeros((2, 3))], tmp_path / "arrays")
    with pytest.raises(ValueError, match="structures is empty"):
        write_shards([], tmp_path / "empty")
    with pytest.raises(ValueError, match="shard_size must be a positive integer"):
        write_shards(frames(1), tmp_path / "x", shard_size=0)
    # a conversion killed after its first shard: shards but no manifest
    writer = ShardWriter(tmp_path / "killed", shard_size=1)
    writer.add(frames(1)[0])
    assert (tmp_path / "killed" / "shard-00000.h5").is_file()
    with pytest.raises(FileNotFoundError, match="conversion was interrupted"):
        read(tmp_path / "killed", 3.0)
    # a finished one is never overwritten silently; with overwrite, stale shards go
    write_shards(frames(3), tmp_path / "done", shard_size=1)
    with pytest.raises(ValueError, match="already holds shards"):
        write_shards(frames(2), tmp_path / "done")
    write_shards(frames(2), tmp_path / "done", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "done").iterdir()) == [
        "manifest.json", "shard-00000.h5"]
    assert len(read(tmp_path / "done", 3.0)) == 2


def _edit_manifest(path: Path, **changes) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    manifest.update(changes)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_reader_errors_name_the_problem(shards, tmp_path):
    path, _ = shards
    shard = path / "shard-00001.h5"
    original = shard.read_bytes()
    with pytest.raises(FileNotFoundError, match="directory without a shard manifest"):
        read(tmp_path, 3.0)
    with pytest.raises(ValueError, match="give its directory"):
        read(shard, 3.0)
    shard.write_bytes(original[: len(original) // 2])
    with pytest.raises(ValueError, match="shard-00001.h5.* bytes but the manifest says.*truncated"):
        read(path, 3.0)
    shard.write_bytes(b"\0" * len(original))
    with pytest.raises(ValueError, match="shard-00001.h5.*not a readable HDF5 file"):
        read(path, 3.0)
    shard.unlink()
    with pytest.raises(FileNotFoundError, match="shard-00001.h5.* is missing"):
        read(path, 3.0)
    shard.write_bytes(original)
    import h5py

    with h5py.File(shard, "r+") as h5:  # a NaN written behind the writer's back: found on read
        h5["node/pos"][5, 1] = np.nan
    with pytest.raises(ValueError, match=r"structure 3 \(shard-00001.h5 row 1\): pos .*finite"):
        read(path, 3.0)[3]
    _edit_manifest(path, n_structures=6)
    with pytest.raises(ValueError, match="says 6 structures in 3 shards but lists 5"):
        read(path, 3.0)
    _edit_manifest(path, n_structures=5, version=2)
    with pytest.raises(ValueError, match="has version 2; this equivar reads version 1"):
        read(path, 3.0)
    _edit_manifest(path, version=1, format="other")
    with pytest.raises(ValueError, match="not an equivar shard manifest"):
        read(path, 3.0)


def test_shard_header_must_agree_with_the_manifest(shards):
    path, _ = shards
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["shards"][0]["n_structures"], manifest["shards"][1]["n_structures"] = 1, 3
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="shard-00000.h5.* holds 2 structures .* manifest says 1"):
        read(path, 3.0)
