"""Matrix groups from generators: the classical groups keep their forms, finite ones close, names
round-trip, finite groups of equivar.symmetry carry over."""

import math

import pytest
import torch

from equivar.symmetry import (
    MatrixGroup,
    PermutationAction,
    cyclic_shifts,
    dihedral,
    dihedral_permutations,
    direct_product,
    matrix_group,
    octahedral,
    orthogonal,
    permutation_matrices,
    product_group,
    special_orthogonal,
    symmetric,
    symplectic,
)

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("private_cache")  # tests.conftest


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _eta():
    return torch.diag(torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=F64))


@pytest.mark.parametrize("n", [2, 3, 5])
def test_special_orthogonal_samples_are_rotations(n):
    g = special_orthogonal(n).sample(20, _gen())
    eye = torch.eye(n, dtype=F64).expand(20, n, n)
    torch.testing.assert_close(g @ g.mT, eye, atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.det(g), torch.ones(20, dtype=F64), atol=1e-12, rtol=0)


def test_orthogonal_reaches_both_components():
    g = orthogonal(3).sample(50, _gen())
    torch.testing.assert_close(g @ g.mT, torch.eye(3, dtype=F64).expand(50, 3, 3), atol=1e-12,
                               rtol=0)  # fmt: skip
    det = torch.linalg.det(g)
    assert (det > 0.99).any() and (det < -0.99).any()


@pytest.mark.parametrize("name", ["O(1,3)", "SO(1,3)", "SO+(1,3)"])
def test_lorentz_groups_preserve_the_minkowski_metric(name):
    group = matrix_group(name)
    assert group.name == name and group.d == 4 and len(group.lie_algebra) == 6
    eta = _eta()
    a = group.lie_algebra
    torch.testing.assert_close(a.mT @ eta + eta @ a, torch.zeros_like(a), atol=1e-15, rtol=0)
    g = group.sample(50, _gen(), scale=0.5)
    torch.testing.assert_close(g.mT @ eta @ g, eta.expand(50, 4, 4), atol=1e-10, rtol=0)
    det, g00 = torch.linalg.det(g), g[:, 0, 0]
    if name == "SO+(1,3)":
        assert (det > 0).all() and (g00 >= 1 - 1e-12).all()
    elif name == "SO(1,3)":
        assert (det > 0).all() and (g00 < 0).any() and (g00 > 0).any()
    else:
        assert (det < 0).any() and (det > 0).any() and (g00 < 0).any()


def test_symplectic_samples_keep_the_form():
    group = symplectic(2)
    j = torch.zeros(4, 4, dtype=F64)
    j[:2, 2:], j[2:, :2] = torch.eye(2, dtype=F64), -torch.eye(2, dtype=F64)
    assert len(group.lie_algebra) == 10  # dim sp(4) = n(2n + 1)
    g = group.sample(10, _gen(), scale=0.3)
    torch.testing.assert_close(g.mT @ j @ g, j.expand(10, 4, 4), atol=1e-10, rtol=0)


@pytest.mark.parametrize("make,order", [
    (lambda: cyclic_shifts(6), 6),
    (lambda: permutation_matrices(4), 24),
    (lambda: dihedral_permutations(5), 10),
    (lambda: dihedral_permutations(6), 12),
    (lambda: permutation_matrices(1), 1),
])  # fmt: skip
def test_finite_groups_close_to_their_order(make, order):
    group = make()
    elements = group.elements()
    assert group.is_finite and elements.shape == (order, group.d, group.d)
    torch.testing.assert_close(elements[0], torch.eye(group.d, dtype=F64))
    # every sample is one of the elements
    samples = group.sample(10, _gen())
    match = (samples[:, None] - elements[None]).abs().amax(dim=(2, 3)).min(dim=1).values
    assert match.max() < 1e-12


def test_elements_of_a_lie_group_is_an_error():
    with pytest.raises(TypeError, match="Lie algebra"):
        special_orthogonal(3).elements()


def test_product_group_acts_blockwise():
    group = permutation_matrices(4) * special_orthogonal(3)
    assert group.name == "S(4)xSO(3)" and group.factors == ((0, 4), (4, 3))
    g = group.sample(5, _gen())
    assert (g[:, :4, 4:] == 0).all() and (g[:, 4:, :4] == 0).all()
    rot = g[:, 4:, 4:]
    torch.testing.assert_close(rot @ rot.mT, torch.eye(3, dtype=F64).expand(5, 3, 3))
    nested = product_group(group, cyclic_shifts(2))
    assert nested.factors == ((0, 4), (4, 3), (7, 2))


@pytest.mark.parametrize("name", ["SO(3)", "O(5)", "O(1,3)", "SO(2,2)", "SO+(1,3)", "Sp(4)",
                                  "Z(5)", "S(4)", "D(6)", "S(5)xSO(3)", "Oh", "D4"])  # fmt: skip
def test_names_round_trip(name):
    group = matrix_group(name)
    assert group.name == name
    assert matrix_group(group.name) == group
    assert matrix_group(group) is group


def test_unknown_names_and_bad_generators_are_named_errors():
    with pytest.raises(ValueError, match="unknown matrix group 'Q\\(3\\)'"):
        matrix_group("Q(3)")
    with pytest.raises(ValueError, match="shape"):
        MatrixGroup(torch.eye(3, dtype=F64))  # [d, d], not [k, d, d]
    with pytest.raises(ValueError, match="singular"):
        MatrixGroup(torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="give d"):
        MatrixGroup()
    with pytest.raises(ValueError, match="dimensions"):
        special_orthogonal(-1)


def test_key_depends_on_the_generators_not_the_name():
    a = MatrixGroup(None, special_orthogonal(3).lie_algebra, name="mine")
    assert a == special_orthogonal(3) and hash(a) == hash(special_orthogonal(3))
    assert special_orthogonal(3) != orthogonal(3)


def test_from_finite_keeps_the_elements_and_their_order():
    group = MatrixGroup.from_finite(octahedral())
    torch.testing.assert_close(group.elements(), octahedral().matrices())
    assert 1 <= len(group.discrete_generators) <= math.ceil(math.log2(24))
    # the generators generate the whole group
    assert len(MatrixGroup(group.discrete_generators, None).elements()) == 24


def test_from_finite_permutations_match_the_permutation_action():
    finite = symmetric(3)
    group = MatrixGroup.from_finite(finite)
    x = torch.randn(1, 3, dtype=F64)
    action = PermutationAction(finite)
    for a in range(len(finite)):
        torch.testing.assert_close(x @ group.elements()[a].T, action.act(x, a))


def test_from_finite_with_permutations_and_matrices_is_a_product():
    finite = direct_product(symmetric(3), dihedral(2))
    group = MatrixGroup.from_finite(finite)
    assert group.factors == ((0, 3), (3, 3)) and len(group.elements()) == 24


def test_sample_is_reproducible():
    group = orthogonal(1, 3)
    torch.testing.assert_close(group.sample(3, _gen(5)), group.sample(3, _gen(5)))
