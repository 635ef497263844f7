"""Image rotations by other angles than 90 degrees: the equivariance error is measured and
reported, not claimed to be zero."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from equivar.symmetry import (
    ImageAction,
    cyclic,
    disk_mask,
    equivarify,
    image_rotation_error,
    rotate_image,
)

F64 = torch.float64


def test_rotate_image_agrees_with_the_exact_pixel_action():
    x = torch.randn(3, 2, 7, 7, dtype=F64)
    action = ImageAction(cyclic(4))
    for k in range(4):
        assert (rotate_image(x, k * math.pi / 2) - action.act(x, k)).abs().max() < 1e-12
    angles = torch.tensor([0.0, math.pi / 2, math.pi, 3 * math.pi / 2], dtype=F64)
    per_image = rotate_image(x.repeat(4, 1, 1, 1)[:4], angles)
    assert (per_image[1] - action.act(x[1:2], 1)[0]).abs().max() < 1e-12


def test_equivariance_error_is_measured_for_non_right_angles(record_property):
    torch.manual_seed(0)
    x = torch.randn(16, 1, 8, 8, dtype=F64) * disk_mask(8, F64)
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 64, 10)).double().eval()
    lifted = equivarify(cnn, cyclic(4), invariant=True, action="image").eval()
    angles = [math.pi / 2, math.pi, math.pi / 4, math.pi / 8, math.radians(30)]
    lifted_err = image_rotation_error(lifted, x, angles)
    plain_err = image_rotation_error(cnn, x, angles)
    for name, err in (("lifted", lifted_err), ("plain", plain_err)):
        for angle, e in zip(angles, err.tolist(), strict=True):
            record_property(f"{name}_error_{math.degrees(angle):.1f}deg", e)
    # exact where the action is a pixel permutation ...
    assert lifted_err[:2].max() < 1e-12
    assert plain_err[:2].min() > 1e-2, "the plain CNN is not invariant even at 90 degrees"
    # ... and a measured, finite, non-zero error elsewhere (interpolation)
    assert torch.isfinite(lifted_err).all() and (lifted_err[2:] > 1e-6).all()
    assert torch.isfinite(plain_err).all()


def test_image_output_mode_and_errors():
    x = torch.randn(2, 1, 6, 6, dtype=F64)
    identity = image_rotation_error(lambda t: t, x, [math.pi / 2, math.pi / 5], output="image",
                                    disk=False)
    assert identity[0] < 1e-12
    with pytest.raises(ValueError, match="square"):
        rotate_image(torch.randn(1, 1, 4, 5), 0.3)
    with pytest.raises(TypeError, match="floating-point"):
        rotate_image(torch.ones(1, 1, 4, 4, dtype=torch.long), 0.3)
    with pytest.raises(ValueError, match="output"):
        image_rotation_error(lambda t: t, x, [0.1], output="vector")
