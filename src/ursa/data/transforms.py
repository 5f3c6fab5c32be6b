"""Training-time augmentation (torchvision.transforms.v2) and the tensors it yields.

Validation never augments: it uses :func:`ursa.data.preprocess.preprocess`, the
same numpy code the server runs, so there is one definition of "the input".
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, v2

from ursa.data.preprocess import PreprocessConfig, preprocess, resize_for_model

_INTERPOLATION = {
    "bicubic": InterpolationMode.BICUBIC,
    "bilinear": InterpolationMode.BILINEAR,
    "nearest": InterpolationMode.NEAREST,
}


def train_transform(
    config: PreprocessConfig, augment: str, *, min_scale: float = 0.35
) -> v2.Transform | ValidationTransform:
    """RGB PIL image → augmented, normalised (3, size, size) float32 tensor.

    ``default``: random resized crop (or the fixed pad / squish resize), horizontal
    flip, rotation up to ±10° (corners filled by reflection, not black), brightness
    and contrast ±20 %. ``no_flip``: the same
    without the flip (digits, text, anything with a handedness). ``none``: the
    validation transform.
    """
    if augment == "none":
        return ValidationTransform(config)
    interpolation = _INTERPOLATION[config.interpolation]
    steps: list[v2.Transform] = []
    if config.resize == "crop":
        steps.append(
            v2.RandomResizedCrop(
                config.size, scale=(min_scale, 1.0), interpolation=interpolation, antialias=True
            )
        )
    else:
        steps.append(FixedResize(config))
    if augment == "default":
        steps.append(v2.RandomHorizontalFlip())
    steps += [
        v2.RandomApply([ReflectRotate(10.0)], p=0.75),
        v2.ColorJitter(brightness=0.2, contrast=0.2),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(config.mean), std=list(config.std)),
    ]
    return v2.Compose(steps)


def train_decode_size(config: PreprocessConfig, min_scale: float) -> int | None:
    """How small training images may decode (see ``PreprocessConfig.reduced_decode``).

    A random crop keeps as little as ``min_scale`` of the area and is then scaled
    up to ``size``, so the decoded image keeps ``size / sqrt(min_scale)`` pixels a
    side: the smallest crop still has ``size`` real pixels across.
    """
    if not config.reduced_decode:
        return None
    if config.resize != "crop":
        return config.size
    return math.ceil(config.size / math.sqrt(min_scale))


def validation_tensor(image: Image.Image, config: PreprocessConfig) -> torch.Tensor:
    """The validation / inference input as a tensor (3, size, size) float32."""
    return torch.from_numpy(preprocess(image, config))


class ValidationTransform:
    """Picklable callable: RGB PIL image → validation tensor (loader workers need pickling)."""

    def __init__(self, config: PreprocessConfig) -> None:
        self.config = config

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return validation_tensor(image, self.config)


class FixedResize(v2.Transform):
    """The deterministic pad / squish resize, as a transforms.v2 step."""

    def __init__(self, config: PreprocessConfig) -> None:
        super().__init__()
        self.config = config

    def forward(self, image: Image.Image) -> Image.Image:
        return resize_for_model(image, self.config)


class ReflectRotate(v2.Transform):
    """Rotate by a random angle in ±``degrees``, filling the corners by reflection.

    A plain rotation fills the corners with black, which the model then learns
    as a feature of training images that validation images never have. The
    image is padded by reflection, rotated, and its centre cut out again.
    """

    def __init__(self, degrees: float) -> None:
        super().__init__()
        self.degrees = degrees

    def forward(self, image: Image.Image) -> Image.Image:
        angle = float(torch.empty(1).uniform_(-self.degrees, self.degrees))
        width, height = image.size
        # Enough margin that the rotated corners stay inside the padded image.
        margin = math.ceil(max(width, height) * math.sin(math.radians(abs(angle)))) + 1
        padded = np.pad(np.asarray(image), ((margin, margin), (margin, margin), (0, 0)), "reflect")
        rotated = Image.fromarray(padded).rotate(angle, resample=Image.Resampling.BILINEAR)
        return rotated.crop((margin, margin, margin + width, margin + height))
