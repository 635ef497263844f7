"""Labels under keys of their own (MACE's energy_key/forces_key/...): read from extxyz, .npz and
shards to the same graphs as under equivar's names; a missing key is named with the keys there."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator

from equivar import keys as K
from equivar.data import AtomsDataset, LabelKeys, from_ase, read, write_npz, write_shards

CUTOFF = 3.0
REF = {"energy_key": "REF_energy", "forces_key": "REF_forces", "stress_key": "REF_stress",
       "virial_key": "REF_virial"}  # fmt: skip
LABELS = (K.ENERGY, K.FORCES, K.STRESS, K.VIRIAL)


def labelled_frames(n: int = 3) -> list:
    """Periodic Cu frames with energy, forces and stress on a calculator (where extxyz puts
    them) and a virial in ``info``; the values are arbitrary numbers, not physics."""
    rng = np.random.default_rng(0)
    frames = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((1, 1, 1 + k % 2))
        atoms.rattle(0.05, seed=k)
        stress = rng.normal(size=(3, 3))
        atoms.calc = SinglePointCalculator(atoms, energy=float(rng.normal()),
                                           forces=rng.normal(size=(len(atoms), 3)),
                                           stress=stress + stress.T)  # fmt: skip
        virial = rng.normal(size=(3, 3))
        atoms.info[K.VIRIAL] = virial + virial.T
        frames.append(atoms)
    return frames


def as_mace(frames: list) -> list:
    """The same frames with their labels under MACE-style keys, in info/arrays (no calculator);
    the stress as 9 values, the virial as 6 Voigt values (xx, yy, zz, yz, xz, xy)."""
    out = []
    for atoms in frames:
        new = atoms.copy()  # no calculator
        new.info.pop(K.VIRIAL)
        new.info["REF_energy"] = atoms.get_potential_energy()
        new.arrays["REF_forces"] = atoms.get_forces().copy()
        new.info["REF_stress"] = atoms.get_stress(voigt=False).copy()
        v = atoms.info[K.VIRIAL]
        new.info["REF_virial"] = np.array([v[0, 0], v[1, 1], v[2, 2], v[1, 2], v[0, 2], v[0, 1]])
        out.append(new)
    return out


def assert_same_graphs(got, expected) -> None:
    """Labels and structure are copied, so they are compared exactly; the edges are built by
    the same code from the same positions, compared to rounding all the same."""
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert set(g.keys()) == set(e.keys())
        for key in (*LABELS, K.POSITIONS, K.CELL, K.ATOMIC_NUMBERS, K.EDGE_INDEX):
            assert torch.equal(g[key], e[key]), key
        torch.testing.assert_close(g[K.EDGE_SHIFTS], e[K.EDGE_SHIFTS], rtol=0, atol=1e-12)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The frames written to extxyz twice: labels under equivar's names and under REF_*."""
    folder = tmp_path_factory.mktemp("labels")
    frames = labelled_frames()
    plain, mace = folder / "plain.extxyz", folder / "mace.extxyz"
    ase.io.write(plain, frames, format="extxyz")
    ase.io.write(mace, as_mace(frames), format="extxyz")
    return frames, plain, mace


def test_extxyz_with_ref_keys_reads_like_default_keys(files):
    _, plain, mace = files
    header = mace.read_text().splitlines()[1]
    assert "REF_energy=" in header and "REF_forces:R:3" in header and " energy=" not in header
    expected = read(plain, CUTOFF, dtype=torch.float64)
    got = read(mace, CUTOFF, dtype=torch.float64, **REF)
    assert_same_graphs(got, expected)
    assert got[0][K.STRESS].shape == got[0][K.VIRIAL].shape == (1, 3, 3)
    assert not {"REF_energy", "REF_forces", "REF_stress", "REF_virial"} & set(got[0].keys())
    assert got.labels == LabelKeys(**REF)
    assert "REF_energy" in got.atoms[0].info  # the frames stay as the file has them


def test_the_key_wins_over_a_calculator_label_of_the_same_name():
    """MACE's advice: keep references under REF_energy, since ASE turns ``energy`` into a
    calculator result; when both are there, the key asked for is the energy."""
    water = molecule("H2O")
    water.calc = SinglePointCalculator(water, energy=-1.0, forces=np.zeros((3, 3)))
    water.info["REF_energy"] = -2  # extxyz reads "REF_energy=-2" as an integer
    water.arrays["DFT_forces"] = np.ones((3, 3))
    data = from_ase(water, CUTOFF, dtype=torch.float64,
                    labels=LabelKeys(energy_key="REF_energy", forces_key="DFT_forces"))
    assert data[K.ENERGY].tolist() == [-2.0] and data[K.ENERGY].dtype == torch.float64
    assert torch.equal(data[K.FORCES], torch.ones(3, 3, dtype=torch.float64))
    assert "REF_energy" not in data.keys() and "DFT_forces" not in data.keys()
    # free_energy is a calculator result like energy: a key can name it too
    water.calc = SinglePointCalculator(water, energy=-1.0, free_energy=-1.5)
    data = from_ase(water, CUTOFF, labels=LabelKeys(energy_key="free_energy"))
    assert data[K.ENERGY].tolist() == [-1.5]


def test_npz_arrays_and_shards_under_ref_keys(tmp_path, files):
    frames, _, _ = files
    expected = AtomsDataset(frames, CUTOFF, dtype=torch.float64)
    mace = as_mace(frames)
    write_npz(tmp_path / "mace.npz", mace)  # REF_* become arrays of those names
    with np.load(tmp_path / "mace.npz") as f:
        assert "REF_forces" in f["per_atom_keys"].tolist() and f["REF_energy"].shape == (3,)
    assert_same_graphs(read(tmp_path / "mace.npz", CUTOFF, dtype=torch.float64, **REF), expected)
    shards = write_shards(mace, tmp_path / "shards")
    got = read(shards, CUTOFF, dtype=torch.float64, **REF)
    assert_same_graphs(got, expected)
    assert_same_graphs(got.subset([2, 0]), [expected[2], expected[0]])
    with pytest.raises(ValueError, match=r"shards in .*no energy label 'dft_energy' "
                       r"\(energy_key\); there are stored fields \[.*'REF_energy'"):
        read(shards, CUTOFF, energy_key="dft_energy")
    with pytest.raises(ValueError, match=r"the forces label 'REF_energy' is stored per structure; "
                       r"forces_key must name a per-atom field"):
        read(shards, CUTOFF, forces_key="REF_energy")


def test_a_missing_key_names_the_file_the_frame_and_the_keys_there(tmp_path, files):
    frames, _, mace_path = files
    mace = as_mace(frames)
    del mace[2].info["REF_energy"]
    mace[2].info["REF_Energy"] = 1.0
    path = tmp_path / "gap.extxyz"
    ase.io.write(path, mace, format="extxyz")
    expected = (rf"path '{path}', frame 2: no energy label 'REF_energy' \(energy_key\); there "
                r"are atoms.info keys \['REF_Energy', 'REF_stress', 'REF_virial'\], "
                r"atoms.arrays keys \['REF_forces'\], calculator results \[\]; did you mean "
                r"'REF_Energy'\?")
    with pytest.raises(ValueError, match=expected):
        read(path, CUTOFF, **REF)
    with pytest.raises(ValueError, match=r"frame 2: no energy label"):
        read(path, CUTOFF, index="1:", **REF)  # the file's frame number, not the selection's
    with pytest.raises(ValueError, match=r"frame 1 of those chosen by index='-2:'"):
        read(path, CUTOFF, index="-2:", **REF)
    with pytest.raises(ValueError, match=r"frame 0: no forces label 'forces_ref'.*\['REF_forces'\]"
                       r".*did you mean 'REF_forces'\?"):
        read(mace_path, CUTOFF, forces_key="forces_ref")
    with pytest.raises(ValueError, match=r"frame 0: the forces label 'REF_energy' is in atoms.info "
                       r"\(one value per frame\); forces_key must name a per-atom value"):
        read(mace_path, CUTOFF, forces_key="REF_energy")
    with pytest.raises(ValueError, match=r"the energy label 'REF_virial' \(energy_key\) has shape "
                       r"\[1, 6\], expected one number per frame"):
        read(mace_path, CUTOFF, energy_key="REF_virial")
    # keys left at their defaults stay optional: an unlabelled file reads as before
    assert K.ENERGY not in read(mace_path, CUTOFF)[0].keys()


def test_label_keys_are_checked():
    with pytest.raises(ValueError, match="energy_key and forces_key both name 'forces'"):
        LabelKeys(energy_key="forces")
    with pytest.raises(ValueError, match="stress_key must be a non-empty string"):
        LabelKeys(stress_key="")
    with pytest.raises(ValueError, match="energy_key and virial_key both name 'E'"):
        read("unused.extxyz", CUTOFF, energy_key="E", virial_key="E")
    assert LabelKeys().renamed() == {} and str(LabelKeys()) == "the default label keys"
    graphs = [from_ase(molecule("H2O"), CUTOFF)]
    with pytest.raises(ValueError, match="graphs \\(Data\\) carry them under equivar's names"):
        AtomsDataset(graphs, CUTOFF, labels=LabelKeys(energy_key="REF_energy"))
    assert AtomsDataset(graphs, CUTOFF).labels is None
