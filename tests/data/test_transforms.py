from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ursa.data.preprocess import PreprocessConfig
from ursa.data.transforms import ReflectRotate, ValidationTransform, train_transform


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


def test_rotation_leaves_no_black_corners() -> None:
    torch.manual_seed(0)
    white = Image.new("RGB", (40, 40), (255, 255, 255))
    rotate = ReflectRotate(10.0)
    for _ in range(10):
        rotated = np.asarray(rotate(white))
        assert rotated.shape == (40, 40, 3)
        assert rotated.min() > 250
