"""Torch datasets and data loaders over labelled items."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ursa.core.imageio import MAX_PIXELS
from ursa.core.items import Item
from ursa.core.sources import IMAGE_INPUT, InputSource
from ursa.data.cache import DecodeCache


class ImageDataset(Dataset[tuple[torch.Tensor, int]]):
    """Items → (image tensor (3, H, W), class index); files are opened by ``source``
    (images with the safe opener, audio as spectrograms, ...), at a reduced scale
    down to ``min_size`` pixels a side when given (see ``InputSource.open``).

    ``prepare`` (e.g. a :class:`~ursa.data.cache.StoredForm`) runs on each opened
    image before ``transform``; with a :attr:`cache` (see :mod:`ursa.data.cache`),
    its result is read from the cache instead of opening the file."""

    def __init__(
        self,
        items: Sequence[Item],
        class_names: Sequence[str],
        transform: Callable[[Image.Image], torch.Tensor],
        *,
        source: InputSource = IMAGE_INPUT,
        max_pixels: int = MAX_PIXELS,
        min_size: int | None = None,
        prepare: Callable[[Image.Image], Image.Image] | None = None,
    ) -> None:
        self.items = list(items)
        self.class_to_index = {name: i for i, name in enumerate(class_names)}
        self.transform = transform
        self.source = source
        self.max_pixels = max_pixels
        self.min_size = min_size
        self.prepare = prepare
        self.cache: DecodeCache | None = None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.cache.image(index) if self.cache is not None else self.decode(index)
        return self.transform(image), self.class_to_index[self.items[index].label]

    def decode(self, index: int) -> Image.Image:
        """Item ``index`` opened and prepared: what the decode cache holds for it."""
        image = self.source.open(
            self.items[index].path, max_pixels=self.max_pixels, min_size=self.min_size
        )
        return image if self.prepare is None else self.prepare(image)


def default_num_workers() -> int:
    """Loader processes: one per spare core, at most 4; none on a single core."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def make_loader(
    dataset: ImageDataset,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int,
) -> DataLoader[tuple[torch.Tensor, int]]:
    """A DataLoader; shuffling follows ``seed``; the last short training batch is dropped
    when there is more than one batch (a batch of one breaks batch norm).

    Workers start afresh each epoch (not persistent): each epoch's worker seeds are
    then drawn from ``generator``, whose state a checkpoint holds, so a resumed run
    draws the same augmentation as an uninterrupted one. Starting a worker by fork
    costs well under a second an epoch.
    """
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator if shuffle else None,
        num_workers=num_workers,
        persistent_workers=False,
        drop_last=shuffle and len(dataset) > batch_size,
        pin_memory=torch.cuda.is_available(),
    )
