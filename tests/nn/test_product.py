"""The many-body product basis: equivariant under rotations and inversion for any irreps of one
multiplicity, equal to a hand computation, species-wise, and a potential built on it is
equivariant and conservative."""

import math

import pytest
import torch
from e3nn import o3

from equivar.models import build
from equivar.nn import InteractionBlock, ProductBasis
from equivar.testing import assert_conservative, assert_equivariant
from equivar.testing.fixtures import random_molecule_batch
from equivar.testing.wigner import wigner_D
from tests.conftest import tolerance
from tests.nn.test_blocks import _float64_built, _random_graph, _rel, _rotations


@pytest.mark.parametrize("irreps", ["4x0e+4x1o", "3x0e+3x1o+3x2e", "2x0e+2x0o+2x1o+2x1e+2x2e"])
@pytest.mark.parametrize("correlation", [1, 2, 3])
def test_equivariant(irreps, correlation, dtype):
    product = _float64_built(lambda: ProductBasis(irreps, correlation, 3)).to(dtype)
    x = product.irreps_in.randn(9, -1, dtype=dtype)
    species = torch.tensor([0, 1, 2, 0, 1, 2, 2, 1, 0])
    for R in _rotations(dtype):
        D = wigner_D(product.irreps_in, R)
        assert _rel(product(x @ D.T, species), product(x, species) @ D.T) < tolerance(dtype)


def test_second_power_equals_a_hand_computation():
    """For 1x0e+1x1o (scalar s, vector v), the correlation-2 term of the scalar output is
    w1 s^2 + w2 |v|^2 / sqrt(3) (Clebsch-Gordan 1 x 1 -> 0 in component normalisation), and of
    the vector output w3 s v + w4 v s."""
    product = _float64_built(lambda: ProductBasis("1x0e+1x1o", 2, 1)).double()
    with torch.no_grad():
        product.linear_weight.zero_()
        w = product.power_weights[0]
        w.copy_(torch.tensor([2.0, 3.0, 5.0, 7.0]).reshape(1, 4, 1))
    x = torch.randn(6, 4, dtype=torch.float64)
    s, v = x[:, :1], x[:, 1:]
    out = product(x, torch.zeros(6, dtype=torch.long))
    # paths in order (0,0)->0, (0,1)->1, (1,0)->1, (1,1)->0 (e3nn's vector basis is (y, z, x),
    # a permutation of the components, so dot products and scalings are unchanged)
    scalar = 2.0 * s.squeeze(1) ** 2 + 7.0 * (v * v).sum(1) / math.sqrt(3.0)
    vector = (3.0 + 5.0) * s * v
    assert torch.allclose(out[:, 0], scalar, atol=1e-12)
    assert torch.allclose(out[:, 1:], vector, atol=1e-12)


def test_species_select_their_own_weights():
    product = _float64_built(lambda: ProductBasis("2x0e+2x1o", 3, 2)).double()
    x = product.irreps_in.randn(1, -1, dtype=torch.float64).repeat(2, 1)
    out = product(x, torch.tensor([0, 1]))
    assert not torch.allclose(out[0], out[1])
    with torch.no_grad():
        for p in (product.linear_weight, *product.power_weights):
            p[1] = p[0]
    out = product(x, torch.tensor([0, 1]))
    assert torch.allclose(out[0], out[1], atol=1e-14)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="one multiplicity"):
        ProductBasis("4x0e+2x1o", 2, 1)
    with pytest.raises(ValueError, match="correlation must be >= 1"):
        ProductBasis("4x0e+4x1o", 0, 1)
    with pytest.raises(ValueError, match="num_species"):
        InteractionBlock("4x0e", "4x0e+4x1o", "1x0e+1x1o", 8, (8,), correlation=2)
    block = _float64_built(lambda: InteractionBlock("4x0e", "4x0e+4x1o", "1x0e+1x1o", 8, (8,),
                                                    correlation=2, num_species=2))
    edge_index, vec = _random_graph(5, 12, torch.float64)
    sh = o3.spherical_harmonics("1x0e+1x1o", vec, True)
    with pytest.raises(ValueError, match="species_index"):
        block(torch.randn(5, 4, dtype=torch.float64), sh, torch.randn(12, 8, dtype=torch.float64),
              edge_index)
    with pytest.raises(ValueError, match=r"unknown option.*'corelation'.*'correlation'"):
        build("potential", preset="S", corelation=3)


TINY = {"species": [1, 6, 8], "cutoff": 3.5, "num_channels": 3, "lmax": 2, "sh_lmax": 2,
        "num_layers": 2, "radial_hidden": (8,), "avg_num_neighbors": 3.0, "correlation": 3}


def test_potential_with_products_is_equivariant_and_conservative():
    model = build("potential", **TINY, dtype="float64")
    assert "ProductBasis(3x0e+3x1o+3x2e, correlation=3" in repr(model)
    batch = random_molecule_batch(n_graphs=2, n_atoms=(3, 5), species=(1, 6, 8), cutoff=3.5,
                                  seed=1)
    assert_equivariant(model, batch, n_rotations=2)
    one = random_molecule_batch(n_graphs=1, n_atoms=4, species=(1, 6, 8), cutoff=3.5, seed=2)
    assert_conservative(model, one, n_checks=2, loop_points=8, check_stress=False)
    model32 = build("potential", **TINY, dtype="float32")
    batch32 = random_molecule_batch(n_graphs=2, n_atoms=(3, 5), species=(1, 6, 8), cutoff=3.5,
                                    seed=1, dtype=torch.float32)
    assert_equivariant(model32, batch32, n_rotations=2)


@pytest.mark.parametrize("correlation", [1, 2, 3])
def test_output_is_a_polynomial_of_degree_correlation(correlation):
    """``product(t x)`` is a polynomial in ``t`` of degree ``correlation`` exactly (its
    ``correlation + 1``-th finite difference vanishes, its ``correlation``-th does not): the
    basis holds ``correlation``-fold products of the density, no more and no fewer."""
    product = _float64_built(lambda: ProductBasis("3x0e+3x1o+3x2e", correlation, 2)).double()
    x = product.irreps_in.randn(4, -1, dtype=torch.float64)
    species = torch.tensor([0, 1, 1, 0])
    values = [product(t * x, species) for t in range(correlation + 2)]

    def difference(order):
        return sum((-1) ** (order - k) * math.comb(order, k) * values[k] for k in range(order + 1))

    assert difference(correlation + 1).abs().max() < 1e-9 * values[-1].abs().max()
    assert difference(correlation).abs().max() > 1e-3 * values[-1].abs().max()


def test_layer_readouts_add_every_blocks_energy():
    """``layer_readouts``: the atomic energy is the last block's readout plus a linear readout of
    each earlier block; zeroing those gives the plain model's energy, and the model stays
    equivariant and conservative."""
    opts = {**TINY, "correlation": 2}
    model = build("potential", **opts, layer_readouts=True, dtype="float64")
    plain = build("potential", **opts, dtype="float64")
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("layer_readouts")}
    plain.load_state_dict(state)
    assert len(model.layer_readouts) == TINY["num_layers"] - 1 and "linear energy" in repr(model)
    batch = random_molecule_batch(n_graphs=2, n_atoms=(3, 5), species=(1, 6, 8), cutoff=3.5,
                                  seed=5)
    assert not torch.allclose(model(batch)["energy"], plain(batch)["energy"])
    with torch.no_grad():
        for p in model.layer_readouts.parameters():
            p.zero_()
    assert torch.allclose(model(batch)["energy"], plain(batch)["energy"], atol=1e-12)
    with torch.no_grad():
        for p in model.layer_readouts.parameters():
            p.normal_()
    assert_equivariant(model, batch, n_rotations=1)
    one = random_molecule_batch(n_graphs=1, n_atoms=4, species=(1, 6, 8), cutoff=3.5, seed=2)
    assert_conservative(model, one, n_checks=1, loop_points=8, check_stress=False)
