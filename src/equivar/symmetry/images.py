"""Images: the exact pixel actions (rot90 and flips) and interpolated rotations by any angle,
with the equivariance error they leave measured rather than assumed.

Rotations by multiples of 90 degrees and axis flips permute pixels and are exact
(:class:`ImageAction`, for ``cyclic(4)``, ``dihedral(4)`` and their subgroups: the pixel groups C4
and D4). Any other angle needs interpolation, which blurs the image and cuts its corners, so no
model on a pixel grid is exactly invariant to it, lifted or not. :func:`image_rotation_error`
reports how far a model is from it, angle by angle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from equivar.symmetry.base_action import Action, check_elements
from equivar.symmetry.groups import FiniteGroup

__all__ = ["ImageAction", "disk_mask", "image_rotation_error", "rotate_image"]


class ImageAction(Action):
    """Exact rotations by multiples of 90 degrees and flips of images (the pixel groups).

    Pixel ``(i, j)`` (row, column) sits at ``u = j - (W - 1) / 2`` (right) and
    ``v = (H - 1) / 2 - i`` (up); an element with matrix ``R`` maps the xy block of ``R`` over
    these coordinates, so ``cyclic(4)`` element ``k`` is ``torch.rot90(x, k, dims=(-2, -1))``
    (counter-clockwise as displayed) and the two-fold rotation about x of ``dihedral(n)`` flips
    the rows. Every element is a permutation of pixels, so no interpolation happens.

    Args:
        group: a group with ``matrices()`` that keep the z axis (``R[2, :2] = R[:2, 2] = 0``) and
            whose xy blocks are signed permutation matrices: subgroups of ``dihedral(4)`` and
            their products with ``inversion()``.

    Raises:
        ValueError: an element would need interpolation (names the element).

    Shapes:
        ``x``: ``[batch, ..., H, W]``, square (``H == W``) when the group has 90-degree
        rotations.

    Example:
        >>> import torch
        >>> from equivar.symmetry import ImageAction, cyclic
        >>> x = torch.arange(4.0).view(1, 2, 2)
        >>> torch.equal(ImageAction(cyclic(4)).act(x, 1), torch.rot90(x, 1, dims=(-2, -1)))
        True
    """

    is_permutation = True
    kind = "image"

    def __init__(self, group: FiniteGroup) -> None:
        super().__init__(group)
        mats = group.matrices()
        for g in range(len(group)):
            m = mats[g]
            block = m[:2, :2]
            pixel = ((block.abs() - 1).abs() < 1e-9) | (block.abs() < 1e-9)
            if (m[2, :2].abs().max() > 1e-9 or m[:2, 2].abs().max() > 1e-9 or not pixel.all()
                    or (block.abs().sum(0) - 1).abs().max() > 1e-9):
                raise ValueError(
                    f"ImageAction: element {group.describe(g)} of {group.name} does not map the "
                    f"pixel grid onto itself; exact image actions exist for rotations by 90 "
                    f"degrees about z and flips (subgroups of dihedral(4)); use "
                    f"equivar.symmetry.rotate_image for other angles (interpolated)")
        self._blocks = mats[:, :2, :2].round().to(torch.long)  # [n_group, 2, 2]
        self._swaps = bool((self._blocks[:, 0, 0] == 0).any())  # some element swaps the axes
        self._cache: dict[tuple[int, int, str], Tensor] = {}

    def check(self, x: Tensor) -> None:
        super().check(x)
        if x.dim() < 3:
            raise ValueError(f"{self!r} acts on images [batch, ..., H, W], got shape "
                             f"{list(x.shape)}")
        if self._swaps and x.shape[-1] != x.shape[-2]:
            raise ValueError(f"{self!r} rotates by 90 degrees, which needs square images; got "
                             f"H x W = {x.shape[-2]} x {x.shape[-1]}")

    def pixel_maps(self, height: int, width: int, device: torch.device | str = "cpu") -> Tensor:
        """For every element ``g``, the source pixel of every target pixel of ``g.x``.

        Returns:
            ``[n_group, H * W]`` int64: ``(g.x).flatten(-2)[p] = x.flatten(-2)[maps[g, p]]``.
        """
        key = (height, width, str(device))
        if key not in self._cache:
            i, j = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
            # doubled centred coordinates (integers): 2u = 2j - (W - 1), 2v = (H - 1) - 2i
            uv = torch.stack([2 * j - (width - 1), (height - 1) - 2 * i]).reshape(2, -1)
            # (g.x)(p) = x(g^-1 p) and g^-1 = R^T for the orthogonal block
            src = self._blocks.transpose(1, 2) @ uv  # [n_group, 2, H * W]
            si = ((height - 1) - src[:, 1]) // 2
            sj = (src[:, 0] + (width - 1)) // 2
            self._cache[key] = (si * width + sj).to(device)
        return self._cache[key]

    def act_each(self, x: Tensor, elements: Tensor) -> Tensor:
        elements = check_elements(elements, x)
        h, w = x.shape[-2:]
        maps = self.pixel_maps(h, w, x.device)[elements]  # [batch, H * W]
        flat = x.reshape(x.shape[0], -1, h * w)  # [batch, channels, H * W]
        out = torch.gather(flat, 2, maps[:, None, :].expand(-1, flat.shape[1], -1))
        return out.reshape(x.shape)


def _check_image(x: Tensor, what: str) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"{what} needs a floating-point image tensor, got "
                        f"{getattr(x, 'dtype', type(x).__name__)}")
    if x.dim() < 3 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"{what} needs square images [batch, ..., H, W] with H == W, got shape "
                         f"{list(x.shape)}")


def rotate_image(x: Tensor, angle: float | Tensor, mode: str = "bilinear") -> Tensor:
    """Rotate square images counter-clockwise (as displayed) by ``angle`` radians about their
    centre, by interpolation (zeros outside the image).

    The convention matches :class:`~equivar.symmetry.ImageAction`: at ``angle = pi / 2`` it
    equals ``torch.rot90(x, 1, dims=(-2, -1))`` to rounding.

    Args:
        x: images ``[batch, ..., H, W]`` (``H == W``).
        angle: one angle, or ``[batch]`` angles (one per image).
        mode: ``"bilinear"`` (default) or ``"nearest"`` (``torch.nn.functional.grid_sample``).

    Returns:
        The rotated images, same shape as ``x``.

    Shapes:
        ``x``: ``[batch, ..., H, W]``; ``angle``: scalar or ``[batch]``.

    Example:
        >>> import math, torch
        >>> x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
        >>> torch.allclose(rotate_image(x, math.pi / 2), torch.rot90(x, 1, dims=(-2, -1)))
        True
    """
    _check_image(x, "rotate_image")
    batch, size = x.shape[0], x.shape[-1]
    angle = torch.as_tensor(angle, dtype=x.dtype, device=x.device).reshape(-1)
    if angle.numel() == 1:
        angle = angle.expand(batch)
    if angle.shape != (batch,):
        raise ValueError(f"rotate_image: angle must be a scalar or [batch] = [{batch}], got "
                         f"{list(angle.shape)}")
    c, s = torch.cos(angle), torch.sin(angle)
    zero = torch.zeros_like(c)
    # output pixel at normalised (x, y) (y down) samples the input at R(-angle) applied in the
    # y-up frame: x' = c x - s y, y' = s x + c y
    theta = torch.stack([torch.stack([c, -s, zero], -1), torch.stack([s, c, zero], -1)], 1)
    flat = x.reshape(batch, -1, size, size)  # [batch, channels, H, W]
    grid = F.affine_grid(theta, list(flat.shape), align_corners=False)
    out = F.grid_sample(flat, grid, mode=mode, padding_mode="zeros", align_corners=False)
    return out.reshape(x.shape)


def disk_mask(size: int, dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """``[size, size]`` mask, 1 on pixels whose centre lies in the inscribed disk, else 0.

    Content inside the disk stays inside the image under every rotation, so masking isolates
    the interpolation error from the corners that a rotation cuts off.
    """
    r = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    inside = (r[:, None] ** 2 + r[None, :] ** 2) <= (size / 2) ** 2
    return inside.to(dtype)


def image_rotation_error(
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    angles: Sequence[float] | Tensor,
    *,
    output: str = "invariant",
    disk: bool = True,
) -> Tensor:
    """Relative equivariance error of ``fn`` under image rotations by arbitrary angles.

    ``error(angle) = ||fn(R x) - T fn(x)|| / ||fn(x)||`` over the whole batch, with ``R`` the
    interpolated rotation (:func:`rotate_image`) and ``T`` the identity (``output="invariant"``)
    or the same rotation of output images (``output="image"``). Multiples of 90 degrees give the
    exactness of the pixel action (~1e-16 in float64 for a C4-invariant ``fn``); other angles
    give a number to report, not a failure. One batched call of ``fn`` covers all angles.

    Args:
        fn: ``[batch, ..., H, W] -> [batch, ...]``.
        x: square images ``[batch, ..., H, W]``.
        angles: rotation angles in radians.
        output: ``"invariant"`` (default) or ``"image"`` (outputs are square images that
            rotate with the input).
        disk: zero the input outside the inscribed disk first (default True), so that what is
            measured is interpolation, not the lost corners.

    Returns:
        ``[len(angles)]`` float64 relative errors.

    Shapes:
        ``x``: ``[batch, ..., H, W]``; returns ``[n_angles]``.

    Example:
        >>> import math, torch
        >>> from equivar.symmetry import image_rotation_error
        >>> x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
        >>> err = image_rotation_error(lambda t: t.sum((-2, -1)), x, [math.pi / 2, math.pi / 4])
        >>> err[0].item() < 1e-12, err[1].item() > 1e-3
        (True, True)
    """
    _check_image(x, "image_rotation_error")
    if output not in ("invariant", "image"):
        raise ValueError(f"output must be 'invariant' or 'image', got {output!r}")
    angles = torch.as_tensor(angles, dtype=torch.float64).reshape(-1)
    if disk:
        x = x * disk_mask(x.shape[-1], x.dtype, x.device)
    batch, m = x.shape[0], angles.numel()
    tiled = x.unsqueeze(0).expand(m, *x.shape).reshape(m * batch, *x.shape[1:])
    per_image = angles.repeat_interleave(batch).to(x.dtype)
    with torch.no_grad():
        ref = fn(x)  # [batch, ...]
        moved = fn(rotate_image(tiled, per_image))  # [n_angles * batch, ...]
    expected = ref.unsqueeze(0).expand(m, *ref.shape).reshape(m * batch, *ref.shape[1:])
    if output == "image":
        expected = rotate_image(expected, per_image.to(expected.dtype))
    diff = (moved - expected).to(torch.float64).reshape(m, -1).norm(dim=1)
    scale = ref.to(torch.float64).norm().clamp_min(torch.finfo(torch.float64).tiny)
    return diff / scale
