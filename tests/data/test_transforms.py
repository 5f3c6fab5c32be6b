from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from tests.conftest import TINY_ARCH
from ursa.core.bundle import read_bundle
from ursa.core.errors import ConfigError, DataError
from ursa.core.preprocess import PreprocessConfig, prepare_input
from ursa.data.core import ImageData
from ursa.data.transforms import ValidationTransform, train_transform, validation_tensor
from ursa.train import Learner, SilentLogger


@pytest.mark.parametrize("resize", ["crop", "pad", "squish"])
@pytest.mark.parametrize("augment", ["default", "no_flip", "none"])
def test_training_tensors_have_the_input_shape(resize: str, augment: str) -> None:
    config = PreprocessConfig(size=24, resize=resize)  # type: ignore[arg-type]
    transform = train_transform(config, augment)
    out = transform(Image.new("RGB", (50, 30), (120, 60, 30)))
    assert isinstance(out, torch.Tensor) and out.shape == (3, 24, 24) and out.dtype == torch.float32


def test_no_augmentation_is_the_validation_transform() -> None:
    config = PreprocessConfig(size=16)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8))
    expected = ValidationTransform(config)(image)
    assert torch.equal(train_transform(config, "none")(image), expected)


def test_augmentation_leaves_no_black_corners() -> None:
    """Rotations and warps fill the border by reflection: a white image stays white."""
    torch.manual_seed(0)
    config = PreprocessConfig(size=40, resize="squish")
    transform = train_transform(config, "no_flip")
    white = Image.new("RGB", (40, 40), (255, 255, 255))
    for _ in range(10):
        pixels = transform(white) * 0.5 + 0.5  # back to [0, 1]
        # Lighting may dim the whole image by up to 20 %; a black corner would be 0.
        assert pixels.min() > 0.75


def valid_tensors(data: ImageData, preprocess: PreprocessConfig) -> torch.Tensor:
    _, valid_loader = data.dataloaders(preprocess)
    return torch.cat([images for images, _ in valid_loader])


@pytest.mark.parametrize("resize", ["crop", "pad"])
def test_validation_never_augments(colour_folder: Path, resize: str) -> None:
    data = ImageData.from_folder(
        colour_folder,
        size=20,
        resize=resize,
        num_workers=0,
        batch_size=4,  # type: ignore[arg-type]
    )
    preprocess = PreprocessConfig(size=20, resize=resize, mean=(0.4, 0.5, 0.6))  # type: ignore[arg-type]
    first, second = valid_tensors(data, preprocess), valid_tensors(data, preprocess)
    assert torch.equal(first, second)
    expected = np.stack([prepare_input(item.path, preprocess) for item in data.valid_items])
    torch.testing.assert_close(first, torch.from_numpy(expected), atol=1e-6, rtol=0)


def test_your_own_pipeline_runs_between_resize_and_normalisation() -> None:
    config = PreprocessConfig(size=16, resize="squish", mean=(0.2, 0.3, 0.4))
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (30, 20, 3), dtype=np.uint8))
    mirror = v2.Compose([v2.RandomHorizontalFlip(p=1.0)])
    out = train_transform(config, mirror)(image)
    torch.testing.assert_close(out, validation_tensor(image, config).flip(-1), atol=1e-6, rtol=0)


def test_a_pipeline_that_changes_the_size_is_refused_clearly() -> None:
    config = PreprocessConfig(size=16, resize="squish")
    transform = train_transform(config, v2.Resize(12))
    with pytest.raises(DataError, match="must keep the size"):
        transform(Image.new("RGB", (20, 20)))


def test_augment_must_be_a_preset_or_a_callable(colour_folder: Path) -> None:
    with pytest.raises(ConfigError, match="augment='fancy'"):
        ImageData.from_folder(colour_folder, augment="fancy")
    with pytest.raises(ConfigError, match="augment=42"):
        ImageData.from_folder(colour_folder, augment=42)  # type: ignore[arg-type]


def test_a_custom_pipeline_trains_and_is_recorded_as_custom(
    colour_folder: Path, tmp_path: Path
) -> None:
    pipeline = v2.Compose([v2.RandomHorizontalFlip(), v2.RandomRotation(15)])
    data = ImageData.from_folder(colour_folder, size=24, num_workers=0, augment=pipeline)
    assert data.config.augment_name == "custom"
    learner = Learner(data, arch=TINY_ARCH, pretrained=False, logger=SilentLogger())
    learner.fit_one_cycle(1, 1e-2)
    bundle = read_bundle(learner.export(tmp_path / "custom.ursa"))
    assert bundle.config.training["augment"] == "custom"
