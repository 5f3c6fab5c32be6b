"""Looking at the data: labelled grids of images as the model sees them.

The figures are drawn with matplotlib's object API on an Agg canvas, never through
pyplot, so nothing global changes (no backend switch, no open figures left behind):
they work in scripts, tests and the CLI alike, and a notebook shows a returned
``Figure``. Images go through the real loader transforms (training augmentation for
"train", the validation transform for "valid") and are shown un-normalised.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from ursa.core.atomic import atomic_file
from ursa.core.errors import ConfigError, DataError
from ursa.core.items import Item
from ursa.core.preprocess import PreprocessConfig

if TYPE_CHECKING:
    from ursa.data.core import ImageData

SPLITS = ("train", "valid")
CELL_INCHES = 2.0
"""Width and height of one image in the grid."""
MAX_TITLE = 22
"""Longest label drawn above an image; longer ones end in an ellipsis."""


def display_config(data: ImageData) -> PreprocessConfig:
    """The preprocessing of ``data``'s settings, as a Learner would build it (the mean and
    std only matter for the round trip through normalisation, which display undoes)."""
    config = data.config
    return PreprocessConfig(
        size=config.size, resize=config.resize, pad_mode=config.pad_mode, input=config.input
    )


def show_batch(
    data: ImageData,
    *,
    n: int = 16,
    split: str = "train",
    path: str | Path | None = None,
    preprocess: PreprocessConfig | None = None,
) -> Figure:
    """A grid of up to ``n`` ``split`` images (fewer when the split has fewer), each titled
    with its label. Training images are a seeded random draw, augmented as in training
    (per image, whatever device trains); validation images are the first ``n``."""
    if split not in SPLITS:
        raise ConfigError(f"split={split!r}: use one of {', '.join(SPLITS)}")
    _check_count(n)
    config = preprocess or display_config(data)
    items = data.train_items if split == "train" else data.valid_items
    if not items:
        raise DataError(f"no {split} images to show; {data.summary()}")
    training = split == "train"
    if training:
        chosen = random.Random(data.config.seed).sample(items, min(n, len(items)))
    else:
        chosen = items[:n]
    dataset = data.dataset(chosen, config, training=training)  # as the loader reads them
    with _seeded(data.config.seed):
        pictures = [_picture(dataset[index][0], config) for index in range(len(chosen))]
    title = f"{split}: {len(chosen)} of {len(items)} images"
    if training:
        title += f", augment={data.config.augment_name}"
    figure = image_grid(pictures, [i.label for i in chosen], title=title)
    return _written(figure, path)


def show_augmentations(
    data: ImageData,
    *,
    image: str | Path | Image.Image | None = None,
    n: int = 8,
    path: str | Path | None = None,
    preprocess: PreprocessConfig | None = None,
) -> Figure:
    """One image under ``n`` draws of the training augmentation (random crop included).

    ``image``: a file (opened the way the data's files are: an audio clip becomes its
    spectrogram), a PIL image, or None for the first training image.
    """
    _check_count(n)
    config = preprocess or display_config(data)
    if isinstance(image, Image.Image):
        items, name = [], "the given image"
    elif image is None:
        if not data.train_items:
            raise DataError(f"no training images to show; {data.summary()}")
        first = data.train_items[0]
        items, name = [first], f"{first.path.name} ({first.label})"
    else:
        items, name = [Item(Path(image), "")], Path(image).name
    dataset = data.dataset(items, config, training=True)
    # A file is opened and prepared as the training loader does; a PIL image is used as is.
    picture = image.convert("RGB") if isinstance(image, Image.Image) else dataset.decode(0)
    with _seeded(data.config.seed):
        pictures = [_picture(dataset.transform(picture), config) for _ in range(n)]
    title = f"{name}: {n} draws of augment={data.config.augment_name}"
    if data.config.augment == "none":
        title += " (no augmentation: each is the validation view)"
    figure = image_grid(pictures, [f"draw {k + 1}" for k in range(n)], title=title)
    return _written(figure, path)


def image_grid(pictures: Sequence[np.ndarray], titles: Sequence[str], *, title: str) -> Figure:
    """(H, W, 3) float images in [0, 1] in a near-square grid, one titled cell each."""
    count = len(pictures)
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(CELL_INCHES * columns, CELL_INCHES * rows + 0.5), layout="constrained")
    FigureCanvasAgg(figure)
    cells = figure.subplots(rows, columns, squeeze=False)
    for index, axes in enumerate(cells.flat):
        if index >= count:
            figure.delaxes(axes)  # the grid's spare cells: no empty frames
            continue
        axes.imshow(pictures[index], interpolation="nearest")
        axes.set_title(_short(titles[index]), fontsize=9)
        axes.set_axis_off()
    figure.suptitle(title, fontsize=10)
    return figure


def write_png(figure: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write ``figure`` as a PNG atomically (a reader never sees half a file)."""
    target = Path(path)
    with atomic_file(target, suffix=".png") as stream:
        figure.savefig(stream, format="png", dpi=dpi, facecolor="white")
    return target


def _written(figure: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        write_png(figure, path)
    return figure


def _picture(tensor: torch.Tensor, config: PreprocessConfig) -> np.ndarray:
    """A normalised (3, H, W) tensor → (H, W, 3) float pixels in [0, 1], for display."""
    mean = torch.tensor(config.mean).view(3, 1, 1)
    std = torch.tensor(config.std).view(3, 1, 1)
    pixels = (tensor.detach().cpu().float() * std + mean).clamp(0.0, 1.0)
    return pixels.permute(1, 2, 0).numpy()


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Draw the augmentation from torch's CPU generator seeded with ``seed``, putting the
    generator back as it was afterwards (the caller's own random stream is untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # the CPU generator only, not CUDA's
        yield


def _check_count(n: int) -> None:
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"n={n!r}: show at least 1 image")


def _short(text: str) -> str:
    return text if len(text) <= MAX_TITLE else text[: MAX_TITLE - 1] + "…"
