from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ursa.data.preprocess import PreprocessConfig
from ursa.data.transforms import ValidationTransform, train_transform


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
