from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_ARCH
from ursa.core.errors import ConfigError
from ursa.core.preprocess import prepare_input
from ursa.data.batch_augment import (
    AUGMENT_PRESETS,
    IDENTITY,
    AugmentSettings,
    BatchAugment,
    batch_settings,
    perspective,
)
from ursa.data.core import ImageData
from ursa.train import Learner, SilentLogger

HALF = (0.5, 0.5, 0.5)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def textured(batch: int = 8, height: int = 24, width: int = 24, seed: int = 0) -> torch.Tensor:
    """Normalised (mean/std 0.5) random images: every pixel differs from its neighbours."""
    pixels = torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))
    return (pixels - 0.5) / 0.5


def only(**strengths: object) -> AugmentSettings:
    """Every change off except the ones named."""
    return dataclasses.replace(IDENTITY, **strengths)  # type: ignore[arg-type]


def test_keeps_shape_dtype_and_memory_format() -> None:
    augment = BatchAugment(AUGMENT_PRESETS["default"], HALF, HALF)  # type: ignore[arg-type]
    images = textured(4, 20, 30)
    out = augment(images)
    assert out.shape == (4, 3, 20, 30) and out.dtype == torch.float32
    nhwc = augment(images.contiguous(memory_format=torch.channels_last))
    assert nhwc.is_contiguous(memory_format=torch.channels_last)


def test_same_seed_same_augmentation_other_seed_another() -> None:
    augment = BatchAugment(AugmentSettings(), HALF, HALF)
    images = textured()
    first = augment(images, torch.Generator().manual_seed(7))
    again = augment(images, torch.Generator().manual_seed(7))
    other = augment(images, torch.Generator().manual_seed(8))
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)
    # Without a generator, torch's global one (which seeding and checkpoints cover).
    torch.manual_seed(3)
    global_first = augment(images)
    torch.manual_seed(3)
    assert torch.equal(augment(images), global_first)


def test_zero_strength_is_the_identity() -> None:
    images = textured(6, 16, 28)
    for settings in (IDENTITY, dataclasses.replace(AugmentSettings(), flip=False, p_affine=0.0,
                                                   p_lighting=0.0)):  # fmt: skip
        out = BatchAugment(settings, IMAGENET_MEAN, IMAGENET_STD)(images)
        torch.testing.assert_close(out, images, atol=1e-4, rtol=0)


def test_default_strength_changes_the_images() -> None:
    images = textured(16)
    out = BatchAugment(AugmentSettings(), HALF, HALF)(images, torch.Generator().manual_seed(0))
    changed = [(out[i] - images[i]).abs().mean() > 0.05 for i in range(16)]
    # Each image escapes all of flip, rotate, zoom, warp and lighting with probability
    # 0.5 * 0.25**5 (about 1 in 2,000): nearly every one must change.
    assert sum(changed) >= 14


def test_flip_mirrors_and_no_flip_never_does() -> None:
    images = textured(32)
    flipped = BatchAugment(only(flip=True), HALF, HALF)(images, torch.Generator().manual_seed(1))
    mirrored = [torch.allclose(flipped[i], images[i].flip(-1), atol=1e-4) for i in range(32)]
    unchanged = [torch.allclose(flipped[i], images[i], atol=1e-4) for i in range(32)]
    assert all(m != u for m, u in zip(mirrored, unchanged, strict=True))  # one or the other
    assert 6 <= sum(mirrored) <= 26  # about half
    no_flip = AUGMENT_PRESETS["no_flip"]
    assert no_flip is not None and not no_flip.flip
    # Everything of no_flip except the flip's absence switched off: never mirrored.
    kept = BatchAugment(only(flip=no_flip.flip), HALF, HALF)(images)
    torch.testing.assert_close(kept, images, atol=1e-4, rtol=0)


def test_rotation_stays_within_the_limit_and_is_rigid_on_wide_images() -> None:
    augment = BatchAugment(only(max_rotate=10.0, p_affine=1.0), HALF, HALF)
    matrices = augment.matrices(64, 20, 40, torch.Generator().manual_seed(0))
    # In pixel units (x scaled by the width, y by the height) each map is a rotation.
    to_pixels = torch.diag(torch.tensor([20.0, 10.0], dtype=torch.float64))
    rotations = to_pixels @ matrices[:, :2, :2] @ torch.linalg.inv(to_pixels)
    eye = torch.eye(2, dtype=torch.float64).expand(64, 2, 2)
    torch.testing.assert_close(rotations @ rotations.transpose(1, 2), eye)
    angles = torch.rad2deg(torch.atan2(rotations[:, 1, 0], rotations[:, 0, 0]))
    assert angles.abs().max() <= 10.0 and angles.abs().max() > 5.0
    assert (angles > 0).any() and (angles < 0).any()


def test_zoom_samples_a_window_inside_the_image() -> None:
    augment = BatchAugment(only(max_zoom=1.5, p_affine=1.0), HALF, HALF)
    matrices = augment.matrices(64, 16, 16, torch.Generator().manual_seed(0))
    scale = matrices[:, 0, 0]  # 1 / zoom
    assert (scale >= 1 / 1.5 - 1e-9).all() and (scale <= 1.0).all() and scale.min() < 0.8
    reach = scale[:, None] + matrices[:, :2, 2].abs()  # farthest sampled point
    assert (reach <= 1.0 + 1e-9).all()


def test_perspective_moves_the_corners_as_documented() -> None:
    magnitude = torch.tensor([[0.2, -0.1], [0.0, 0.0]], dtype=torch.float64)
    homographies = perspective(magnitude)
    for x, y in [(-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)]:
        point = homographies @ torch.tensor([x, y, 1.0], dtype=torch.float64)
        u, v = point[:, 0] / point[:, 2], point[:, 1] / point[:, 2]
        assert float(u[0]) == pytest.approx(x * (1 + 0.2 * y))
        assert float(v[0]) == pytest.approx(y * (1 - 0.1 * x))
        assert (float(u[1]), float(v[1])) == pytest.approx((x, y))  # zero: the identity


def test_lighting_changes_pixel_values_not_normalised_values() -> None:
    """Brightness scales the pixels in [0, 1]; with ImageNet's mean and std that is not the
    same as scaling the normalised tensor, so a wrong round trip would show."""
    grey = torch.full((16, 3, 8, 8), 0.4)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    augment = BatchAugment(only(max_lighting=0.2, p_lighting=1.0), IMAGENET_MEAN, IMAGENET_STD)
    out = augment((grey - mean) / std, torch.Generator().manual_seed(0))
    pixels = out * std + mean
    factor = pixels / 0.4  # (B, 3, H, W): one brightness factor per image
    per_image = factor.flatten(1)
    torch.testing.assert_close(per_image, per_image[:, :1].expand_as(per_image))
    assert per_image.min() >= 0.8 - 1e-5 and per_image.max() <= 1.2 + 1e-5
    assert per_image.std() > 0.02  # the factors differ between images


def test_contrast_scales_the_spread_around_the_mean_grey() -> None:
    pixels = torch.full((16, 3, 8, 8), 0.4)
    pixels[..., 4:] = 0.6  # half the image darker, half lighter, mean grey 0.5
    settings = only(max_lighting=0.5, p_lighting=1.0)
    out = BatchAugment(settings, HALF, HALF)((pixels - 0.5) / 0.5, torch.Generator().manual_seed(2))
    after = out * 0.5 + 0.5
    low, high = after[:, 0, 0, 0], after[:, 0, 0, 7]
    # Brightness b scales both to 0.4b and 0.6b; contrast c then spreads them around
    # their mean 0.5b to 0.5b ± 0.1bc, so (high - low) / (high + low) = 0.2c.
    contrast = (high - low) / (high + low) / 0.2
    assert contrast.min() >= 0.5 - 1e-4 and contrast.max() <= 1.5 + 1e-4
    assert contrast.std() > 0.1
    assert ((high + low) / 2 / 0.5).sub(1).abs().max() <= 0.5 + 1e-4  # brightness within ±50 %


def test_bad_settings_name_every_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        AugmentSettings(max_rotate=-1, max_zoom=0.5, max_warp=1.5, p_affine=2.0)
    message = str(caught.value)
    for name in ("max_rotate", "max_zoom", "max_warp", "p_affine"):
        assert name in message


def test_batches_only_on_cuda_unless_asked() -> None:
    default = AUGMENT_PRESETS["default"]
    assert batch_settings("default", None, "cuda") == default
    assert batch_settings("default", None, "cpu") is None
    assert batch_settings("default", True, "cpu") == default
    assert batch_settings("default", False, "cuda") is None
    assert batch_settings("no_flip", None, "cuda") == AUGMENT_PRESETS["no_flip"]
    assert batch_settings("none", True, "cuda") is None
    assert batch_settings(lambda image: image, True, "cuda") is None  # your own pipeline


class CountingAugment(BatchAugment):
    """The real module, counting the batches it sees."""

    calls = 0

    def forward(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        self.calls += 1
        return super().forward(images, generator)


def test_training_augments_batches_in_the_loop_when_asked(colour_folder: Path) -> None:
    data = ImageData.from_folder(
        colour_folder, size=32, batch_size=8, num_workers=0, seed=0, resize="squish",
        batch_augment=True,
    )  # fmt: skip
    learner = Learner(data, arch=TINY_ARCH, pretrained=False, logger=SilentLogger())
    assert isinstance(learner.batch_augment, BatchAugment)
    train_loader, _ = learner._raw_dataloaders()
    # The loader then only resizes (squish: deterministic), so its tensors are the
    # validation tensors of the same files; the loop does the rest.
    dataset = train_loader.dataset
    tensor, _ = dataset[0]
    expected = prepare_input(dataset.items[0].path, learner.preprocess)
    torch.testing.assert_close(tensor, torch.from_numpy(expected), atol=1e-6, rtol=0)
    counting = CountingAugment(AugmentSettings(), learner.preprocess.mean, learner.preprocess.std)
    learner.batch_augment = counting
    learner.fit_one_cycle(1, 1e-2)
    assert counting.calls == len(train_loader)


def test_training_on_the_cpu_augments_in_the_loader(colour_folder: Path) -> None:
    data = ImageData.from_folder(colour_folder, size=32, num_workers=0)
    learner = Learner(data, arch=TINY_ARCH, pretrained=False, logger=SilentLogger(), device="cpu")
    assert learner.batch_augment is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_batches_match_the_cpu_for_one_seed(colour_folder: Path) -> None:
    augment = BatchAugment(AugmentSettings(), IMAGENET_MEAN, IMAGENET_STD)
    images = textured(16, 64, 64)
    on_cpu = augment(images, torch.Generator().manual_seed(5))
    on_gpu = augment.to("cuda")(images.to("cuda"), torch.Generator().manual_seed(5))
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, atol=1e-3, rtol=0)
    data = ImageData.from_folder(colour_folder, size=32, num_workers=0)
    learner = Learner(data, arch=TINY_ARCH, pretrained=False, logger=SilentLogger())
    assert learner.device.type == "cuda" and isinstance(learner.batch_augment, BatchAugment)
    learner.fit_one_cycle(1, 1e-2)
