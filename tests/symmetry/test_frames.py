"""Frame averaging: exact O(3)/SO(3) and translation invariance/equivariance on clouds with a
simple spectrum; degenerate spectra detected, and the error of the fallback measured."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from equivar.symmetry import FrameAveraging, pca_frames
from equivar.testing import random_rotation

F64 = torch.float64


def mlp(n_points: int, n_out: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * n_points, 32), nn.Tanh(),
                         nn.Linear(32, n_out)).double()


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def motions(n: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    for k in range(n):
        R = random_rotation(F64, gen, inversion=bool(k % 2))
        yield R, torch.randn(3, dtype=F64, generator=gen) * 3


def test_invariant_under_rotations_reflections_and_translations():
    torch.manual_seed(0)
    pos = torch.randn(6, 7, 3, dtype=F64)
    model = FrameAveraging(mlp(7, 4))
    ref = model(pos)
    assert model.frames(pos).rotations.shape == (6, 8, 3, 3)
    assert (model.frames(pos).degenerate == 0).all()
    for R, t in motions(6):
        assert rel(model(pos @ R.T + t), ref) < 1e-12


@pytest.mark.parametrize("output", ["vector", "points", "tensor"])
def test_equivariant_outputs(output):
    torch.manual_seed(1)
    pos = torch.randn(5, 6, 3, dtype=F64)
    n_out = 9 if output == "tensor" else 6

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = mlp(6, n_out)

        def forward(self, x):
            y = self.net(x)
            return y.view(-1, 3, 3) if output == "tensor" else y.view(-1, 2, 3)

    model = FrameAveraging(Net(), output=output)
    ref = model(pos)
    for R, t in motions(4):
        out = model(pos @ R.T + t)
        if output == "tensor":
            expected = R @ ref @ R.T
        else:
            expected = ref @ R.T + (t if output == "points" else 0.0)
        assert rel(out, expected) < 1e-12


def test_so3_frames_are_proper_and_not_reflection_invariant():
    torch.manual_seed(2)
    pos = torch.randn(4, 6, 3, dtype=F64)
    model = FrameAveraging(mlp(6, 3), group="SO3")
    rots = model.frames(pos).rotations
    assert rots.shape[1] == 4
    assert torch.allclose(torch.linalg.det(rots), torch.ones(4, 4, dtype=F64))
    ref = model(pos)
    for R, t in motions(4):
        err = rel(model(pos @ R.T + t), ref)
        if torch.linalg.det(R) > 0:
            assert err < 1e-12
        else:
            assert err > 1e-6, "a chiral model stays chiral under SO(3) frame averaging"


def test_one_batched_call_and_invariant_extra_arguments():
    calls = []

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(3, 2).double()
            self.head = mlp(5, 1)
            self.lin = nn.Linear(10, 15).double()

        def forward(self, x, species):
            calls.append(x.shape[0])
            return self.head(x + self.lin(self.embed(species).flatten(1)).view(-1, 5, 3))

    pos, species = torch.randn(3, 5, 3, dtype=F64), torch.randint(0, 3, (3, 5))
    model = FrameAveraging(Net())
    ref = model(pos, species)
    assert calls == [3 * 8]
    R = random_rotation(F64, torch.Generator().manual_seed(3), inversion=True)
    assert rel(model(pos @ R.T, species), ref) < 1e-12


def test_mask_excludes_padding_from_the_frame():
    class MaskedSum(nn.Module):
        def __init__(self):
            super().__init__()
            self.atom = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)).double()

        def forward(self, x, mask=None):
            h = self.atom(x)  # [batch, n, 2]
            return (h if mask is None else h * mask[..., None]).sum(1)

    torch.manual_seed(4)
    pos = torch.randn(2, 5, 3, dtype=F64)
    padded = torch.cat([pos, torch.full((2, 2, 3), 9.0, dtype=F64)], 1)
    mask = torch.tensor([[True] * 5 + [False] * 2] * 2)
    model = FrameAveraging(MaskedSum())
    assert rel(model(padded, mask=mask), model(pos)) < 1e-12


def _bipyramid():
    """A pentagonal bipyramid: two equal covariance eigenvalues (a symmetric top)."""
    a = torch.arange(5, dtype=F64) * (2 * math.pi / 5)
    ring = torch.stack([a.cos(), a.sin(), torch.zeros(5, dtype=F64)], 1)
    return torch.cat([ring, torch.tensor([[0, 0, 1.3], [0, 0, -1.3]], dtype=F64)])


def _cube():
    """Cube vertices: all three eigenvalues equal (a spherical top)."""
    return torch.tensor([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)],
                        dtype=F64)


def test_degenerate_spectra_are_detected_and_the_fallback_error_is_reported(record_property):
    torch.manual_seed(5)
    clouds = {"simple": torch.randn(7, 3, dtype=F64), "symmetric top": _bipyramid()}
    frames = pca_frames(torch.stack(list(clouds.values())))
    assert frames.degenerate.tolist() == [0, 1]
    assert pca_frames(_cube()[None]).degenerate.tolist() == [2]
    assert frames.gaps[1].min() < 1e-12 < frames.gaps[0].min()

    def worst_error(model, cloud):
        ref = model(cloud[None])
        return max(rel(model(cloud[None] @ R.T + t), ref) for R, t in motions(4, seed=6))

    for name, cloud in (("symmetric top", _bipyramid()), ("spherical top", _cube())):
        net = mlp(len(cloud), 3)
        ignore = worst_error(FrameAveraging(net, degenerate="ignore"), cloud)
        average = worst_error(FrameAveraging(net, degenerate="average"), cloud)
        record_property(f"{name} error ignore", ignore)
        record_property(f"{name} error average", average)
        print(f"{name}: invariance error {ignore:.2e} with arbitrary eigenvectors, "
              f"{average:.2e} averaged over the degenerate eigenspace")
        assert math.isfinite(ignore) and math.isfinite(average)
        assert ignore > 1e-8, "arbitrary eigenvectors of a degenerate spectrum break invariance"
    with pytest.raises(ValueError, match="degenerate"):
        FrameAveraging(mlp(7, 1), degenerate="raise")(_bipyramid()[None])
    # a mixed batch: each kind of spectrum goes through its own batched call, order restored
    batch = torch.stack([torch.randn(8, 3, dtype=F64), _cube(), torch.randn(8, 3, dtype=F64)])
    model = FrameAveraging(mlp(8, 2))
    out = model(batch)
    for k in range(3):
        assert torch.allclose(out[k], model(batch[k:k + 1])[0], atol=1e-13)


def test_bad_input_raises():
    with pytest.raises(ValueError, match=r"\[batch, n_nodes, 3\]"):
        FrameAveraging(mlp(4, 1))(torch.randn(4, 3, dtype=F64))
    with pytest.raises(ValueError, match="output"):
        FrameAveraging(mlp(4, 1), output="spinor")
    with pytest.raises(ValueError, match="group"):
        FrameAveraging(mlp(4, 1), group="E3")
    with pytest.raises(ValueError, match="needs"):
        FrameAveraging(mlp(4, 2), output="vector")(torch.randn(2, 4, 3, dtype=F64))
    with pytest.raises(TypeError, match="floating-point"):
        pca_frames(torch.ones(2, 4, 3, dtype=torch.long))
