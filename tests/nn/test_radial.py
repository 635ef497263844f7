"""Radial bases, the cutoff envelope, embeddings and ZBL: values, smoothness, errors."""

import math

import pytest
import torch

from equivar.nn import (
    BesselBasis,
    GaussianBasis,
    GraphInputEmbedding,
    PolynomialCutoff,
    RadialEmbedding,
    SpeciesEmbedding,
    ZBLRepulsion,
    resolve_species,
)


def test_polynomial_cutoff_vanishes_smoothly():
    env = PolynomialCutoff(4.0, p=6)
    r = torch.tensor([4.0 - 1e-6, 4.0], dtype=torch.float64, requires_grad=True)
    u = env(r)
    (du,) = torch.autograd.grad(u.sum(), r, create_graph=True)
    (d2u,) = torch.autograd.grad(du.sum(), r)
    assert torch.allclose(env(torch.tensor([0.0])), torch.tensor([1.0]))
    assert u.abs().max() < 1e-12 and du.abs().max() < 1e-8 and d2u.abs().max() < 1e-4
    assert env(torch.tensor([4.5, 100.0])).abs().max() == 0
    x = torch.linspace(0, 4, 200)
    assert torch.all(torch.diff(env(x)) <= 1e-7)  # monotone decreasing


def test_bessel_basis_matches_formula():
    b = BesselBasis(5.0, 4).double()
    r = torch.tensor([0.7, 2.0, 4.9], dtype=torch.float64)
    n = torch.arange(1, 5, dtype=torch.float64)
    ref = math.sqrt(2 / 5.0) * torch.sin(n * math.pi * r[:, None] / 5.0) / r[:, None]
    assert torch.allclose(b(r), ref)


def test_gaussian_basis_peaks_at_centres():
    g = GaussianBasis(4.0, 5)
    out = g(torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0]))
    assert torch.allclose(out.diagonal(), torch.ones(5))


def test_radial_embedding_zero_beyond_cutoff():
    emb = RadialEmbedding(3.0, 6, "gaussian")
    assert emb(torch.tensor([3.0, 3.5])).abs().max() == 0
    with pytest.raises(ValueError, match="unknown radial basis"):
        RadialEmbedding(3.0, 6, "fourier")
    with pytest.raises(ValueError, match="cutoff must be positive"):
        RadialEmbedding(-1.0)


def test_species_embedding_rejects_unknown_elements():
    emb = SpeciesEmbedding(["H", "C", 8], 4)
    assert emb.species == [1, 6, 8]
    assert emb(torch.tensor([8, 1, 6])).shape == (3, 4)
    with pytest.raises(ValueError, match=r"\[26\] \(Fe\) are not among the model's species"):
        emb(torch.tensor([1, 26]))
    with pytest.raises(ValueError, match="not among"):
        emb(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="unknown element symbol"):
        resolve_species(["Xx"])
    with pytest.raises(ValueError, match="outside 1..118"):
        resolve_species([119])


def test_graph_inputs_distinguish_charge_and_spin():
    emb = GraphInputEmbedding(8)
    batch = torch.tensor([0, 0, 1, 1, 2])
    out = emb(torch.tensor([0.0, 1.0, 0.0]), torch.tensor([1.0, 2.0, 3.0]), batch)
    assert out.shape == (5, 8)
    assert torch.equal(out[0], out[1]) and not torch.allclose(out[0], out[2])


def test_zbl_matches_hand_calculation_and_switches_off():
    zbl = ZBLRepulsion().double()
    z = torch.tensor([1, 1])
    edge_index = torch.tensor([[0, 1], [1, 0]])
    r = 0.3
    e = zbl(z, torch.tensor([r, r], dtype=torch.float64), edge_index).sum().item()
    a = 0.46850 / (2 * 1.0**0.23)
    x = r / a
    coefficients = ((0.18175, 3.19980), (0.50986, 0.94229), (0.28022, 0.40290),
                    (0.02817, 0.20162))
    phi = sum(c * math.exp(-d * x) for c, d in coefficients)
    rc = 2 * 0.31  # covalent radius of H in ase
    env = PolynomialCutoff(1.0)(torch.tensor(r / rc, dtype=torch.float64)).item()
    assert e == pytest.approx(14.399645478425668 / r * phi * env, rel=1e-12)
    far = zbl(z, torch.tensor([0.7, 0.7], dtype=torch.float64), edge_index)
    assert far.abs().max() == 0
