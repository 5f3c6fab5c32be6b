"""What kind of file a dataset holds, and how one becomes an RGB picture.

Every stage opens files through a :class:`InputSource`: scanning a folder,
training, validation, ``predict`` and the server. An image source opens
images; an audio source draws a clip as a mel spectrogram; a bytes source draws
a file's bytes as a grayscale picture. After that, every file is a picture and
the rest of ursa (resize, augment, train, interpret, export, serve) does not
know the difference.

The source is part of :class:`~ursa.core.preprocess.PreprocessConfig`, so a
bundle records it and a served model opens uploads the way training opened
files. Torch-free.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image

from ursa.core.errors import ConfigError
from ursa.core.imageio import IMAGE_EXTENSIONS, MAX_PIXELS, ImageSource, open_image


class InputSource(ABC):
    """Turns one file (path, bytes or file object) into an 8-bit RGB PIL image."""

    kind: ClassVar[str]
    """Name recorded in the bundle: image, audio or bytes."""
    data_defaults: ClassVar[Mapping[str, str]] = {}
    """Data settings that suit this kind of picture unless the caller says otherwise
    (a spectrogram is squished, not cropped, and never flipped)."""

    @property
    @abstractmethod
    def extensions(self) -> frozenset[str]:
        """File name suffixes (lower case, with the dot) a folder scan picks up."""

    @abstractmethod
    def open(
        self, source: ImageSource, *, max_pixels: int = MAX_PIXELS, min_size: int | None = None
    ) -> Image.Image:
        """Decode ``source`` into an RGB image; raise :class:`~ursa.core.errors.ImageError`
        naming the file and the reason when it cannot.

        ``min_size``: the caller will shrink the picture so that neither side needs more
        than ``min_size`` pixels; a source may then decode at a reduced scale, keeping
        both sides at ``min_size`` or more. None: full size.
        """

    def check(self, source: ImageSource, *, max_pixels: int = MAX_PIXELS) -> None:
        """Raise :class:`~ursa.core.errors.ImageError` when ``source`` cannot be opened.

        Used when scanning a folder; a source may check more cheaply than it opens.
        """
        self.open(source, max_pixels=max_pixels)

    def require(self) -> None:
        """Raise :class:`~ursa.core.errors.ConfigError` when a package this source needs is
        missing, so a server fails at start-up rather than on every request."""
        return None  # images and bytes need nothing beyond Pillow and numpy

    def matches(self, path: str | Path) -> bool:
        """True when a folder scan should pick up ``path``."""
        return Path(path).suffix.lower() in self.extensions

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings, with ``kind``; :func:`source_from_dict` reverses it."""
        return {"kind": self.kind}


@dataclass(frozen=True)
class ImageInput(InputSource):
    """Image files, opened by :func:`~ursa.core.imageio.open_image`."""

    kind: ClassVar[str] = "image"

    @property
    def extensions(self) -> frozenset[str]:
        return IMAGE_EXTENSIONS

    def open(
        self, source: ImageSource, *, max_pixels: int = MAX_PIXELS, min_size: int | None = None
    ) -> Image.Image:
        # JPEGs decode at 1/2, 1/4 or 1/8 scale when that still leaves min_size pixels.
        return open_image(source, max_pixels=max_pixels, draft=min_size)

    def check(self, source: ImageSource, *, max_pixels: int = MAX_PIXELS) -> None:
        # Draft mode: every byte is decoded (truncation still fails) at a fraction of the cost.
        open_image(source, max_pixels=max_pixels, draft=64)


IMAGE_INPUT = ImageInput()
"""The default source: image files."""


def source_settings(cls: type[InputSource], values: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor arguments of the source dataclass ``cls`` from what its
    ``to_dict`` wrote: ``kind`` checked and dropped, unknown keys named."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known - {"kind"})
    if unknown:
        raise ConfigError(
            f"unknown {cls.kind} settings: {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    if values.get("kind", cls.kind) != cls.kind:
        raise ConfigError(f"input kind {values['kind']!r} is not {cls.kind}")
    return {key: value for key, value in values.items() if key != "kind"}


def source_from_dict(values: dict[str, Any] | None) -> InputSource:
    """The source a bundle or settings file describes; missing means images."""
    if not values:
        return IMAGE_INPUT
    kind = values.get("kind", "image")
    if kind == "image":
        return IMAGE_INPUT
    if kind == "audio":
        from ursa.core.audio import AudioInput

        return AudioInput.from_dict(values)
    if kind == "bytes":
        from ursa.core.bytesimage import BytesInput

        return BytesInput.from_dict(values)
    raise ConfigError(f"input kind {kind!r} is unknown: use image, audio or bytes")
