"""``ImageData``: labelled images, split, ready to become data loaders."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ursa.data.imageio import MAX_PIXELS
from ursa.data.items import (
    Item,
    class_counts,
    find_split_folders,
    fingerprint,
    items_from_class_folders,
    random_split,
    scan_images,
)
from ursa.data.preprocess import RESIZE_METHODS, PreprocessConfig, ResizeMethod
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
    valid_pct: float = 0.2
    """Fraction held out for validation when the folder has no train/valid split."""
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

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.size, int) or self.size < 8:
            problems.append(f"size={self.size!r}: use a whole number of pixels, at least 8")
        if self.resize not in RESIZE_METHODS:
            problems.append(f"resize={self.resize!r}: use one of {', '.join(RESIZE_METHODS)}")
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


@dataclass
class ImageData:
    """Images with labels, split into training and validation sets.

    Build it with :meth:`from_folder`; a :class:`~ursa.train.Learner` turns it
    into data loaders with the backbone's normalisation.
    """

    root: Path
    class_names: list[str]
    train_items: list[Item]
    valid_items: list[Item]
    config: DataConfig
    skipped: list[ImageError] = field(default_factory=list)
    fingerprint: str = ""

    @classmethod
    def from_folder(
        cls,
        path: str | Path,
        *,
        valid_pct: float = 0.2,
        seed: int = 42,
        size: int = 224,
        resize: ResizeMethod = "crop",
        batch_size: int = 64,
        augment: str = "default",
        min_scale: float = 0.35,
        stratify: bool = True,
        num_workers: int | None = None,
        max_pixels: int = MAX_PIXELS,
    ) -> ImageData:
        """Labels from folder names: ``path/<class>/*.jpg``, or ``path/train/<class>/`` and
        ``path/valid/<class>/`` for a split made beforehand (then ``valid_pct`` is unused).

        Every image is decoded once here; files that are not readable images are
        skipped and listed in :attr:`skipped` (and logged), never fatal.
        """
        config = DataConfig(
            size=size,
            resize=resize,
            valid_pct=valid_pct,
            seed=seed,
            stratify=stratify,
            batch_size=batch_size,
            augment=augment,
            min_scale=min_scale,
            num_workers=num_workers,
            max_pixels=max_pixels,
        )
        root = Path(path).expanduser().resolve()
        if not root.exists():
            raise DataError(f"{path} does not exist")
        split = find_split_folders(root)
        if split is not None:
            train_scan = scan_images(items_from_class_folders(split[0]), max_pixels=max_pixels)
            valid_scan = scan_images(items_from_class_folders(split[1]), max_pixels=max_pixels)
            train, valid = train_scan.items, valid_scan.items
            skipped = train_scan.skipped + valid_scan.skipped
            digests = {**train_scan.sha256, **valid_scan.sha256}
            unknown = sorted({i.label for i in valid} - {i.label for i in train})
            if unknown:
                raise DataError(
                    f"{split[1]} has classes that {split[0]} lacks: {', '.join(unknown)}; "
                    f"every validation class needs training images"
                )
        else:
            scan = scan_images(items_from_class_folders(root), max_pixels=max_pixels)
            skipped, digests = scan.skipped, scan.sha256
            train, valid = random_split(scan.items, valid_pct, seed, stratify=stratify)
        class_names = sorted({item.label for item in train})
        if len(class_names) < 2:
            raise DataError(
                f"{root} has {len(class_names)} class with usable images "
                f"({', '.join(class_names) or 'none'}); a classifier needs at least 2 class folders"
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
            skipped=skipped,
            fingerprint=fingerprint(train + valid, digests, root),
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
        train_set = ImageDataset(
            self.train_items,
            self.class_names,
            train_transform(preprocess, self.config.augment, min_scale=self.config.min_scale),
        )
        valid_set = ImageDataset(
            self.valid_items, self.class_names, ValidationTransform(preprocess)
        )
        batch = self.config.batch_size
        seed = self.config.seed
        return (
            make_loader(train_set, batch_size=batch, shuffle=True, seed=seed, num_workers=workers),
            make_loader(valid_set, batch_size=batch, shuffle=False, seed=seed, num_workers=workers),
        )
