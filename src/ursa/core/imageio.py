"""Open images safely and the same way everywhere: training, validation, predict, serve.

Torch-free on purpose: the inference server uses this module too.

What "safely" means here:

* a pixel-count limit and (optionally) a decoded-bytes limit, both checked from
  the header before any pixel is decoded, so a decompression bomb costs nothing;
* a full decode, so a truncated or corrupt file fails here and not half-way
  through an epoch;
* EXIF orientation applied, so a phone photo is the right way up;
* every mode (palette, LA, RGBA, CMYK, 16-bit, float, grayscale) converted to
  8-bit RGB, transparency composited onto white, in a few bytes per pixel: each
  step frees the one before, and deep images are scaled in strips of rows, never
  through a full-size float copy;
* any failure raised as :class:`~ursa.core.errors.ImageError` naming the file and the reason.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from ursa.core.errors import ImageError

#: Default limit on width × height (about a 13,000 × 13,000 image).
MAX_PIXELS = 178_956_970

#: Bytes Pillow keeps per pixel in memory: one for 1-bit, gray and palette images, two for
#: 16-bit gray, four for every other mode (several bands are stored in four bytes a pixel).
_ONE_BYTE_MODES = frozenset({"1", "L", "P"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
#: Pixels scaled at once when a deep image becomes 8-bit (a few MB of temporaries).
_STRIP_PIXELS = 1 << 18

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".jfif", ".ppm", ".pgm"}
)

ImageSource = str | os.PathLike[str] | bytes | BinaryIO | Image.Image


def is_image_name(path: str | os.PathLike[str]) -> bool:
    """True when the file name has an image extension ursa looks at."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def describe_source(source: ImageSource) -> str:
    """How errors name ``source``: its path, or what kind of data it is."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, Image.Image):
        return "<PIL image>"
    if isinstance(source, bytes):
        return f"<{len(source)} bytes>"
    return str(getattr(source, "name", "<file object>"))


def bytes_per_pixel(mode: str) -> int:
    """Bytes Pillow holds per pixel of an image in ``mode``."""
    if mode in _ONE_BYTE_MODES:
        return 1
    return 2 if mode in _SIXTEEN_BIT_MODES else 4


def decoded_bytes(image: Image.Image) -> int:
    """Memory the decoded pixels of ``image`` take: width × height × bytes per pixel,
    from the header alone (nothing is decoded)."""
    return image.width * image.height * bytes_per_pixel(image.mode)


def open_image(
    source: ImageSource,
    *,
    max_pixels: int = MAX_PIXELS,
    draft: int | None = None,
    max_decoded_bytes: int | None = None,
) -> Image.Image:
    """Decode ``source`` fully and return an 8-bit RGB image, the right way up.

    ``source`` may be a path, raw bytes, a binary file object or a PIL image.
    Raises :class:`ImageError` naming the source and the reason when it is not a
    readable image, has more than ``max_pixels`` pixels or, when ``max_decoded_bytes``
    is given, would take more than that many bytes decoded (:func:`decoded_bytes`:
    a 16-bit image costs twice, an RGBA one four times its pixel count).

    ``draft`` lets a JPEG decode at a reduced scale (1/2, 1/4 or 1/8, keeping at
    least ``draft`` pixels a side; libjpeg scales while it decodes): every byte is
    still read, so a corrupt or truncated file still fails, at a fraction of the
    cost. Folder scans use it to check files; validation and serving use it with
    the model's input size (see ``PreprocessConfig.reduced_decode``), so both see
    the same pixels.
    """
    name = describe_source(source)
    if isinstance(source, Image.Image):
        return to_rgb(source, name=name, max_pixels=max_pixels)
    image = _open_header(source, name, max_pixels, draft, max_decoded_bytes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()  # full decode: truncated files fail here
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise ImageError(name, f"corrupt or truncated image ({error})") from None
    except Image.DecompressionBombError as error:
        raise ImageError(name, f"decompression bomb refused: {error}") from None
    # Each step rebinds ``image``, so the previous picture is freed as soon as the next
    # one exists: a 16-bit picture is gone before its RGB copy is made.
    mode = image.mode
    try:
        image = _upright(image)
        image = _eight_bit(image)
        return _rgb(image)
    except (OSError, ValueError) as error:  # a mode Pillow cannot convert (premultiplied La)
        raise ImageError(name, f"its {mode} pixels cannot be converted to RGB ({error})") from None


def check_image_size(
    source: ImageSource,
    *,
    max_pixels: int = MAX_PIXELS,
    draft: int | None = None,
    max_decoded_bytes: int | None = None,
) -> int:
    """Raise :class:`ImageError` when ``source``'s header says it is over ``max_pixels``
    or, decoded (with ``draft``, as :func:`open_image` would), over ``max_decoded_bytes``;
    else return what it will take decoded (:func:`decoded_bytes`; 0 when the header
    cannot be read).

    Reads the header only. What the header cannot tell (not an image, corrupt) is left
    for :func:`open_image` to report, so a caller may run this first and open after.
    """
    if isinstance(source, Image.Image):
        return decoded_bytes(source)
    name = describe_source(source)
    stream = None if isinstance(source, (str, os.PathLike, bytes)) else source
    position = None if stream is None else stream.tell()
    try:
        return decoded_bytes(_open_header(source, name, max_pixels, draft, max_decoded_bytes))
    except ImageError as error:
        if "limit" in error.reason:
            raise
        return 0
    finally:
        if stream is not None and position is not None:
            stream.seek(position)


def _open_header(
    source: str | os.PathLike[str] | bytes | BinaryIO,
    name: str,
    max_pixels: int,
    draft: int | None,
    max_decoded_bytes: int | None,
) -> Image.Image:
    """``source`` opened (header read, pixels not yet decoded) and checked against the limits."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImageError(name, "no such file")
        if path.stat().st_size == 0:
            raise ImageError(name, "the file is empty (0 bytes)")
        data: BinaryIO = io.BytesIO(path.read_bytes())
    elif isinstance(source, bytes):
        if not source:
            raise ImageError(name, "no image data (0 bytes)")
        data = io.BytesIO(source)
    else:
        data = source
    try:
        with warnings.catch_warnings():
            # Pillow warns (not raises) between its limit and twice its limit; we
            # enforce our own limit from the header instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(data)
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(
                    name,
                    f"{width}×{height} is {width * height:,} pixels, over the limit of "
                    f"{max_pixels:,}; resize it first or raise max_pixels if you trust it",
                )
            if width == 0 or height == 0:
                raise ImageError(name, f"the image has no pixels ({width}×{height})")
            if draft is not None and image.format == "JPEG":
                image.draft("RGB", (draft, draft))  # sets the decode scale; decodes nothing
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(name, "not an image Pillow can identify (wrong type or corrupt)") from None
    except Image.DecompressionBombError as error:
        raise ImageError(name, f"decompression bomb refused: {error}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise ImageError(name, f"corrupt or truncated image ({error})") from None
    if max_decoded_bytes is not None and decoded_bytes(image) > max_decoded_bytes:
        raise ImageError(
            name,
            f"{image.width}×{image.height} {image.mode} decodes to {decoded_bytes(image):,} "
            f"bytes, over the limit of {max_decoded_bytes:,} bytes; send a smaller image or "
            f"raise max_decoded_bytes if you trust it",
        )
    return image


def to_rgb(
    image: Image.Image, *, name: str = "<image>", max_pixels: int = MAX_PIXELS
) -> Image.Image:
    """Apply EXIF orientation and convert any mode to 8-bit RGB (transparency onto white).

    Always a new image: ``image`` itself is left as it was.
    """
    if image.width * image.height > max_pixels:
        raise ImageError(
            name, f"{image.width}×{image.height} is over the pixel limit of {max_pixels:,}"
        )
    converted = _rgb(_eight_bit(_upright(image)))
    return converted.copy() if converted is image else converted


def _upright(image: Image.Image) -> Image.Image:
    """``image`` turned the way its EXIF orientation says (first frame of an animation)."""
    if getattr(image, "is_animated", False):
        image.seek(0)
    # ImageOps.exif_transpose copies the whole image even when there is nothing to turn,
    # so it is called only for an orientation other than 1. A broken EXIF block must not
    # lose an otherwise good image.
    with contextlib.suppress(Exception):
        if image.getexif().get(ExifTags.Base.Orientation, 1) not in (1, None):
            return ImageOps.exif_transpose(image)
    return image


def _eight_bit(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float grayscale scaled to 8-bit gray; other modes as they are."""
    if image.mode in _SIXTEEN_BIT_MODES or image.mode in ("I", "F"):
        return _high_depth_to_l(image)
    return image


def _rgb(image: Image.Image) -> Image.Image:
    """An 8-bit image of any mode as RGB, transparency composited onto white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("LA", "PA", "RGBa", "La"):
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode == "RGBA":
        # Paste onto white through the alpha band: one RGB image, where compositing two
        # RGBA images took three more full-size copies.
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image)
        return background
    return image.convert("RGB")


def _high_depth_to_l(image: Image.Image) -> Image.Image:
    """Scale a 16-bit / 32-bit / float grayscale image to 8 bits over its own range
    (16-bit: over 0 … 65535), rounding half up, a strip of rows at a time."""
    if image.mode in _SIXTEEN_BIT_MODES:
        low, high = 0.0, 65535.0
    else:
        low, high = _finite_extrema(image)
    span = high - low if high > low else 1.0
    width, height = image.size
    out = np.empty((height, width), dtype=np.uint8)
    rows = max(1, _STRIP_PIXELS // width)
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        strip = np.asarray(image.crop((0, top, width, bottom)), dtype=np.float64)
        if image.mode == "F":
            strip = np.nan_to_num(strip, nan=low, posinf=high, neginf=low)
        strip -= low  # the same float64 steps as one whole-image expression would take
        strip /= span
        strip *= 255.0
        strip += 0.5
        np.clip(strip, 0, 255, out=strip)
        out[top:bottom] = strip  # truncation after +0.5: round half up
    return Image.fromarray(out, mode="L")


def _finite_extrema(image: Image.Image) -> tuple[float, float]:
    """(min, max) of a 32-bit or float image, leaving out NaN and infinities."""
    low, high = (float(v) for v in image.getextrema())  # type: ignore[arg-type]
    if np.isfinite(low) and np.isfinite(high):
        return low, high
    width, height = image.size
    rows = max(1, _STRIP_PIXELS // width)
    low, high = np.inf, -np.inf
    for top in range(0, height, rows):
        strip = np.asarray(image.crop((0, top, width, min(height, top + rows))))
        finite = strip[np.isfinite(strip)]
        if finite.size:
            low, high = min(low, float(finite.min())), max(high, float(finite.max()))
    return (low, high) if low <= high else (0.0, 1.0)


class DecodeBudget:
    """Bounds the decoded bytes of all images being decoded at once, whatever the number
    of decoder threads: an image waits (in its thread) until its bytes fit in ``limit``.

    One image is always let through when nothing else is decoding, so an image larger
    than the whole budget (but within ``max_decoded_bytes``) is slow, never stuck.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._room = threading.Condition()

    @contextlib.contextmanager
    def hold(self, cost: int) -> Iterator[None]:
        with self._room:
            self._room.wait_for(lambda: self.used == 0 or self.used + cost <= self.limit)
            self.used += cost
        try:
            yield
        finally:
            with self._room:
                self.used -= cost
                self._room.notify_all()
