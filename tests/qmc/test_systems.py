"""Atoms and molecules: Hund's-rule spins, electron counts, validation with clear messages."""

import math

import pytest

from equivar.qmc import GROUND_STATE_SPIN, Molecule, atom, get_system


@pytest.mark.parametrize("symbol, n_up, n_down", [
    ("H", 1, 0), ("He", 1, 1), ("Li", 2, 1), ("Be", 2, 2), ("B", 3, 2), ("C", 4, 2),
    ("N", 5, 2), ("O", 5, 3), ("F", 5, 4), ("Ne", 5, 5), ("Cr", 15, 9), ("Fe", 15, 11),
])
def test_atom_ground_state_spin(symbol, n_up, n_down):
    a = atom(symbol)
    assert (a.n_up, a.n_down) == (n_up, n_down)
    assert a.n_elec == a.charges[0] and a.positions == ((0.0, 0.0, 0.0),)


def test_hund_table_is_consistent_with_electron_counts():
    for z, spin in GROUND_STATE_SPIN.items():
        assert spin % 2 == z % 2 and 0 <= spin <= z


def test_ions_take_the_isoelectronic_spin():
    assert (atom("Li", charge=1).n_up, atom("Li", charge=1).n_down) == (1, 1)
    assert atom("Li", charge=1).name == "Li+"
    assert atom("F", charge=-1).spin == 0


def test_molecule_counts_and_nuclear_repulsion():
    lih = Molecule(["Li", "H"], [[0, 0, 0], [0, 0, 3.015]])
    assert (lih.n_elec, lih.n_up, lih.n_down, lih.n_nuclei) == (4, 2, 2, 2)
    assert math.isclose(lih.nuclear_repulsion, 3 / 3.015)
    assert Molecule.from_dict(lih.to_dict()) == lih
    triplet = Molecule([8, 8], [[0, 0, 0], [0, 0, 2.28]], spin=2)
    assert (triplet.n_up, triplet.n_down) == (9, 7)
    assert get_system("H2").positions[1] == (0.0, 0.0, 1.4)
    assert get_system("LiH") == Molecule([3, 1], [[0, 0, 0], [0, 0, 3.015]], name="LiH")


@pytest.mark.parametrize("make, message", [
    (lambda: atom("Xx"), "unknown element 'Xx'"),
    (lambda: atom("li"), "did you mean 'Li'"),
    (lambda: atom(0), "outside 1..118"),
    (lambda: Molecule([1, 1], [[0, 0, 0], [0, 0, 1.4]], spin=1), "inconsistent with 2 electrons"),
    (lambda: atom("He", spin=4), "inconsistent with 2 electrons"),
    (lambda: Molecule([1, 1], [[0, 0, 0]]), "positions must have shape"),
    (lambda: Molecule([1, 1], [[0, 0, 0], [0, 0, 0]]), "coincide"),
    (lambda: Molecule([1], [[0, 0, float("nan")]]), "finite"),
    (lambda: atom("H", charge=1), "need at least 1"),
    (lambda: get_system("LiHH"), "did you mean 'LiH'"),
])
def test_bad_systems_raise_value_error_naming_the_problem(make, message):
    with pytest.raises(ValueError, match=message):
        make()
