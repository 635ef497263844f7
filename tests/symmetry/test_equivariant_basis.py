"""The equivariant maps solved from the generators: known counts, equivariance under sampled
elements, agreement with e3nn's Clebsch-Gordan paths, both solvers, structure and caches."""

import pytest
import torch

import equivar.symmetry.constraints as constraints
from equivar.symmetry import (
    Scalar,
    Vector,
    as_rep,
    cyclic_shifts,
    dihedral_permutations,
    equivariant_basis,
    equivariant_blocks,
    invariant_basis,
    matrix_group,
    orthogonal,
    permutation_matrices,
    product_group,
    special_orthogonal,
    symplectic,
)

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("private_cache")  # tests.conftest


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _equivariance_error(basis, rep_in, rep_out, scale=1.0):
    """max |W rho_in(g) - rho_out(g) W| / max |W| over sampled g and every basis element."""
    g = rep_in.group.sample(8, _gen(3), scale=scale)
    lhs = torch.einsum("kij,njl->nkil", basis, rep_in.rho(g))
    rhs = torch.einsum("nij,kjl->nkil", rep_out.rho(g), basis)
    return ((lhs - rhs).abs().max() / lhs.abs().max().clamp_min(1.0)).item()


CASES = [  # group, rep_in, rep_out, the number of equivariant maps
    ("SO(3)", "V", "V", 1),
    ("O(3)", "V", "V", 1),
    ("SO(3)", "V**2", "V", 1),  # the cross product
    ("O(3)", "V**2", "V", 0),  # ... is a pseudovector
    ("SO(3)", "V**3", "1", 1),  # the Levi-Civita symbol
    ("O(3)", "V**3", "1", 0),
    ("SO(3)", "V**2", "V**2", 3),  # 1 x 1 = 0 + 1 + 2
    ("SO(3)", "V**4", "1", 3),
    ("O(1,3)", "V**2", "1", 1),  # the Minkowski product
    ("SO+(1,3)", "V**2", "1", 1),
    ("O(1,3)", "V*V.T", "1", 1),  # the trace
    ("O(1,3)", "V**4", "1", 3),
    ("SO(1,3)", "V**4", "1", 4),  # + the Levi-Civita symbol
    ("Sp(4)", "V**2", "1", 1),  # the symplectic form
    ("S(5)", "V", "V", 2),  # identity and all-ones
    ("S(4)", "V**2", "1", 2),
    ("Z(6)", "V", "V", 6),  # circulant matrices
    ("D(5)", "V", "V", 3),  # floor(n / 2) + 1
    ("D(6)", "V", "V", 4),
    ("S(4)xSO(3)", "V[0]*V[1]", "V[1]", 1),  # sum of the points' vectors
    ("S(4)xSO(3)", "V[0]*V[1]", "V[0]*V[1]", 2),
    ("SO(3)", "2*V + 1", "V + 3", 2 * 1 + 3 * 1),
]


@pytest.mark.parametrize("group,rep_in,rep_out,count", CASES)
def test_counts_and_equivariance(group, rep_in, rep_out, count):
    group = matrix_group(group)
    rep_in, rep_out = as_rep(rep_in, group), as_rep(rep_out, group)
    basis = equivariant_basis(rep_in, rep_out)
    assert basis.shape == (count, rep_out.size, rep_in.size)
    if count:
        flat = basis.reshape(count, -1)
        torch.testing.assert_close(flat @ flat.T, torch.eye(count, dtype=F64), atol=1e-12, rtol=0)
        assert _equivariance_error(basis, rep_in, rep_out, scale=0.5) < 1e-10


def test_the_minkowski_and_symplectic_forms():
    V = Vector(orthogonal(1, 3))
    eta = invariant_basis(V * V)[0].reshape(4, 4)
    eta = eta / eta[0, 0]
    torch.testing.assert_close(eta, torch.diag(torch.tensor([1.0, -1, -1, -1], dtype=F64)))
    W = Vector(symplectic(2))
    form = invariant_basis(W * W)[0].reshape(4, 4)
    torch.testing.assert_close(form, -form.T)
    torch.testing.assert_close(form[:2, :2], torch.zeros(2, 2, dtype=F64))


def test_cyclic_maps_are_circulant():
    V = Vector(cyclic_shifts(5))
    basis = equivariant_basis(V, V)
    for w in basis:  # w[i, j] depends on i - j only
        torch.testing.assert_close(w, w.roll((1, 1), dims=(0, 1)))


def _cartesian_w3j(l1, l2, l3):
    """e3nn's Wigner 3j symbol with every l = 1 index in Cartesian (x, y, z) order (e3nn 0.6
    orders a vector as (x, y, z); older releases as (y, z, x): read off D_from_matrix)."""
    from e3nn import o3

    c = o3.wigner_3j(l1, l2, l3, dtype=F64)
    rotation = special_orthogonal(3).sample(1, _gen())[0]
    d = o3.Irreps("1o").D_from_matrix(rotation)  # accurate to ~1e-7 (Euler angles)
    for perm in (torch.eye(3, dtype=F64), torch.eye(3, dtype=F64)[[1, 2, 0]]):  # x_e3nn = P x
        if torch.allclose(d, perm @ rotation @ perm.T, atol=1e-5):
            break
    else:
        raise AssertionError("unknown e3nn vector convention")
    for axis, degree in enumerate((l1, l2, l3)):
        if degree == 1:
            c = torch.movedim(torch.tensordot(perm.T, c, dims=([1], [axis])), 0, axis)
    return c


def _same_span(a, b):
    """Rows of ``a`` and ``b`` ``[k, n]`` span the same space."""
    qa, qb = torch.linalg.qr(a.T)[0], torch.linalg.qr(b.T)[0]
    return a.shape[0] == b.shape[0] and torch.allclose(qa @ (qa.T @ qb), qb, atol=1e-10)


@pytest.mark.parametrize("group", ["SO(3)", "O(3)"])
def test_solved_maps_match_e3nn_clebsch_gordan_paths(group):
    V = Vector(matrix_group(group))
    # V (x) V -> V: e3nn's 1 x 1 -> 1 path (the cross product), only without parity
    cross = _cartesian_w3j(1, 1, 1).permute(2, 0, 1).reshape(1, 3, 9)
    solved = equivariant_basis(V**2, V)
    if group == "SO(3)":
        assert _same_span(solved.reshape(1, -1), cross.reshape(1, -1))
    else:
        assert solved.shape[0] == 0  # 1o x 1o -> 1e only: no map to the vector 1o
    # V (x) V -> V (x) V: the projectors onto the 0, 1 and 2 paths
    projectors = []
    for degree in (0, 1, 2):
        c = _cartesian_w3j(1, 1, degree).reshape(9, 2 * degree + 1)
        projectors.append((c @ c.T).reshape(1, -1))
    solved = equivariant_basis(V**2, V**2).reshape(3, -1)
    assert _same_span(solved, torch.cat(projectors))
    # V -> V (identity) and V (x) V -> 1 (dot product)
    identity = torch.eye(3, dtype=F64).reshape(1, -1)
    assert _same_span(equivariant_basis(V, V).reshape(1, -1), identity)
    dot = _cartesian_w3j(1, 1, 0).reshape(1, -1)
    assert _same_span(invariant_basis(V**2), dot)


@pytest.mark.parametrize("group,power,count", [("SO(3)", 4, 3), ("S(4)", 3, 5), ("O(1,3)", 3, 0),
                                               ("Z(4)", 3, 16)])  # fmt: skip
def test_dense_and_iterative_solvers_agree(group, power, count):
    rep = as_rep(f"V**{power}", matrix_group(group))
    dense = invariant_basis(rep, method="dense", cache=False)
    iterative = invariant_basis(rep, method="iterative", cache=False)
    assert dense.shape == iterative.shape == (count, rep.size)
    if count:
        assert _same_span(dense, iterative)
        g = rep.group.sample(4, _gen(), scale=0.5)
        moved = torch.einsum("nij,kj->nki", rep.rho(g), iterative)
        assert (moved - iterative).abs().max() < 1e-10


def test_iterative_solver_on_a_larger_product():
    rep = as_rep("V**7", special_orthogonal(3))  # N = 2187 unknowns: 36 invariants (Riordan)
    basis = invariant_basis(rep, cache=False)
    assert basis.shape == (36, 2187)
    torch.testing.assert_close(basis @ basis.T, torch.eye(36, dtype=F64), atol=1e-12, rtol=0)
    g = rep.group.sample(2, _gen())
    moved = torch.einsum("nij,kj->nki", rep.rho(g), basis)
    assert (moved - basis).abs().max() < 1e-10


def test_blocks_solve_each_kind_once():
    V = Vector(special_orthogonal(3))
    blocks = equivariant_blocks(4 * V + V**2 + 2, V + 3)
    kinds = sorted((b.out_index.shape, b.in_index.shape, b.basis.shape[0]) for b in blocks)
    assert kinds == sorted([
        ((1, 3), (4, 3), 1),  # V -> V, 4 inputs
        ((1, 3), (1, 9), 1),  # V**2 -> V
        ((3, 1), (1, 9), 1),  # V**2 -> scalars
        ((3, 1), (2, 1), 1),  # scalars -> scalars
    ])  # fmt: skip
    assert sum(b.n_params for b in blocks) == equivariant_basis(4 * V + V**2 + 2, V + 3).shape[0]


def test_factor_order_is_shared_and_restored():
    W = Vector(orthogonal(1, 3))
    eta = torch.diag(torch.tensor([1.0, -1, -1, -1], dtype=F64))
    for rep_in, rep_out in ((W.T, W), (W, W.T)):  # raising and lowering an index: the metric
        basis = equivariant_basis(rep_in, rep_out)
        assert basis.shape == (1, 4, 4)
        torch.testing.assert_close(basis[0] / basis[0, 0, 0], eta)
    # V.T * V is solved as V * V.T with its axes swapped: both give the identity pairing
    for rep in (W.T * W, W * W.T):
        pairing = invariant_basis(rep)[0].reshape(4, 4)
        torch.testing.assert_close(pairing / pairing[0, 0], torch.eye(4, dtype=F64))
    a = as_rep("V.T*V*V", W.group)
    basis = invariant_basis(a * W.T)  # mixed order V.T V V V.T: isomorphic to V**4
    assert basis.shape[0] == 3 and _equivariance_error(
        basis.reshape(3, 1, -1), a * W.T, Scalar(W.group), scale=0.5) < 1e-10


def test_invariants_of_sums_sit_on_their_coordinates():
    V = Vector(special_orthogonal(3))
    basis = invariant_basis(V + 1 + V**2)
    assert basis.shape == (2, 13)
    assert basis[:, :3].abs().max() == 0
    torch.testing.assert_close(basis[0, 3:4].abs(), torch.ones(1, dtype=F64))


def test_product_group_factors():
    group = product_group(permutation_matrices(3), special_orthogonal(3))
    points = Vector(group, 0) * Vector(group, 1)  # 3 points in 3D
    basis = equivariant_basis(points, points * points)
    assert _equivariance_error(basis, points, points * points) < 1e-10


def test_disk_cache_is_written_read_and_survives_corruption(tmp_path, monkeypatch):
    rep = Vector(dihedral_permutations(4)) ** 2
    constraints._MEMORY.clear()
    first = invariant_basis(rep, cache=True)
    files = list((tmp_path / "emlp").glob("*.pt"))
    assert len(files) == 1
    constraints._MEMORY.clear()

    def refuse(*args, **kwargs):
        raise AssertionError("solved again instead of reading the cache")

    monkeypatch.setattr(constraints, "nullspace", refuse)
    torch.testing.assert_close(invariant_basis(rep, cache=True), first)
    monkeypatch.undo()
    monkeypatch.setenv("EQUIVAR_CACHE", str(tmp_path))
    files[0].write_bytes(b"not a torch file")
    constraints._MEMORY.clear()
    torch.testing.assert_close(invariant_basis(rep, cache=True), first)  # solved again


def test_errors_are_named():
    V = Vector(special_orthogonal(3))
    with pytest.raises(ValueError, match="method"):
        equivariant_basis(V, V, method="svd")
    with pytest.raises(ValueError, match="different groups"):
        equivariant_basis(V, Vector(orthogonal(3)))
    assert invariant_basis(Scalar(V.group)).tolist() == [[1.0]]
