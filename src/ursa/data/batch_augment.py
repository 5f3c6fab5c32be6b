"""Flip, rotate, zoom, perspective warp and lighting for a whole batch, on its device.

One definition of the training augmentation, used two ways: on a (B, 3, H, W)
batch on the GPU inside the training loop (as fastai does), or on one image at a
time in the CPU loader workers (:class:`ursa.data.transforms.ItemAugment`). The
geometric changes are composed into one projective map per image and sampled
once with ``grid_sample``; the border is filled by reflection, so no black
corners appear that validation images never have. Lighting works on pixel
values: the normalised tensor is taken back to [0, 1], changed, clamped and
normalised again.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional

from ursa.data.augment import AUGMENT_PRESETS, IDENTITY, AugmentSettings

__all__ = ["AUGMENT_PRESETS", "IDENTITY", "AugmentSettings", "BatchAugment", "batch_settings"]


def batch_settings(
    augment: object, batch_augment: bool | None, device_type: str
) -> AugmentSettings | None:
    """The settings to augment whole batches with in the training loop, or None where the
    loader augments each image: ``batch_augment`` False, or None on a device other than
    CUDA (on the CPU the loader workers augment while the main process trains), or an
    ``augment`` that is "none" or your own pipeline (which runs per image)."""
    on_batches = device_type == "cuda" if batch_augment is None else batch_augment
    if not on_batches or not isinstance(augment, str):
        return None
    return AUGMENT_PRESETS.get(augment)


class BatchAugment(nn.Module):
    """(B, 3, H, W) normalised images → the same, each randomly augmented, on their device.

    Random draws come from ``generator`` when given, else from torch's global CPU
    generator (which seeding and checkpoints cover); they are made on the CPU and
    moved to the batch's device, so a seed gives the same augmentation on any device.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self, settings: AugmentSettings, mean: Sequence[float], std: Sequence[float]
    ) -> None:
        super().__init__()
        self.settings = settings
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    @torch.no_grad()
    def forward(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) batch, got shape {tuple(images.shape)}")
        batch, _, height, width = images.shape
        channels_last = images.is_contiguous(memory_format=torch.channels_last)
        matrices = self.matrices(batch, height, width, generator)  # (B, 3, 3)
        out = warp(images, matrices.to(images.device, images.dtype))
        out = self.lighting(out, generator)
        if channels_last:
            out = out.contiguous(memory_format=torch.channels_last)
        return out

    def matrices(
        self, batch: int, height: int, width: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """(B, 3, 3) maps from output to source coordinates (both in [-1, 1]), float64 on
        the CPU: warp, then flip, rotate and zoom, each drawn per image."""
        s = self.settings

        def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
            draw = torch.rand(batch, *shape, generator=generator, dtype=torch.float64)
            return low + (high - low) * draw

        def chosen(p: float) -> torch.Tensor:  # (B,) 1.0 where the change applies
            return (torch.rand(batch, generator=generator, dtype=torch.float64) < p).double()

        eye = torch.eye(3, dtype=torch.float64).expand(batch, 3, 3)
        # Perspective: the output's corners sample from corners moved in a keystone.
        magnitude = uniform(-s.max_warp, s.max_warp, 2) * chosen(s.p_affine)[:, None]
        result = perspective(magnitude)
        if s.flip:
            sign = torch.where(chosen(0.5) > 0, -1.0, 1.0).double()
            flip = eye.clone()
            flip[:, 0, 0] = sign
            result = flip @ result
        # Rotate in pixel units (x and y scaled by the half-sides), so a non-square
        # image turns rigidly instead of shearing.
        angle = torch.deg2rad(uniform(-s.max_rotate, s.max_rotate)) * chosen(s.p_affine)
        cos, sin = torch.cos(angle), torch.sin(angle)
        rotate = eye.clone()
        rotate[:, 0, 0], rotate[:, 0, 1] = cos, -sin * height / width
        rotate[:, 1, 0], rotate[:, 1, 1] = sin * width / height, cos
        result = rotate @ result
        # Zoom in by `scale`: sample a 1/scale window, its centre anywhere it still fits.
        scale = 1.0 + (uniform(1.0, s.max_zoom) - 1.0) * chosen(s.p_affine)
        centre = (1.0 - 1.0 / scale)[:, None] * uniform(-1.0, 1.0, 2)
        zoom = eye.clone()
        zoom[:, 0, 0] = zoom[:, 1, 1] = 1.0 / scale
        zoom[:, :2, 2] = centre
        return zoom @ result

    def lighting(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Brightness (a factor on every pixel) and contrast (a factor on the distance from
        the image's mean grey), on pixel values in [0, 1]; normalised in, normalised out."""
        s = self.settings
        batch = images.shape[0]
        if s.max_lighting == 0 or s.p_lighting == 0:
            return images

        def factors() -> torch.Tensor:  # (B, 1, 1, 1): 1 ± max_lighting where chosen
            draw = (torch.rand(batch, generator=generator) * 2 - 1) * s.max_lighting
            keep = torch.rand(batch, generator=generator) < s.p_lighting
            return (1 + draw * keep).view(batch, 1, 1, 1)

        brightness, contrast = factors(), factors()
        mean, std = self.mean.to(images.dtype), self.std.to(images.dtype)
        pixels = images * std + mean  # (B, 3, H, W) in [0, 1]
        pixels = pixels * brightness.to(images.device, images.dtype)
        grey = (pixels * _GREY.to(images.device, images.dtype)).sum(1, keepdim=True)
        centre = grey.mean(dim=(2, 3), keepdim=True)  # (B, 1, 1, 1)
        pixels = (pixels - centre) * contrast.to(images.device, images.dtype) + centre
        return (pixels.clamp(0.0, 1.0) - mean) / std


_GREY = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
"""ITU-R 601 luma weights (as PIL's and torchvision's grayscale)."""


def perspective(magnitude: torch.Tensor) -> torch.Tensor:
    """(B, 2) keystone magnitudes → (B, 3, 3) homographies (output → source coordinates).

    Corner (x, y) ∈ {±1}² samples from (x·(1 + m_x·y), y·(1 + m_y·x)): with m_x > 0
    the top edge shows a narrower strip than the bottom, as if the camera tilted.
    """
    batch = magnitude.shape[0]
    corners = torch.tensor(
        [[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], dtype=torch.float64
    )
    x, y = corners[:, 0], corners[:, 1]  # (4,)
    u = x * (1 + magnitude[:, :1] * y)  # (B, 4)
    v = y * (1 + magnitude[:, 1:] * x)
    # u = (h0 x + h1 y + h2) / (h6 x + h7 y + 1), v likewise with h3 h4 h5: linear in h.
    system = torch.zeros(batch, 8, 8, dtype=torch.float64)
    ones = torch.ones(4, dtype=torch.float64)
    system[:, 0::2, 0], system[:, 0::2, 1], system[:, 0::2, 2] = x, y, ones
    system[:, 1::2, 3], system[:, 1::2, 4], system[:, 1::2, 5] = x, y, ones
    system[:, 0::2, 6], system[:, 0::2, 7] = -u * x, -u * y
    system[:, 1::2, 6], system[:, 1::2, 7] = -v * x, -v * y
    targets = torch.stack([u, v], dim=2).reshape(batch, 8)
    h = torch.linalg.solve(system, targets)  # (B, 8)
    return torch.cat([h, torch.ones(batch, 1, dtype=torch.float64)], dim=1).view(batch, 3, 3)


def warp(images: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """Resample (B, C, H, W) ``images`` through (B, 3, 3) projective maps from output to
    source coordinates ([-1, 1] at the outer pixel edges), bilinear, reflection padding."""
    batch, _, height, width = images.shape
    dtype, device = images.dtype, images.device
    xs = (torch.arange(width, device=device, dtype=dtype) + 0.5) * (2.0 / width) - 1.0
    ys = (torch.arange(height, device=device, dtype=dtype) + 0.5) * (2.0 / height) - 1.0
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack([grid_x, grid_y, torch.ones_like(grid_x)], dim=-1)  # (H, W, 3)
    mapped = points.view(1, height * width, 3) @ matrices.transpose(1, 2)  # (B, H*W, 3)
    # The divisor stays near 1 for warps below 1 (the corners never cross the horizon).
    source = mapped[..., :2] / mapped[..., 2:]
    grid = source.view(batch, height, width, 2)
    return functional.grid_sample(
        images, grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )
