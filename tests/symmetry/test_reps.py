"""Representations as an algebra: sizes, duals, homomorphism, derivative, structure, parsing."""

import pytest
import torch

from equivar.symmetry import (
    MatrixGroup,
    PermutationAction,
    ProductRep,
    RepAction,
    Scalar,
    SumRep,
    Vector,
    as_rep,
    matrix_group,
    orthogonal,
    special_orthogonal,
    symmetric,
)

F64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_sizes_and_expressions():
    V = Vector(special_orthogonal(3))
    rep = 3 * V + V**2 + 2
    assert rep.size == 3 * 3 + 9 + 2 and str(rep) == "3*V + V**2 + 2"
    assert isinstance(rep, SumRep) and isinstance(V**2, ProductRep)
    assert (V**0).size == 1 and V**1 is V and 1 * V is V
    assert sum([V, V, V]) == 3 * V
    assert V * Scalar(V.group) is V and Scalar(V.group) * V is V
    assert str((V + 1) ** 2) == "(V + 1)**2" and (V + 1) ** 2 != V**2 + 1


def test_dual_of_an_orthogonal_group_is_the_vector_but_not_for_lorentz():
    V = Vector(special_orthogonal(3))
    assert V.T == V and (V * V.T) == V**2
    W = Vector(orthogonal(1, 3))
    assert W.T != W and W.T.T == W and W.dual == W.T
    assert (W * W.T).T == W.T * W and str(3 * W.T + W * W.T) == "3*V.T + V*V.T"


@pytest.mark.parametrize("group,expr", [
    ("O(1,3)", "2*V + V*V.T + 1"),
    ("SO(3)", "V**3 + V"),
    ("Sp(4)", "V.T*V + 2"),
    ("S(4)xSO(3)", "V[0]*V[1] + V[1].T + 1"),
])  # fmt: skip
def test_rho_is_a_homomorphism_and_drho_its_derivative(group, expr):
    group = matrix_group(group)
    rep = as_rep(expr, group)
    g, h = group.sample(2, _gen(), scale=0.4)
    torch.testing.assert_close(rep.rho(g @ h), rep.rho(g) @ rep.rho(h), atol=1e-11, rtol=1e-11)
    torch.testing.assert_close(rep.rho(torch.linalg.inv(g)), torch.linalg.inv(rep.rho(g)),
                               atol=1e-11, rtol=1e-11)  # fmt: skip
    # drho(A) = d/dt rho(exp(t A)) at t = 0 (central difference, error ~ t^2)
    a = torch.einsum("m,mij->ij", torch.randn(len(group.lie_algebra), generator=_gen(1),
                                              dtype=F64), group.lie_algebra)  # fmt: skip
    t = 1e-5
    diff = (rep.rho(torch.linalg.matrix_exp(t * a)) - rep.rho(torch.linalg.matrix_exp(-t * a)))
    torch.testing.assert_close(diff / (2 * t), rep.drho(a), atol=1e-7, rtol=1e-7)


def test_rho_batches():
    group = orthogonal(1, 3)
    rep = as_rep("V*V.T + 2*V", group)
    g = group.sample(4, _gen(), scale=0.3)  # [4, 4, 4]
    batched = rep.rho(g)
    assert batched.shape == (4, rep.size, rep.size)
    torch.testing.assert_close(batched[2], rep.rho(g[2]))


def test_terms_cover_every_coordinate_and_carry_the_blocks():
    group = orthogonal(1, 3)
    rep = as_rep("(V + 1)*(2*V.T + V)", group)
    terms = rep.terms()
    coords = torch.cat([index for _, index in terms])
    assert sorted(coords.tolist()) == list(range(rep.size))
    g = group.sample(1, _gen(), scale=0.3)[0]
    full = rep.rho(g)
    for atoms, index in terms:
        expected = torch.ones(1, 1, dtype=F64)
        for a in atoms:
            expected = torch.kron(expected, a.rho(g))
        torch.testing.assert_close(full[index[:, None], index[None, :]], expected)


@pytest.mark.parametrize("text", ["3*V + V**2 + 2", "V*V.T", "(V + 1)**2", "V.T**2 + 4", "1"])
def test_expressions_round_trip(text):
    group = orthogonal(1, 3)
    rep = as_rep(text, group)
    assert as_rep(str(rep), group) == rep


def test_bad_expressions_and_mixed_groups_are_named_errors():
    group = special_orthogonal(3)
    for text in ["W", "V ** V", "__import__('os')", "V[5]", "V.x", "V -"]:
        with pytest.raises(ValueError, match="cannot read the representation"):
            as_rep(text, group)
    with pytest.raises(ValueError, match="different groups"):
        Vector(group) + Vector(orthogonal(3))
    with pytest.raises(ValueError, match="not of"):
        as_rep(Vector(orthogonal(3)), group)
    with pytest.raises(ValueError, match="n >= 1"):
        0 * Vector(group)
    with pytest.raises(TypeError):
        Vector(group) + 1.5


def test_rep_action_is_the_permutation_action():
    finite = symmetric(4)
    V = Vector(MatrixGroup.from_finite(finite))
    x = torch.randn(3, 4, dtype=F64)
    expected = PermutationAction(finite).orbit(x)
    torch.testing.assert_close(RepAction(V).orbit(x), expected)
    with pytest.raises(ValueError, match="acts on"):
        RepAction(V).check(torch.randn(3, 5))
    with pytest.raises(TypeError, match="from_finite"):
        RepAction(Vector(special_orthogonal(3)))
