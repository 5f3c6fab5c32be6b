"""Looking at the data: labelled grids of images as the model sees them.

The figures are drawn with matplotlib's object API on an Agg canvas, never through
pyplot, so nothing global changes (no backend switch, no open figures left behind):
they work in scripts, tests and the CLI alike, and a notebook shows a returned figure
as an image (:class:`InlineFigure`, which every figure of ursa is). Images go through
the real loader transforms (training augmentation for "train", the validation
transform for "valid") and are shown un-normalised.
"""

from __future__ import annotations

import io
import math
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

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


class InlineFigure(Figure):
    """A matplotlib ``Figure`` that Jupyter, VS Code and Colab show as an image, no magic needed.

    ursa draws its figures without pyplot, so nothing global changes. The price is that
    IPython can show a plain ``Figure`` only after ``%matplotlib inline`` (or the first
    pyplot import) has registered a formatter for the class; without one a cell ends in
    the text ``<Figure size 600x650 with 9 Axes>``. IPython's display protocol also asks
    the object itself for ``_repr_png_``, so this subclass answers it with the figure
    drawn on its Agg canvas.

    A subclass rather than a formatter registered with IPython: it needs no IPython
    running when the figure is made (a figure made in a script and shown later works),
    every front end that speaks the display protocol renders it, and the user's own
    figures are left alone. Where ``%matplotlib inline`` is on, its formatter (found by
    class first) draws the figure instead: one image either way.
    """

    def _repr_png_(self) -> bytes:
        return png_bytes(self)


def new_figure(width: float, height: float) -> InlineFigure:
    """A ``width`` × ``height`` inch figure on its own Agg canvas, laid out so that labels
    never overlap the axes (constrained layout)."""
    figure = InlineFigure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def png_bytes(figure: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (white behind it)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return buffer.getvalue()


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
    seed: int | None = None,
) -> InlineFigure:
    """A grid of up to ``n`` ``split`` images (fewer when the split has fewer), each titled
    with its label. Training images are a random draw, augmented as in training (per image,
    whatever device trains): a new draw on every call, as fastai shows a new batch each
    time; ``seed`` makes one draw again (the title says each draw's seed). Validation images
    are the first ``n``, through the validation transform, the same on every call.

    The draw never touches the caller's random generators (Python's, numpy's, torch's):
    looking at the data changes nothing about the training that follows."""
    if split not in SPLITS:
        raise ConfigError(f"split={split!r}: use one of {', '.join(SPLITS)}")
    _check_count(n)
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise ConfigError(f"seed={seed!r}: use a whole number, 0 or more, or None for a new draw")
    config = preprocess or display_config(data)
    items = data.train_items if split == "train" else data.valid_items
    if not items:
        raise DataError(f"no {split} images to show; {data.summary()}")
    training = split == "train"
    # A fresh seed from the operating system, not from the caller's generators.
    draw = random.SystemRandom().randrange(2**31) if seed is None else seed
    chosen = random.Random(draw).sample(items, min(n, len(items))) if training else items[:n]
    dataset = data.dataset(chosen, config, training=training)  # as the loader reads them
    with _seeded(draw):
        pictures = [_picture(dataset[index][0], config) for index in range(len(chosen))]
    title = f"{split}: {len(chosen)} of {len(items)} images"
    if training:
        title += f", augment={data.config.augment_name}, seed={draw}"
    figure = image_grid(pictures, [i.label for i in chosen], title=title)
    return saved(figure, path)


def show_augmentations(
    data: ImageData,
    *,
    image: str | Path | Image.Image | None = None,
    n: int = 8,
    path: str | Path | None = None,
    preprocess: PreprocessConfig | None = None,
) -> InlineFigure:
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
    return saved(figure, path)


def image_grid(
    pictures: Sequence[np.ndarray], titles: Sequence[str], *, title: str
) -> InlineFigure:
    """(H, W, 3) float images in [0, 1] in a near-square grid, one titled cell each."""
    count = len(pictures)
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    figure = new_figure(CELL_INCHES * columns, CELL_INCHES * rows + 0.5)
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


FigureType = TypeVar("FigureType", bound=Figure)


def saved(figure: FigureType, path: str | Path | None) -> FigureType:
    """``figure``, first written as a PNG at ``path`` when a path is given (every ``plot*``
    and ``show*`` of ursa returns its figure and writes it only when asked)."""
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
