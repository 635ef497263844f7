"""Layer-wise lift: a convolution lifted layer by layer is a group convolution (Cohen & Welling),
parameters are unchanged, and layer-wise lifted MLPs/CNNs are exactly equivariant."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from equivar.symmetry import (
    InducedAction,
    LayerwiseEquivarify,
    cyclic,
    dihedral,
    equivarify,
    octahedral,
    symmetric,
)
from equivar.testing import assert_group_equivariant

F64 = torch.float64


# --- an independent G-CNN (p4 / p4m) written from Cohen & Welling 2016 --------------------------
def _pixel_group(flips: bool):
    """Elements as functions on images (rot90^k, then optionally a row flip first) and their
    table, found by composing the functions on a probe image (not from equivar)."""

    def make(k, m):
        return lambda t: torch.rot90(torch.flip(t, (-2,)) if m else t, k, dims=(-2, -1))

    ops = [make(k, m) for m in ((0, 1) if flips else (0,)) for k in range(4)]
    probe = torch.arange(25.0).view(5, 5)
    images = [op(probe) for op in ops]
    table = torch.tensor([[next(i for i, im in enumerate(images) if torch.equal(im, a(b(probe))))
                           for b in ops] for a in ops])
    inverse = (table == 0).long().argmax(1)
    return ops, table, inverse


def lifting_conv(x, weight, ops):
    """[f * psi](g) = sum_y f(y) psi(g^-1 y): the input correlated with every transformed filter."""
    return torch.stack([F.conv2d(x, op(weight), padding=1) for op in ops], 1)


def group_conv(f, weight, ops, table, inverse):
    """[f * psi](g) = sum_h sum_y f(y, h) psi(g^-1 y, g^-1 h).

    ``f``: [batch, n_group, C, H, W]; ``weight``: [C_out, n_group * C, k, k] read as
    ``psi[o, h, c]`` (h-major, as the layer-wise lift folds the group axis into channels)."""
    n = len(ops)
    c_out, _, k, _ = weight.shape
    psi = weight.view(c_out, n, -1, k, k)
    flat = f.reshape(f.shape[0], -1, *f.shape[3:])
    out = []
    for g in range(n):
        # (g.psi)(y, h) = psi(g^-1 y, g^-1 h): permute the group axis, then transform space
        moved = psi[:, table[inverse[g]]].reshape(c_out, -1, k, k)
        out.append(F.conv2d(flat, ops[g](moved), padding=1))
    return torch.stack(out, 1)


@pytest.mark.parametrize("flips", [False, True], ids=["p4 (C4)", "p4m (D4)"])
def test_layerwise_lift_of_a_cnn_is_a_group_cnn(flips):
    ops, table, inverse = _pixel_group(flips)
    group = dihedral(4) if flips else cyclic(4)
    assert torch.equal(group.multiplication_table(), table), "same element order as the probe"
    n = len(group)
    conv1 = nn.Conv2d(1, 3, 3, padding=1, bias=False).double()
    conv2 = nn.Conv2d(n * 3, 2, 3, padding=1, bias=False).double()
    lifted = LayerwiseEquivarify([conv1, nn.ReLU(), conv2], group, action="image")
    x = torch.randn(2, 1, 7, 7, dtype=F64)

    with torch.no_grad():
        ref = group_conv(torch.relu(lifting_conv(x, conv1.weight, ops)), conv2.weight, ops, table,
                         inverse)
        out = lifted(x)
    assert out.shape == (2, n, 2, 7, 7)
    assert (out - ref).abs().max() < 1e-12
    assert isinstance(lifted.output_action, InducedAction)  # G-CNN feature maps
    assert assert_group_equivariant(lifted, group, x)["max_error"] < 1e-12
    # parameters unchanged: exactly the layers' own tensors
    assert [id(p) for p in lifted.parameters()] == [id(conv1.weight), id(conv2.weight)]


@pytest.mark.parametrize("hidden", ["induced", "regular"])
@pytest.mark.parametrize("group_fn", [lambda: cyclic(4), lambda: dihedral(4)], ids=["C4", "D4"])
def test_layerwise_cnn_classifier_is_invariant(hidden, group_fn, dtype):
    group = group_fn()
    n = len(group)
    layers = [nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(n * 4, 6, 3, padding=1),
              nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(6 * 9, 16), nn.ReLU(),
              nn.Linear(16, 10)]
    layers = [layer.to(dtype) for layer in layers]
    count = sum(p.numel() for layer in layers for p in layer.parameters())
    net = equivarify(nn.Sequential(*layers), group, invariant=True, action="image",
                     layerwise=True, hidden=hidden)
    assert isinstance(net, LayerwiseEquivarify)
    assert sum(p.numel() for p in net.parameters()) == count
    x = torch.randn(3, 1, 6, 6, dtype=dtype)
    tol = 1e-12 if dtype == F64 else 1e-5
    assert assert_group_equivariant(net, group, x)["max_error"] < tol
    assert net(x).shape == (3, 10)


def test_layerwise_mlp_on_points_and_sets():
    group = octahedral()
    layers = [nn.Flatten(), nn.Linear(12, 8), nn.Tanh(), nn.Linear(24 * 8, 5)]
    # the lift is the parameter-free Flatten; Linear(12, 8) is pointwise; Linear(24*8, 5) mixes
    net = LayerwiseEquivarify([layer.double() for layer in layers], group)
    x = torch.randn(3, 4, 3, dtype=F64)
    assert net(x).shape == (3, 24, 5)
    assert assert_group_equivariant(net, group, x)["max_error"] < 1e-12
    # per-point features keep the set action of S_n on the hidden layers ("induced")
    s4 = symmetric(4)
    per_point = LayerwiseEquivarify(
        [nn.Linear(3, 6).double(), nn.SiLU(), nn.Linear(len(s4) * 6, 2).double()], s4,
        invariant=True)
    assert assert_group_equivariant(per_point, s4, x, out_action="trivial")["max_error"] < 1e-13


def test_modes_are_explicit_when_asked_and_errors_name_the_layer():
    group = cyclic(4)
    x = torch.randn(2, 1, 6, 6, dtype=F64)
    wrong = LayerwiseEquivarify([nn.Conv2d(1, 4, 3).double(), nn.Conv2d(7, 2, 3).double()],
                                group, action="image")
    with pytest.raises(ValueError, match=r"layer 1 .* takes 7 input channels .* 4 \* 4 = 16"):
        wrong(x)
    explicit = LayerwiseEquivarify([nn.Conv2d(1, 4, 3).double(), nn.Conv2d(4, 2, 3).double()],
                                   group, action="image", modes=["lift", "pointwise"])
    assert assert_group_equivariant(explicit, group, x)["max_error"] < 1e-12
    with pytest.raises(ValueError, match="only the first layer"):
        LayerwiseEquivarify([nn.ReLU(), nn.ReLU()], group, modes=["auto", "lift"])
    with pytest.raises(ValueError, match="modes has"):
        LayerwiseEquivarify([nn.ReLU()], group, modes=["auto", "auto"])
    with pytest.raises(ValueError, match="hidden"):
        LayerwiseEquivarify([nn.ReLU()], group, hidden="free")
    with pytest.raises(TypeError, match="non-empty"):
        LayerwiseEquivarify([], group)
    with pytest.raises(ValueError, match="cannot take a group axis"):
        LayerwiseEquivarify([nn.Conv2d(1, 2, 3).double(), nn.Flatten(0)], group,
                            action="image")(x)


def test_invariant_pooling_of_feature_maps_is_invariant():
    group = dihedral(4)
    layers = [nn.Conv2d(1, 3, 3, padding=1), nn.Tanh(), nn.Conv2d(8 * 3, 2, 3, padding=1)]
    net = LayerwiseEquivarify([layer.double() for layer in layers], group, action="image",
                              invariant=True)
    x = torch.randn(2, 1, 5, 5, dtype=F64)
    assert net(x).shape == (2, 2, 5, 5)
    assert assert_group_equivariant(net, group, x, out_action="trivial")["max_error"] < 1e-13
