"""Heads: pooling is permutation invariant, tensor heads rotate exactly, the dipole of an ion is
translation invariant, strain derivatives give ASE's stress sign."""

import torch
from e3nn import o3

from equivar.dtypes import default_dtype
from equivar.heads import (
    DipoleHead,
    SymmetricTensorHead,
    VectorHead,
    attach_strain,
    energy_derivatives,
    pool,
)
from equivar.testing import wigner_D
from tests.conftest import tolerance

IRREPS = o3.Irreps("6x0e+4x1o+3x2e")


def _built64(cls):
    with default_dtype(torch.float64):
        return cls(IRREPS)


def test_pooling_is_permutation_invariant(dtype):
    x = torch.randn(7, 3, dtype=dtype)
    batch = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    perm = torch.tensor([4, 0, 2, 1, 3, 6, 5])  # any relabelling (graphs stay whole in pooling)
    for reduce in ("sum", "mean"):
        a, b = pool(x, batch, 3, reduce), pool(x[perm], batch[perm], 3, reduce)
        assert torch.allclose(a, b, rtol=tolerance(dtype))
    assert torch.allclose(pool(x, batch, 3, "mean")[1], x[3:5].mean(0))


def test_vector_and_tensor_heads_rotate_exactly(dtype):
    vec, ten = _built64(VectorHead).to(dtype), _built64(SymmetricTensorHead).to(dtype)
    h = IRREPS.randn(5, -1, dtype=dtype)
    batch = torch.tensor([0, 0, 1, 1, 1])
    R = -o3.rand_matrix(dtype=torch.float64).to(dtype)  # improper
    h_rot = h @ wigner_D(IRREPS, R).T
    v, v_rot = vec(h, batch, 2), vec(h_rot, batch, 2)
    assert (v_rot - v @ R.T).abs().max() / v.abs().max() < tolerance(dtype)
    t, t_rot = ten(h, batch, 2), ten(h_rot, batch, 2)
    assert (t_rot - R @ t @ R.T).abs().max() / t.abs().max() < tolerance(dtype)
    assert torch.allclose(t, t.transpose(-1, -2))


def test_dipole_of_an_ion_is_translation_invariant():
    head = _built64(DipoleHead)
    h = IRREPS.randn(4, -1, dtype=torch.float64)
    pos = torch.randn(4, 3, dtype=torch.float64)
    masses = torch.tensor([1.0, 12.0, 16.0, 1.0], dtype=torch.float64)
    batch = torch.zeros(4, dtype=torch.long)
    charge = torch.tensor([1.0], dtype=torch.float64)
    mu, q = head(h, pos, masses, charge, batch, 1)
    mu_t, q_t = head(h, pos + torch.tensor([5.0, -3.0, 2.0], dtype=torch.float64), masses, charge,
                     batch, 1)
    assert torch.allclose(q.sum(), charge) and torch.allclose(q, q_t)
    assert torch.allclose(mu, mu_t, atol=1e-12)


def test_strain_derivative_gives_ase_stress():
    """E = k * V for a cubic cell: dE/d(eps_ii) = k V, so stress = k on the diagonal."""
    cell = (2.0 * torch.eye(3, dtype=torch.float64)).unsqueeze(0)
    pos = torch.rand(3, 3, dtype=torch.float64, requires_grad=True)
    batch = torch.zeros(3, dtype=torch.long)
    pos_s, cell_s, disp = attach_strain(pos, cell, batch)
    assert torch.equal(pos_s, pos) and torch.equal(cell_s, cell)
    k = 0.3
    energy = k * torch.linalg.det(cell_s) + (pos_s**2).sum().reshape(1) * 0.0
    out = energy_derivatives(energy, pos, disp, cell, create_graph=False)
    assert torch.allclose(out["stress"][0], k * torch.eye(3, dtype=torch.float64))
    assert torch.allclose(out["virial"][0], -k * 8.0 * torch.eye(3, dtype=torch.float64))
    molecule = energy_derivatives(
        (pos**2).sum().reshape(1), pos, torch.zeros(1, 3, 3, dtype=torch.float64,
                                                    requires_grad=True),
        torch.zeros(1, 3, 3, dtype=torch.float64), create_graph=False,
    )
    assert torch.isnan(molecule["stress"]).all()  # undefined without a cell: NaN, not 0
    assert torch.allclose(molecule["forces"], -2 * pos)
