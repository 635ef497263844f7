"""Exchange symmetry: fermionic wavefunctions flip sign under every same-spin swap and keep it
under even permutations; the bosonic head is invariant under every swap; invariant features give
rotation-invariant atoms. Random parameters, float64 to ~1e-10."""

import pytest
import torch
from e3nn import o3

from equivar.dtypes import default_dtype
from equivar.heads import (
    ElectronCuspJastrow,
    SlaterDeterminantHead,
    SymmetricHead,
    signed_logsumexp,
)
from equivar.qmc import Molecule, atom
from equivar.testing import SymmetryAssertionError, assert_antisymmetric
from equivar.testing.antisymmetry import assert_symmetric
from tests.conftest import tolerance
from tests.qmc.conftest import random_walkers, small_wavefunction


@pytest.mark.parametrize("system", ["Li", "Be", "N", "LiH", atom("C", charge=-1)])
def test_every_same_spin_swap_flips_the_sign(system):
    psi = small_wavefunction(system)
    r = random_walkers(system, n_walkers=5)
    errors = assert_antisymmetric(psi, r)
    n_up, n_down = psi.n_up, psi.n_down
    assert errors["transposition"]["wrong_signs"] == 0
    assert errors["transposition"]["logabs"] <= 1e-10
    if max(n_up, n_down) >= 3 or min(n_up, n_down) >= 2:  # 3-cycles, or a swap in each spin
        assert errors["even_permutation"]["wrong_signs"] == 0


def test_antisymmetry_in_both_dtypes(dtype):
    psi = small_wavefunction("B", dtype=dtype, n_determinants=3)
    assert_antisymmetric(psi, random_walkers("B", dtype=dtype), rtol=tolerance(dtype))


def test_even_permutations_keep_the_sign_explicitly():
    psi = small_wavefunction("N")  # 5 up, 2 down
    r = random_walkers("N")
    sign, logabs = psi(r)
    for perm in ([1, 2, 0, 3, 4, 5, 6], [1, 0, 2, 3, 4, 6, 5], [4, 3, 2, 1, 0, 5, 6]):
        s, la = psi(r[:, perm])
        assert torch.equal(s, sign)
        torch.testing.assert_close(la, logabs, rtol=1e-10, atol=1e-12)
    s, _ = psi(r[:, [0, 1, 2, 3, 4, 6, 5]])  # odd: one down-spin swap
    assert torch.equal(s, -sign)


def test_assert_antisymmetric_catches_a_symmetric_function():
    def bosons(r):
        return torch.ones(len(r), dtype=r.dtype), -r.norm(dim=-1).sum(-1)

    with pytest.raises(SymmetryAssertionError, match="wrong sign") as info:
        assert_antisymmetric(bosons, random_walkers("Li"), n_up=2, n_down=1)
    assert info.value.failures


def test_assert_antisymmetric_needs_spin_counts():
    with pytest.raises(ValueError, match="n_up"):
        assert_antisymmetric(lambda r: (r[:, 0, 0], r[:, 0, 0]), torch.randn(2, 3, 3))


def test_bosonic_wavefunction_is_invariant_under_every_swap():
    psi = small_wavefunction("Li", particles="bosons")
    r = random_walkers("Li")
    errors = assert_symmetric(psi, r)
    assert errors["transposition"]["logabs"] <= 1e-10
    sign, logabs = psi(r)
    for i in range(3):
        for j in range(i + 1, 3):
            perm = list(range(3))
            perm[i], perm[j] = j, i
            s, la = psi(r[:, perm])
            assert torch.equal(s, sign) and bool((s == 1).all())
            torch.testing.assert_close(la, logabs, rtol=1e-10, atol=1e-12)


def test_symmetric_head_on_random_features_is_invariant():
    torch.manual_seed(1)
    head = SymmetricHead(7, n_nuclei=2).double()
    h, d = torch.randn(4, 5, 7, dtype=torch.float64), torch.rand(4, 5, 2, dtype=torch.float64)
    _, logabs = head(h, d)
    perm = torch.randperm(5)
    torch.testing.assert_close(head(h[:, perm], d[:, perm])[1], logabs)


def test_determinant_head_on_features_of_the_equivariant_core():
    """The head takes any same-spin-equivariant features: here the invariant channels of an
    e3nn interaction block of the core over the fully connected electron graph."""
    from equivar.nn import EdgeSphericalHarmonics, InteractionBlock, RadialEmbedding

    with default_dtype(torch.float64):
        irreps = o3.Irreps("8x0e+4x1o")
        sh = EdgeSphericalHarmonics(2)
        radial = RadialEmbedding(6.0, 6, basis="gaussian")
        block = InteractionBlock("1x0e", irreps, sh.irreps_out, 6, (16,))
        head = SlaterDeterminantHead(8, n_up=2, n_down=2, n_nuclei=1, n_determinants=2)
    n = 4
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    off = i != j
    edge_index = torch.stack([j[off], i[off]])  # [2, n_edges]: sender j, receiver i

    def psi(r):
        out_s, out_l = [], []
        for x in r:  # one electron graph per walker
            vec = x[edge_index[0]] - x[edge_index[1]]
            h = block(torch.ones(n, 1, dtype=x.dtype), sh(vec), radial(vec.norm(dim=-1)),
                      edge_index)[:, :8]  # invariant channels: [n_elec, 8]
            s, la = head(h.unsqueeze(0), x.norm(dim=-1)[None, :, None])
            out_s.append(s)
            out_l.append(la)
        return torch.cat(out_s), torch.cat(out_l)

    assert_antisymmetric(psi, random_walkers(atom("Be"), n_walkers=3), n_up=2, n_down=2,
                         n_random=2)


@pytest.mark.parametrize("system", ["He", "Li", "Be"])
def test_invariant_features_make_atoms_rotation_invariant(system):
    psi = small_wavefunction(system, features="invariant")
    r = random_walkers(system)
    q = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64)).Q
    for rot in (q * torch.linalg.det(q), -q * torch.linalg.det(q)):  # proper, improper
        sign, logabs = psi(r)
        s, la = psi(r @ rot.T)
        assert torch.equal(s, sign)
        torch.testing.assert_close(la, logabs, rtol=1e-10, atol=1e-12)


def test_invariant_features_rotate_with_the_molecule():
    """psi(Q r; Q R) = psi(r; R): same parameters, rotated nuclei and electrons."""
    lih = Molecule(["Li", "H"], [[0.1, -0.2, 0.0], [0.3, 0.4, 3.0]])
    q = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64)).Q
    moved = Molecule(["Li", "H"], (torch.tensor(lih.positions, dtype=torch.float64) @ q.T
                                   ).tolist())
    a = small_wavefunction(lih, features="invariant")
    b = small_wavefunction(moved, features="invariant")
    b.load_state_dict({k: v for k, v in a.state_dict().items() if k not in ("nuclei",)},
                      strict=False)
    r = random_walkers(lih)
    sa, la = a(r)
    sb, lb = b(r @ q.T)
    assert torch.equal(sa, sb)
    torch.testing.assert_close(lb, la, rtol=1e-10, atol=1e-12)


def test_cartesian_features_are_not_rotation_invariant():
    """FermiNet's raw vectors: documented, and why ``features="invariant"`` exists."""
    psi = small_wavefunction("Be")
    r = random_walkers("Be")
    q = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64)).Q
    assert (psi(r @ q.T)[1] - psi(r)[1]).abs().max() > 1e-6


def test_wrong_walker_shape_and_dtype_raise():
    psi = small_wavefunction("Li")
    with pytest.raises(ValueError, match=r"n_elec=3"):
        psi(torch.randn(4, 2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="float32"):
        psi(torch.randn(4, 3, 3))


def test_signed_logsumexp_matches_direct_sum():
    sign = torch.tensor([[1.0, -1.0, 1.0], [-1.0, -1.0, 1.0]], dtype=torch.float64)
    logabs = torch.tensor([[0.3, -1.0, 2.0], [1.5, 0.2, -0.7]], dtype=torch.float64)
    s, la = signed_logsumexp(sign, logabs)
    direct = (sign * logabs.exp()).sum(-1)
    torch.testing.assert_close(s * la.exp(), direct)
    s, la = signed_logsumexp(torch.tensor([1.0, -1.0]), torch.tensor([800.0, 799.0]))
    assert torch.isfinite(la) and s == 1


def test_jastrow_has_the_kato_cusps():
    jastrow = ElectronCuspJastrow(2, 1).double()
    d = torch.full((1, 3, 3), 2.0, dtype=torch.float64)

    def slope(i, j):
        x = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
        dd = d.clone()
        dd[0, i, j] = dd[0, j, i] = x
        return torch.autograd.grad(jastrow(dd).sum(), x)[0].item()

    assert slope(0, 1) == pytest.approx(0.25)  # parallel
    assert slope(0, 2) == pytest.approx(0.5)  # antiparallel
