"""Any file as a picture: a file's bytes drawn as a grayscale image of fixed width.

The malware-as-image idea: byte ``i`` of a file is the pixel at row
``i // width``, column ``i % width``, its value the pixel's brightness. Files of
one kind (an executable's sections, a compressed archive, a text encoding) have
textures a CNN tells apart, so byte-level classification uses the same tools as
photos. The picture is ``width`` wide and ``ceil(size / width)`` high, its last
row padded with zeros; as the height follows the file's size, such models resize
with ``squish`` (the whole file stretched to the model's square input).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from ursa.core.errors import ConfigError, ImageError
from ursa.core.imageio import MAX_PIXELS, ImageSource, describe_source
from ursa.core.sources import InputSource, source_settings


@dataclass(frozen=True)
class BytesInput(InputSource):
    """Files of any kind drawn byte by byte as grayscale pictures ``width`` pixels wide."""

    kind: ClassVar[str] = "bytes"
    # The height follows the file's size (squish shows all of it); flips move bytes around.
    data_defaults: ClassVar[Mapping[str, str]] = {"resize": "squish", "augment": "none"}

    width: int = 256
    """Bytes per row: the picture's width."""
    max_bytes: int = 8 * 1024 * 1024
    """Larger files are refused (their picture would be ``max_bytes / width`` rows high)."""
    suffixes: frozenset[str] | None = field(default=None)
    """File name suffixes a folder scan picks up (``{".exe", ".dll"}``); None: every
    file that is not hidden."""

    def __post_init__(self) -> None:
        if self.suffixes is not None and not isinstance(self.suffixes, frozenset):
            object.__setattr__(self, "suffixes", frozenset(self.suffixes))
        problems = []
        if not isinstance(self.width, int) or not 8 <= self.width <= 8192:
            problems.append(f"width={self.width!r}: use a whole number of bytes, 8 to 8192")
        if not isinstance(self.max_bytes, int) or self.max_bytes < 1:
            problems.append(f"max_bytes={self.max_bytes!r}: use a positive whole number")
        if self.suffixes is not None:
            bad = sorted(s for s in self.suffixes if not (isinstance(s, str) and _suffix_ok(s)))
            if bad or not self.suffixes:
                problems.append(
                    f"suffixes={sorted(map(str, self.suffixes))!r}: give lower-case suffixes "
                    f"with the dot, such as .exe, or None for every file"
                )
        if problems:
            raise ConfigError("invalid bytes settings:\n  " + "\n  ".join(problems))

    @property
    def extensions(self) -> frozenset[str]:
        """The configured suffixes; empty when every file is taken (see :meth:`matches`)."""
        return self.suffixes or frozenset()

    def matches(self, path: str | Path) -> bool:
        name = Path(path).name
        if name.startswith("."):
            return False
        return self.suffixes is None or Path(name).suffix.lower() in self.suffixes

    def open(
        self, source: ImageSource, *, max_pixels: int = MAX_PIXELS, min_size: int | None = None
    ) -> Image.Image:
        """The file's bytes as an RGB picture (gray: R = G = B), ``width`` wide; every byte
        is one pixel, so ``min_size`` (a reduced decode) does not apply."""
        return Image.fromarray(self.pixels(source, max_pixels=max_pixels)).convert("RGB")

    def check(self, source: ImageSource, *, max_pixels: int = MAX_PIXELS) -> None:
        # Every file that can be read within the limits can be drawn.
        self._read(source, max_pixels)

    def pixels(self, source: ImageSource, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
        """(ceil(size / width), width) uint8: the bytes row by row, zero padded."""
        data = self._read(source, max_pixels)
        rows = -(-len(data) // self.width)
        padded = np.zeros(rows * self.width, dtype=np.uint8)
        padded[: len(data)] = np.frombuffer(data, dtype=np.uint8)
        return padded.reshape(rows, self.width)

    def _read(self, source: ImageSource, max_pixels: int) -> bytes:
        name = describe_source(source)
        limit = min(self.max_bytes, max_pixels)
        if isinstance(source, Image.Image):
            raise ImageError(
                name, "a bytes model reads files: give the file, not a decoded picture"
            )
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if not path.is_file():
                raise ImageError(name, "no such file")
            size = path.stat().st_size
            if size > limit:
                raise ImageError(name, _too_large(size, limit))
            try:
                data = path.read_bytes()
            except OSError as error:
                raise ImageError(name, f"cannot read the file ({error})") from None
        elif isinstance(source, bytes):
            data = source
        else:
            data = source.read(limit + 1)
        if not data:
            raise ImageError(name, "the file is empty (0 bytes)")
        if len(data) > limit:
            raise ImageError(name, _too_large(len(data), limit))
        return data

    def to_dict(self) -> dict[str, Any]:
        suffixes = None if self.suffixes is None else sorted(self.suffixes)
        return {
            "kind": self.kind,
            "width": self.width,
            "max_bytes": self.max_bytes,
            "suffixes": suffixes,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BytesInput:
        """Settings as :meth:`to_dict` writes them; missing ones take the defaults."""
        settings = source_settings(cls, values)
        suffixes = settings.get("suffixes")
        if suffixes is not None:
            if isinstance(suffixes, str) or not isinstance(suffixes, (list, tuple, set, frozenset)):
                raise ConfigError(f"suffixes={suffixes!r}: give a list such as ['.exe'], or null")
            settings["suffixes"] = frozenset(suffixes)
        try:
            return cls(**settings)
        except TypeError as error:
            raise ConfigError(f"invalid bytes settings: {error}") from None


def _suffix_ok(suffix: str) -> bool:
    return len(suffix) > 1 and suffix.startswith(".") and suffix == suffix.lower()


def _too_large(size: int, limit: int) -> str:
    return (
        f"the file is {size:,} bytes, over the limit of {limit:,} bytes (max_bytes): "
        f"raise max_bytes or leave such files out"
    )
