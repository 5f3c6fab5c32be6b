"""Open images safely and the same way everywhere: training, validation, predict, serve.

Torch-free on purpose: the inference server uses this module too.

What "safely" means here:

* a pixel-count limit, checked from the header before any pixel is decoded,
  so a decompression bomb costs nothing;
* a full decode, so a truncated or corrupt file fails here and not half-way
  through an epoch;
* EXIF orientation applied, so a phone photo is the right way up;
* every mode (palette, LA, RGBA, CMYK, 16-bit, float, grayscale) converted to
  8-bit RGB, transparency composited onto white;
* any failure raised as :class:`~ursa.errors.ImageError` naming the file and the reason.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ursa.errors import ImageError

#: Default limit on width × height (about a 13,000 × 13,000 image).
MAX_PIXELS = 178_956_970

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


def open_image(
    source: ImageSource, *, max_pixels: int = MAX_PIXELS, draft: int | None = None
) -> Image.Image:
    """Decode ``source`` fully and return an 8-bit RGB image, the right way up.

    ``source`` may be a path, raw bytes, a binary file object or a PIL image.
    Raises :class:`ImageError` naming the source and the reason when it is not a
    readable image or has more than ``max_pixels`` pixels.

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
                image.draft("RGB", (draft, draft))
            image.load()  # full decode: truncated files fail here
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(name, "not an image Pillow can identify (wrong type or corrupt)") from None
    except Image.DecompressionBombError as error:
        raise ImageError(name, f"decompression bomb refused: {error}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise ImageError(name, f"corrupt or truncated image ({error})") from None
    return to_rgb(image, name=name, max_pixels=max_pixels)


def to_rgb(
    image: Image.Image, *, name: str = "<image>", max_pixels: int = MAX_PIXELS
) -> Image.Image:
    """Apply EXIF orientation and convert any mode to 8-bit RGB (transparency onto white)."""
    if image.width * image.height > max_pixels:
        raise ImageError(
            name, f"{image.width}×{image.height} is over the pixel limit of {max_pixels:,}"
        )
    # A broken EXIF block must not lose an otherwise good image.
    with contextlib.suppress(Exception):
        image = ImageOps.exif_transpose(image) or image
    if getattr(image, "is_animated", False):
        image.seek(0)
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        image = _high_depth_to_l(image)
        mode = "L"
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "CMYK":
        return image.convert("RGB")
    return image.convert("RGB")


def _high_depth_to_l(image: Image.Image) -> Image.Image:
    """Scale a 16-bit / 32-bit / float grayscale image to 8 bits over its own range."""
    array = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16"):
        low, high = 0.0, 65535.0
    else:
        low, high = float(array.min()), float(array.max())
    span = high - low if high > low else 1.0
    scaled = np.clip((array - low) / span * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(scaled, mode="L")
