"""The global lift: exact equivariance of lifted MLPs, CNNs and point-cloud models on every group
element, shared parameters, one batched call, exact invariant pooling, errors on bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from equivar.symmetry import (
    Equivarify,
    RegularAction,
    cyclic,
    dihedral,
    direct_product,
    equivarify,
    icosahedral,
    octahedral,
    symmetric,
    with_inversion,
)
from equivar.testing import SymmetryAssertionError, assert_group_equivariant

F64 = torch.float64
GROUPS_FOR_POOLING = [octahedral, icosahedral, lambda: with_inversion(octahedral())]


def mlp(n_in: int, n_out: int, dtype=F64) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(n_in, 16), nn.Tanh(),
                         nn.Linear(16, n_out)).to(dtype)


def cnn(n_out: int = 5, dtype=F64) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 4, 3),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, n_out)).to(dtype)


class PointCloudModel(nn.Module):
    """Per-atom MLP of (position, species embedding) summed over atoms, then an MLP: neither
    rotation invariant (raw coordinates) nor permutation invariant in its per-atom weights."""

    def __init__(self, n_atoms: int, dtype=F64) -> None:
        super().__init__()
        self.embed = nn.Embedding(5, 4).to(dtype)
        self.atom = nn.Sequential(nn.Linear(7, 16), nn.SiLU(), nn.Linear(16, 8)).to(dtype)
        self.slot = nn.Parameter(torch.randn(n_atoms, 8, dtype=dtype))  # per-slot weights
        self.head = nn.Linear(8, 2).to(dtype)

    def forward(self, pos, species):
        h = self.atom(torch.cat([pos, self.embed(species)], -1))  # [batch, n_atoms, 8]
        return self.head((h * self.slot).sum(1))  # [batch, 2]


def test_lifted_mlp_is_equivariant_on_every_element_of_oh():
    group = with_inversion(octahedral())
    model = equivarify(mlp(15, 3), group).eval()
    x = torch.randn(3, 5, 3, dtype=F64)
    out = model(x)
    assert out.shape == (3, 48, 3)
    assert isinstance(model.output_action, RegularAction)
    report = assert_group_equivariant(model, group, x)  # actions read from the model
    assert report["n_group"] == 48 and report["max_error"] < 1e-13  # a permutation: rounding only
    # the lift evaluated at the identity is the original map: p o F^ = F
    assert torch.allclose(out[:, 0], model.module(x), atol=1e-15)
    # F^(x)(g) = F(g^-1 x), element by element
    mats, inv = group.matrices(), group.inverses()
    for g in (1, 17, 47):
        assert torch.allclose(out[:, g], model.module(x @ mats[inv[g]].T), atol=1e-14)


@pytest.mark.parametrize("pool", ["mean", "max", "sum"])
@pytest.mark.parametrize("group_fn", GROUPS_FOR_POOLING,
                         ids=["O", "I", "Oh"])
def test_invariant_pooling_is_exact(pool, group_fn):
    group = group_fn()
    model = equivarify(mlp(12, 2), group, invariant=True, pool=pool).eval()
    x = torch.randn(4, 4, 3, dtype=F64)
    report = assert_group_equivariant(model, group, x, out_action="trivial")
    assert report["max_error"] < 1e-13
    assert model(x).shape == (4, 2)


def test_lifted_mlp_maps_to_vectors_and_irreps():
    group = with_inversion(octahedral())
    x = torch.randn(3, 4, 3, dtype=F64)
    vec = equivarify(mlp(12, 3), group, output="vectors")
    assert assert_group_equivariant(vec, group, x)["max_error"] < 1e-13
    irr = equivarify(mlp(12, 1 + 3 + 5), group, output="0e+1o+2e")
    assert assert_group_equivariant(irr, group, x)["max_error"] < 1e-12
    induced = equivarify(mlp(12, 3), group, output="vectors", pool=None)
    assert induced(x).shape == (3, 48, 3)
    assert assert_group_equivariant(induced, group, x)["max_error"] < 1e-13


@pytest.mark.parametrize("group_fn", [lambda: cyclic(4), lambda: dihedral(4)], ids=["C4", "D4"])
def test_lifted_cnn_is_equivariant_on_images(group_fn, dtype):
    group = group_fn()
    x = torch.randn(3, 1, 6, 6, dtype=dtype)
    plain = cnn(dtype=dtype).eval()
    lifted = equivarify(plain, group, action="image")
    tol = 1e-12 if dtype == F64 else 1e-5
    assert assert_group_equivariant(lifted, group, x)["max_error"] < tol
    inv = equivarify(plain, group, invariant=True, action="image")
    assert assert_group_equivariant(inv, group, x)["max_error"] < tol
    # image-to-image: a conv net made to commute with rot90/flips
    unet = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.Tanh(),
                         nn.Conv2d(3, 2, 3, padding=1)).to(dtype)
    seg = equivarify(unet, group, action="image", output="image")
    assert assert_group_equivariant(seg, group, x)["max_error"] < tol
    with pytest.raises(SymmetryAssertionError, match="elements of"):
        assert_group_equivariant(plain, group, x, in_action="image", out_action="trivial")


def test_point_cloud_model_with_species_under_permutations_and_rotations():
    n_atoms = 3
    group = direct_product(symmetric(n_atoms), octahedral())  # relabel and rotate: 144 elements
    model = PointCloudModel(n_atoms)
    # positions are relabelled and rotated; species are relabelled with them
    lifted = equivarify(model, group, invariant=True, action=(None, "set")).eval()
    pos = torch.randn(2, n_atoms, 3, dtype=F64)
    species = torch.tensor([[0, 1, 1], [2, 3, 4]])
    base = lifted(pos, species)
    perms, mats = group.permutations(), group.matrices()
    # species move with their atoms: build g.(pos, species) by hand for every element at once,
    # new slot perm[g, i] holds old atom i, so new slot j holds old atom perm[g]^-1 [j]
    source = torch.argsort(perms, dim=1)  # [n_group, n_atoms]
    rotated = torch.einsum("gij,bnj->gbni", mats, pos)  # [n_group, batch, n_atoms, 3]
    moved_pos = torch.gather(rotated, 2, source[:, None, :, None].expand_as(rotated))
    moved_species = species[:, source].transpose(0, 1)  # [n_group, batch, n_atoms]
    out = lifted(moved_pos.reshape(-1, n_atoms, 3), moved_species.reshape(-1, n_atoms))
    errors = (out.view(len(group), 2, -1) - base).abs().amax(dim=(1, 2))
    assert errors.max() < 1e-13
    # rotations only: species are invariant extra arguments, repeated over the group axis
    rotations = equivarify(model, octahedral(), invariant=True).eval()
    def energy(p):  # assert_group_equivariant folds the group into the batch, sample-major
        return rotations(p, species.repeat_interleave(p.shape[0] // len(species), 0))

    report = assert_group_equivariant(energy, octahedral(), pos, out_action="trivial")
    assert report["max_error"] < 1e-13


def test_parameters_are_shared_not_copied():
    model = cnn()
    lifted = equivarify(model, dihedral(4), invariant=True, action="image")
    assert [id(p) for p in lifted.parameters()] == [id(p) for p in model.parameters()]
    assert sum(p.numel() for p in lifted.parameters()) == sum(p.numel() for p in model.parameters())
    loss = lifted(torch.randn(2, 1, 6, 6, dtype=F64)).sum()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_one_batched_call_per_forward():
    model = cnn()
    calls = []
    model.register_forward_hook(lambda mod, inp, out: calls.append(inp[0].shape))
    lifted = equivarify(model, dihedral(4), invariant=True, action="image")
    lifted(torch.randn(5, 1, 6, 6, dtype=F64))
    assert calls == [torch.Size([5 * 8, 1, 6, 6])]


def test_batch_norm_in_training_mode_stays_equivariant():
    group = cyclic(4)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
                        nn.Flatten(), nn.Linear(3 * 36, 2)).double().train()
    lifted = equivarify(net, group, action="image")
    x = torch.randn(4, 1, 6, 6, dtype=F64)
    assert assert_group_equivariant(lifted, group, x)["max_error"] < 1e-12


def test_bad_input_raises_naming_the_problem():
    o = octahedral()
    reducing = nn.Sequential(nn.Flatten(0), nn.Linear(4 * 24 * 3 * 2, 1)).double()
    with pytest.raises(ValueError, match="cannot take a group axis"):
        equivarify(reducing, o)(torch.randn(2, 4, 3, dtype=F64))
    with pytest.raises(ValueError, match=r"\[batch, \.\.\., 3\]"):
        equivarify(mlp(8, 1), o)(torch.randn(2, 4, 2, dtype=F64))
    with pytest.raises(ValueError, match="square"):
        equivarify(cnn(), cyclic(4), action="image")(torch.randn(2, 1, 6, 5, dtype=F64))
    with pytest.raises(ValueError, match="pixel grid"):
        equivarify(cnn(), o, action="image")
    with pytest.raises(ValueError, match="not both"):
        equivarify(mlp(12, 3), o, invariant=True, output="vectors")
    with pytest.raises(ValueError, match="max"):
        equivarify(mlp(12, 3), o, output="vectors", pool="max")
    with pytest.raises(ValueError, match="pool must be"):
        equivarify(mlp(12, 3), o, invariant=True, pool="median")
    with pytest.raises(TypeError, match="nn.Module"):
        equivarify(lambda x: x, o)
    with pytest.raises(TypeError, match="must return a Tensor"):
        equivarify(nn.ModuleDict(), o) if False else Equivarify(_DictModel(), o)(
            torch.randn(2, 4, 3, dtype=F64))
    with pytest.raises(TypeError, match="layerwise"):
        equivarify(mlp(12, 3), o, modes=["auto"])


class _DictModel(nn.Module):
    def forward(self, x):
        return {"y": x}


def test_repr_reads_like_the_construction():
    text = repr(equivarify(cnn(), dihedral(4), invariant=True, action="image"))
    assert "group=D4 (n_group=8)" in text and "ImageAction(D4)" in text and "pool=mean" in text
