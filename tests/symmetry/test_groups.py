"""Group axioms through the multiplication table, for every group and every element."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from equivar.symmetry import (
    FiniteGroup,
    cyclic,
    dihedral,
    direct_product,
    icosahedral,
    inversion,
    octahedral,
    point_group,
    symmetric,
    tetrahedral,
    with_inversion,
)

GROUPS = {
    **{f"C{n}": (lambda n=n: cyclic(n)) for n in (1, 2, 3, 4, 6)},
    **{f"D{n}": (lambda n=n: dihedral(n)) for n in (1, 2, 3, 4, 6)},
    "T": tetrahedral,
    "O": octahedral,
    "I": icosahedral,
    "Ci": inversion,
    "Th": lambda: with_inversion(tetrahedral()),
    "Oh": lambda: with_inversion(octahedral()),
    "Ih": lambda: with_inversion(icosahedral()),
    "C4h": lambda: with_inversion(cyclic(4)),
    **{f"S{n}": (lambda n=n: symmetric(n)) for n in (1, 2, 3, 4, 5)},
    "S3xO": lambda: direct_product(symmetric(3), octahedral()),
    "C3xS2": lambda: direct_product(cyclic(3), symmetric(2)),
    "C3xC4": lambda: direct_product(cyclic(3), cyclic(4)),
}
ORDERS = {"T": 12, "O": 24, "I": 60, "Ci": 2, "Th": 24, "Oh": 48, "Ih": 120, "C4h": 8,
          "S5": 120, "S3xO": 144, "C3xS2": 6, "C3xC4": 12}
ROTATION_GROUPS = ["C1", "C2", "C3", "C4", "C6", "D1", "D2", "D3", "D4", "D6", "T", "O", "I"]


@pytest.fixture(params=sorted(GROUPS), ids=sorted(GROUPS))
def group(request):
    return request.param, GROUPS[request.param]()


def test_axioms_through_the_table(group):
    name, g = group
    table, inv, n = g.multiplication_table(), g.inverses(), len(g)
    ar = torch.arange(n)
    assert table.shape == (n, n) and table.dtype == torch.long
    assert ((table >= 0) & (table < n)).all(), "closure"
    assert g.identity == 0 and torch.equal(table[0], ar) and torch.equal(table[:, 0], ar)
    assert torch.equal(table[ar, inv], torch.zeros(n, dtype=torch.long)), "right inverses"
    assert torch.equal(table[inv, ar], torch.zeros(n, dtype=torch.long)), "left inverses"
    assert torch.equal(table[table], table[:, table]), "associativity on every triple"
    assert torch.equal(torch.sort(table, 1).values, ar.expand(n, n)), "each row a permutation"
    if name in ORDERS:
        assert n == ORDERS[name]
    assert g.inverse(n - 1) == int(inv[n - 1]) and g.multiply(n - 1, 0) == n - 1


def test_representations_are_homomorphisms(group):
    name, g = group
    table = g.multiplication_table()
    if g.has_matrices:
        m = g.matrices()
        assert m.dtype == torch.float64 and m.shape == (len(g), 3, 3)
        assert torch.allclose(m @ m.transpose(1, 2), torch.eye(3, dtype=torch.float64),
                              atol=1e-13)
        assert torch.allclose(m[:, None] @ m[None], m[table], atol=1e-13)
        assert torch.equal(m[0], torch.eye(3, dtype=torch.float64))
    if g.has_permutations:
        p = g.permutations()
        for a in range(len(g)):
            assert torch.equal(p[a][p], p[table[a]]), "p_a o p_b = p_(ab) for every b"
    assert g.has_matrices or g.has_permutations


@pytest.mark.parametrize("name", ROTATION_GROUPS)
def test_rotation_groups_are_faithful_proper_and_exact(name):
    g = GROUPS[name]()
    m = g.matrices()
    assert torch.allclose(torch.linalg.det(m), torch.ones(len(g), dtype=torch.float64))
    flat = m.reshape(len(g), 9)
    assert torch.cdist(flat, flat).add(torch.eye(len(g)) * 10).min() > 0.1, "distinct elements"
    if name in ("T", "O") or name.startswith("C4") or name.startswith("D4"):
        assert set(m.unique().tolist()) <= {-1.0, 0.0, 1.0}, "signed permutation matrices"


def test_full_point_groups_contain_inversion_once_per_rotation():
    oh = with_inversion(octahedral())
    det = torch.linalg.det(oh.matrices()).round()
    assert oh.name == "Oh" and len(oh) == 48 and int((det < 0).sum()) == 24
    assert any(torch.equal(m, -torch.eye(3, dtype=torch.float64)) for m in oh.matrices())
    assert [len(point_group(s)) for s in ("O_h", "Ih", "D3d", "S6", "D4h", "C2h")] == [
        48, 120, 12, 6, 16, 4]


def test_cyclic_and_dihedral_elements_follow_their_documented_order():
    c4 = cyclic(4).matrices()
    quarter = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64)
    assert torch.equal(c4[1], quarter) and torch.equal(c4[3], quarter.T)
    d4 = dihedral(4).matrices()
    s = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))
    for k in range(4):
        assert torch.equal(d4[4 + k], d4[k] @ s)


def test_symmetric_group_composes_permutations():
    s3 = symmetric(3)
    p, table = s3.permutations(), s3.multiplication_table()
    for a in range(6):
        for b in range(6):
            assert p[table[a, b]].tolist() == [p[a][p[b][i]].item() for i in range(3)]


def test_direct_product_with_non_commuting_matrices_keeps_table_only():
    tilted = FiniteGroup.from_matrices(
        [torch.eye(3, dtype=torch.float64),
         torch.diag(torch.tensor([-1.0, 1.0, -1.0], dtype=torch.float64))], "C2y")
    product = direct_product(cyclic(4), tilted)
    assert len(product) == 8 and not product.has_matrices
    with pytest.raises(TypeError, match="do not commute"):
        product.matrices()


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="finite group"):
        angle = torch.tensor(1.0, dtype=torch.float64)  # irrational multiple of pi
        rot = torch.tensor([[angle.cos(), -angle.sin(), 0], [angle.sin(), angle.cos(), 0],
                            [0, 0, 1]], dtype=torch.float64)
        FiniteGroup.from_generators([rot], max_order=50)
    with pytest.raises(ValueError, match="identity"):
        FiniteGroup(torch.tensor([[1, 0], [0, 1]]))
    with pytest.raises(ValueError, match="Latin square"):
        FiniteGroup(torch.tensor([[0, 1, 2], [1, 1, 0], [2, 0, 1]]))
    with pytest.raises(ValueError, match="associative"):
        # a Latin square with identity 0 that is not a group (a loop of order 5)
        loop = torch.tensor([[0, 1, 2, 3, 4], [1, 0, 3, 4, 2], [2, 4, 0, 1, 3],
                             [3, 2, 4, 0, 1], [4, 3, 1, 2, 0]])
        FiniteGroup(loop)
    with pytest.raises(ValueError, match=r"matrices\[1\] @ matrices\[1\]"):
        # Z2 represented by a quarter turn: not a homomorphism (its square is not the identity)
        FiniteGroup(torch.tensor([[0, 1], [1, 0]]), matrices=cyclic(4).matrices()[:2])
    with pytest.raises(TypeError, match="no 3x3 matrices"):
        symmetric(3).matrices()
    with pytest.raises(TypeError, match="no point permutations"):
        octahedral().permutations()
    with pytest.raises(ValueError, match="symmetric"):
        symmetric(7)
    with pytest.raises(ValueError, match="cyclic"):
        cyclic(0)
    with pytest.raises(ValueError, match="unknown"):
        point_group("Q7")
    with pytest.raises(ValueError, match="out of range"):
        octahedral().inverse(24)


def test_describe_and_repr():
    o = octahedral()
    assert o.describe(0) == "0: identity"
    assert "rotation 90 deg" in o.describe(int((o.matrices()[:, 2, 2] == 1).nonzero()[1]))
    assert with_inversion(o).describe(1) == "1: inversion"
    assert symmetric(3).describe(1) == "1: permutation [0, 2, 1]"
    assert "n_group=24" in repr(o)


def test_import_is_lazy_and_all_names_resolve():
    code = "import sys, equivar.symmetry; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    import equivar.symmetry as sym

    assert all(getattr(sym, name) is not None for name in sym.__all__)
    assert sym.equivarify.__module__ == "equivar.symmetry.lift"  # a function, not the module
