"""Every action is a left action (checked on every pair of elements) with the documented
conventions, and refuses inputs of the wrong shape."""

from __future__ import annotations

import pytest
import torch

from equivar.symmetry import (
    ComposedAction,
    ImageAction,
    InducedAction,
    IrrepsAction,
    PermutationAction,
    PointAction,
    RegularAction,
    TrivialAction,
    as_action,
    cyclic,
    dihedral,
    direct_product,
    icosahedral,
    octahedral,
    symmetric,
    with_inversion,
)

F64 = torch.float64


def _cases():
    gen = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, dtype=F64, generator=gen)

    oh, d4 = with_inversion(octahedral()), dihedral(4)
    s3o = direct_product(symmetric(3), octahedral())
    return {
        "points-Oh": (PointAction(oh), rand(2, 5, 3)),
        "axial-Oh": (PointAction(oh, axial=True), rand(2, 3)),
        "points-I": (PointAction(icosahedral()), rand(2, 4, 3)),
        "image-C4": (ImageAction(cyclic(4)), rand(2, 3, 5, 5)),
        "image-D4": (ImageAction(d4), rand(2, 2, 6, 6)),
        "image-D2-rect": (ImageAction(dihedral(2)), rand(2, 1, 4, 7)),
        "image-C4h": (ImageAction(with_inversion(cyclic(4))), rand(2, 4, 4)),
        "set-S4": (PermutationAction(symmetric(4)), rand(2, 4, 3)),
        "set-S3-dim2": (PermutationAction(symmetric(3), dim=-1), rand(2, 5, 3)),
        "irreps-Oh": (IrrepsAction(oh, "2x0e+1x1o+1x1e+1x2e"), rand(2, 3, 13)),
        "regular-D4": (RegularAction(d4), rand(2, 8, 3)),
        "induced-D4": (InducedAction(ImageAction(d4)), rand(2, 8, 2, 4, 4)),
        "induced-O-points": (InducedAction(PointAction(octahedral())), rand(2, 24, 3)),
        "composed-S3xO": (ComposedAction(PermutationAction(s3o), PointAction(s3o)), rand(2, 3, 3)),
        "trivial-O": (TrivialAction(octahedral()), rand(2, 3)),
    }


CASES = _cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_left_action_on_every_pair(name):
    action, x = CASES[name]
    g = action.group
    n, table = len(g), g.multiplication_table()
    orbit = action.orbit(x)  # [batch, n_group, ...]: every a.x
    assert torch.equal(orbit[:, 0], x), "the identity acts trivially"
    # a.(b.x) for all pairs in one batched call, against (ab).x
    batch = x.shape[0]
    inner = orbit.reshape(batch * n, *x.shape[1:]).repeat_interleave(n, 0)  # rows (b, g_b, a)
    elements = torch.arange(n).repeat(batch * n)  # a
    twice = action.act_each(inner, elements).reshape(batch, n, n, *x.shape[1:])  # [., b, a]
    expected = orbit[:, table.T]  # [batch, b, a] -> (ab).x
    assert (twice - expected).abs().max() <= 1e-13
    inv = action.orbit(x, inverse=True)
    assert torch.equal(inv, orbit[:, g.inverses()])


def test_image_action_is_rot90_and_flip():
    x = torch.randn(3, 2, 5, 5, dtype=F64)
    c4, d4 = ImageAction(cyclic(4)), ImageAction(dihedral(4))
    for k in range(4):
        assert torch.equal(c4.act(x, k), torch.rot90(x, k, dims=(-2, -1)))
        assert torch.equal(d4.act(x, k), torch.rot90(x, k, dims=(-2, -1)))
        assert torch.equal(d4.act(x, 4 + k), torch.rot90(torch.flip(x, (-2,)), k, dims=(-2, -1)))


def test_point_permutation_and_regular_conventions():
    o = octahedral()
    x = torch.randn(2, 4, 3, dtype=F64)
    for g in range(len(o)):
        assert torch.equal(PointAction(o).act(x, g), x @ o.matrices()[g].T)
    s4 = symmetric(4)
    for g in range(len(s4)):
        p = s4.permutations()[g]
        out = PermutationAction(s4).act(x, g)
        assert torch.equal(out[:, p], x), "the point at i moves to perm[i]"
    f = torch.randn(2, 24, 5, dtype=F64)
    table, inv = o.multiplication_table(), o.inverses()
    for h in range(24):
        assert torch.equal(RegularAction(o).act(f, h), f[:, table[inv[h]]]), "f(h^-1 g)"


def test_irreps_action_is_wigner_d_with_parity():
    oh = with_inversion(octahedral())
    act = IrrepsAction(oh, "1x0e+1x1o+1x1e")
    v = torch.randn(4, 7, dtype=F64)
    m = oh.matrices()
    for g in range(len(oh)):
        out = act.act(v, g)
        det = torch.linalg.det(m[g]).round()
        assert torch.allclose(out[:, 0], v[:, 0], atol=1e-14)
        assert torch.allclose(out[:, 1:4], v[:, 1:4] @ m[g].T, atol=1e-12)
        assert torch.allclose(out[:, 4:], det * v[:, 4:] @ m[g].T, atol=1e-12)


def test_as_action_resolves_names():
    o = octahedral()
    assert isinstance(as_action("points", o), PointAction)
    assert as_action("axial", o).axial
    assert isinstance(as_action("regular", o), RegularAction)
    assert isinstance(as_action("invariant", o), TrivialAction)
    assert isinstance(as_action("0e+1o", o), IrrepsAction)
    assert isinstance(as_action("image", cyclic(4)), ImageAction)
    assert isinstance(as_action(None, symmetric(3)), PermutationAction)
    assert isinstance(as_action(None, direct_product(symmetric(2), o)), ComposedAction)
    action = PointAction(o)
    assert as_action(action, o) is action


def test_bad_input_raises_naming_the_problem():
    o, c4 = octahedral(), cyclic(4)
    with pytest.raises(ValueError, match=r"\[batch, \.\.\., 3\]"):
        PointAction(o).act(torch.randn(2, 5, 4), 1)
    with pytest.raises(ValueError, match="square"):
        ImageAction(c4).act(torch.randn(2, 1, 4, 5), 1)
    with pytest.raises(ValueError, match="pixel grid"):
        ImageAction(o)
    with pytest.raises(ValueError, match="permutes 3 points"):
        PermutationAction(symmetric(3)).act(torch.randn(2, 4, 3), 1)
    with pytest.raises(ValueError, match="n_group=24"):
        RegularAction(o).act(torch.randn(2, 8, 3), 1)
    with pytest.raises(ValueError, match="acts on"):
        IrrepsAction(o, "1x1o").act(torch.randn(2, 4), 1)
    with pytest.raises(TypeError, match="no 3x3 matrices"):
        PointAction(symmetric(3))
    with pytest.raises(TypeError, match="no point permutations"):
        PermutationAction(o)
    with pytest.raises(ValueError, match="unknown action"):
        as_action("spin", o)
    with pytest.raises(ValueError, match="not of O"):
        as_action(PointAction(c4), o)
    with pytest.raises(ValueError, match="elements must have shape"):
        PointAction(o).act_each(torch.randn(2, 3), torch.tensor([0]))
    with pytest.raises(ValueError, match="out of range"):
        PointAction(o).act(torch.randn(2, 3), 24)
