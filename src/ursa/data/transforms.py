"""Training-time augmentation (torchvision.transforms.v2) and the tensors it yields.

Validation never augments: it uses :func:`ursa.core.preprocess.preprocess`, the
same numpy code the server runs, so there is one definition of "the input".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, v2

from ursa.core.errors import ConfigError, DataError
from ursa.core.preprocess import PreprocessConfig, preprocess, resize_for_model
from ursa.data.batch_augment import AUGMENT_PRESETS, BatchAugment
from ursa.data.cache import training_side
from ursa.data.core import DEFAULT_MIN_SCALE, AugmentPipeline

_INTERPOLATION = {
    "bicubic": InterpolationMode.BICUBIC,
    "bilinear": InterpolationMode.BILINEAR,
    "nearest": InterpolationMode.NEAREST,
}


def train_transform(
    config: PreprocessConfig,
    augment: str | AugmentPipeline,
    *,
    min_scale: float = DEFAULT_MIN_SCALE,
    batch_augment: bool = False,
) -> v2.Transform | ValidationTransform:
    """RGB PIL image → augmented, normalised (3, size, size) float32 tensor.

    First the resize: a random resized crop keeping ``min_scale`` to all of the area
    (resize="crop"), or the fixed pad / squish resize. Then, for a preset
    (``default``, ``no_flip``: see :data:`~ursa.data.batch_augment.AUGMENT_PRESETS`),
    the flip / rotate / zoom / warp / lighting of :class:`ItemAugment`, unless
    ``batch_augment`` (the training loop then applies them to whole batches on the
    device). Your own ``augment`` pipeline runs on the resized PIL image; ursa then
    converts and normalises its output, which must keep the size. ``none``: the
    validation transform (no random crop either).
    """
    settings = None
    if isinstance(augment, str):
        if augment not in AUGMENT_PRESETS:
            raise ConfigError(f"augment={augment!r}: use one of {', '.join(AUGMENT_PRESETS)}")
        settings = AUGMENT_PRESETS[augment]
        if settings is None:
            return ValidationTransform(config)
    interpolation = _INTERPOLATION[config.interpolation]
    steps: list[Callable[[Any], Any]] = []
    if config.resize == "crop":
        steps.append(
            v2.RandomResizedCrop(
                config.size, scale=(min_scale, 1.0), interpolation=interpolation, antialias=True
            )
        )
    else:
        steps.append(FixedResize(config))
    if not isinstance(augment, str):
        steps.append(augment)
    steps += [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(config.mean), std=list(config.std)),
    ]
    if settings is None:
        steps.append(SizeCheck(config.size))
    elif not batch_augment:
        steps.append(ItemAugment(BatchAugment(settings, config.mean, config.std)))
    return v2.Compose(steps)


def train_decode_size(
    config: PreprocessConfig, min_scale: float, *, augment: object = "default"
) -> int | None:
    """How small training images may decode (see ``PreprocessConfig.reduced_decode``).

    A random crop keeps as little as ``min_scale`` of the area and is then scaled
    up to ``size``, so the decoded image keeps the short side the decode cache
    stores (:func:`ursa.data.cache.training_side`, ``size / sqrt(min_scale)``):
    the smallest crop still has ``size`` real pixels across. Without a random
    crop, training decodes as validation does.
    """
    if not config.reduced_decode:
        return None
    side = training_side(config, augment=augment, min_scale=min_scale)
    return config.size if side is None else side


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


class ItemAugment(v2.Transform):
    """:class:`~ursa.data.batch_augment.BatchAugment` on one normalised (3, H, W) tensor:
    the per-image form of the batch augmentation, for CPU loader workers."""

    def __init__(self, augment: BatchAugment) -> None:
        super().__init__()
        self.augment = augment

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.augment(image.unsqueeze(0))[0]


class SizeCheck(v2.Transform):
    """Fail clearly when a custom augmentation pipeline changed the image's size."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if tuple(image.shape) != (3, self.size, self.size):
            raise DataError(
                f"the augment pipeline turned a {self.size}×{self.size} image into shape "
                f"{tuple(image.shape)}: it must keep the size and 3 channels (ursa resizes "
                f"before it and normalises after it; leave out resizing, cropping to another "
                f"size and Normalize)"
            )
        return image
