"""``ImageData``: labelled images, split, ready to become data loaders."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict, Unpack

from ursa.data.imageio import MAX_PIXELS
from ursa.data.items import (
    Item,
    class_counts,
    existing_folder,
    find_split_folders,
    fingerprint,
    items_from_class_folders,
    random_split,
    scan_images,
    split_by_folder,
)
from ursa.data.preprocess import (
    PAD_MODES,
    RESIZE_METHODS,
    PadMode,
    PreprocessConfig,
    ResizeMethod,
)
from ursa.data.sources import IMAGE_INPUT, InputSource
from ursa.errors import ConfigError, DataError, ImageError

if TYPE_CHECKING:
    import torch
    from torch.utils.data import DataLoader

log = logging.getLogger(__name__)

AUGMENT_PRESETS = ("default", "no_flip", "none")


@dataclass(frozen=True)
class DataConfig:
    """How a folder of images becomes training and validation batches."""

    size: int = 224
    """Side of the square model input, in pixels."""
    resize: ResizeMethod = "crop"
    """crop, pad or squish (see :class:`~ursa.data.preprocess.PreprocessConfig`)."""
    pad_mode: PadMode = "zeros"
    """How resize="pad" fills the margin: zeros, border or reflection."""
    valid_pct: float = 0.2
    """Fraction held out for validation when the data has no split of its own."""
    seed: int = 42
    """Seed for the split and the shuffling."""
    stratify: bool = True
    """Hold out the same fraction of every class."""
    batch_size: int = 64
    """Images per batch."""
    augment: str = "default"
    """Training augmentation: default, no_flip or none."""
    min_scale: float = 0.35
    """Smallest fraction of the image area a training random crop keeps (resize="crop")."""
    num_workers: int | None = None
    """Loader processes; None picks one per spare core (at most 4)."""
    max_pixels: int = MAX_PIXELS
    """Images with more pixels than this are refused (decompression bombs)."""
    input: InputSource = field(default=IMAGE_INPUT)
    """What the files are and how one becomes a picture (images, audio, bytes)."""

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.size, int) or self.size < 8:
            problems.append(f"size={self.size!r}: use a whole number of pixels, at least 8")
        if self.resize not in RESIZE_METHODS:
            problems.append(f"resize={self.resize!r}: use one of {', '.join(RESIZE_METHODS)}")
        if self.pad_mode not in PAD_MODES:
            problems.append(f"pad_mode={self.pad_mode!r}: use one of {', '.join(PAD_MODES)}")
        if not 0.0 <= self.valid_pct < 1.0:
            problems.append(
                f"valid_pct={self.valid_pct}: use a fraction from 0 up to 1 (exclusive)"
            )
        if self.batch_size < 1:
            problems.append(f"batch_size={self.batch_size}: use 1 or more")
        if self.augment not in AUGMENT_PRESETS:
            problems.append(f"augment={self.augment!r}: use one of {', '.join(AUGMENT_PRESETS)}")
        if not 0.0 < self.min_scale <= 1.0:
            problems.append(f"min_scale={self.min_scale}: use a fraction above 0, at most 1")
        if self.num_workers is not None and self.num_workers < 0:
            problems.append(f"num_workers={self.num_workers}: use 0 or more, or None for automatic")
        if problems:
            raise ConfigError("invalid data settings:\n  " + "\n  ".join(problems))


class DataSettings(TypedDict, total=False):
    """Keyword settings every ``ImageData.from_*`` constructor takes (see :class:`DataConfig`)."""

    size: int
    resize: ResizeMethod
    pad_mode: PadMode
    valid_pct: float
    seed: int
    stratify: bool
    batch_size: int
    augment: str
    min_scale: float
    num_workers: int | None
    max_pixels: int
    input: InputSource


Splitter = Callable[[list[Item]], tuple[list[Item], list[Item]]]
"""Divides labelled items into (train, valid)."""


@dataclass
class ImageData:
    """Images with labels, split into training and validation sets.

    Build it with :meth:`from_folder` (or another ``from_*``); a
    :class:`~ursa.train.Learner` turns it into data loaders with the backbone's
    normalisation.
    """

    root: Path
    class_names: list[str]
    train_items: list[Item]
    valid_items: list[Item]
    config: DataConfig
    skipped: list[ImageError] = field(default_factory=list)
    fingerprint: str = ""

    @classmethod
    def from_folder(cls, path: str | Path, **settings: Unpack[DataSettings]) -> ImageData:
        """Labels from folder names: ``path/<class>/*.jpg``, or ``path/train/<class>/`` and
        ``path/valid/<class>/`` for a split made beforehand (then ``valid_pct`` is unused).

        Every file is decoded once here; files that are not readable are skipped
        and listed in :attr:`skipped` (and logged), never fatal.
        """
        config = DataConfig(**settings)
        root = existing_folder(path)
        split = find_split_folders(root)
        if split is None:
            items = items_from_class_folders(root, config.input)
            return cls.from_items(root, items, config)
        train_dir, valid_dir = split
        items = items_from_class_folders(train_dir, config.input) + items_from_class_folders(
            valid_dir, config.input
        )
        return cls.from_items(root, items, config, splitter=split_by_folder(valid_dir))

    @classmethod
    def from_items(
        cls,
        root: Path,
        items: Sequence[Item],
        config: DataConfig,
        *,
        splitter: Splitter | None = None,
    ) -> ImageData:
        """Check labelled ``items`` (decoding each once), split them and build the data.

        ``splitter`` divides the readable items into (train, valid); the default
        is the seeded random split of ``config``. Every ``from_*`` ends here.
        """
        scan = scan_images(items, max_pixels=config.max_pixels, source=config.input)
        if splitter is None:
            train, valid = random_split(
                scan.items, config.valid_pct, config.seed, stratify=config.stratify
            )
        else:
            train, valid = splitter(scan.items)
        class_names = sorted({item.label for item in train})
        if len(class_names) < 2:
            raise DataError(
                f"{root} has {len(class_names)} class with usable training files "
                f"({', '.join(class_names) or 'none'}); a classifier needs at least 2 classes"
            )
        unknown = sorted({i.label for i in valid} - set(class_names))
        if unknown:
            raise DataError(
                f"the validation set has classes the training set lacks: {', '.join(unknown)}; "
                f"every validation class needs training files"
            )
        counts = class_counts(train + valid)
        small = [name for name, n in counts.items() if n < 2]
        if small:
            log.warning("classes with fewer than 2 images: %s", ", ".join(small))
        if not valid:
            log.warning("no validation images: metrics will not be computed")
        return cls(
            root=root,
            class_names=class_names,
            train_items=train,
            valid_items=valid,
            config=config,
            skipped=scan.skipped,
            fingerprint=fingerprint(train + valid, scan.sha256, root),
        )

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per class in each split: ``{"train": {...}, "valid": {...}}``."""
        return {"train": class_counts(self.train_items), "valid": class_counts(self.valid_items)}

    def summary(self) -> str:
        """One line: classes and images per split (plus skipped files)."""
        text = (
            f"{len(self.class_names)} classes, {len(self.train_items)} training and "
            f"{len(self.valid_items)} validation images"
        )
        if self.skipped:
            text += f", {len(self.skipped)} unreadable files skipped"
        return text

    def dataloaders(
        self, preprocess: PreprocessConfig
    ) -> tuple[DataLoader[tuple[torch.Tensor, int]], DataLoader[tuple[torch.Tensor, int]]]:
        """(train, valid) loaders: training augmented and shuffled, validation neither."""
        from ursa.data.loaders import ImageDataset, default_num_workers, make_loader
        from ursa.data.transforms import ValidationTransform, train_transform

        workers = self.config.num_workers
        if workers is None:
            workers = default_num_workers()
        source, max_pixels = preprocess.input, self.config.max_pixels
        train_set = ImageDataset(
            self.train_items,
            self.class_names,
            train_transform(preprocess, self.config.augment, min_scale=self.config.min_scale),
            source=source,
            max_pixels=max_pixels,
        )
        valid_set = ImageDataset(
            self.valid_items,
            self.class_names,
            ValidationTransform(preprocess),
            source=source,
            max_pixels=max_pixels,
        )
        batch = self.config.batch_size
        seed = self.config.seed
        return (
            make_loader(train_set, batch_size=batch, shuffle=True, seed=seed, num_workers=workers),
            make_loader(valid_set, batch_size=batch, shuffle=False, seed=seed, num_workers=workers),
        )
