"""The validation-time transform, in PIL + numpy, shared by training and serving.

Validation, ``Learner.predict``, ``ursa.load(...).predict`` and the server all
call :func:`preprocess`, so a file gives the same tensor everywhere. It needs
no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
from PIL import Image

from ursa.core.errors import ConfigError
from ursa.core.imageio import MAX_PIXELS, ImageSource
from ursa.core.sources import IMAGE_INPUT, InputSource, source_from_dict

ResizeMethod = Literal["crop", "pad", "squish"]
Interpolation = Literal["bicubic", "bilinear", "nearest"]
PadMode = Literal["zeros", "border", "reflection"]

RESIZE_METHODS: tuple[ResizeMethod, ...] = get_args(ResizeMethod)
PAD_MODES: tuple[PadMode, ...] = get_args(PadMode)
_NUMPY_PAD = {"border": "edge", "reflection": "reflect"}
_PIL_FILTERS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}


#: Input sides a bundle may ask for: a 12,000 px side would make one small JPEG a
#: 1.7 GB array before the model even runs.
MIN_SIZE, MAX_SIZE = 8, 2048
#: Smallest std a bundle may divide by (a tinier one turns pixels into inf and NaN).
MIN_STD = 1e-3


def _three_numbers(value: object) -> tuple[float, float, float] | None:
    """``value`` as three finite floats, or None when it is not that."""
    if not isinstance(value, list | tuple) or len(value) != 3:
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        return None
    numbers = tuple(float(v) for v in value)
    if not all(math.isfinite(v) for v in numbers):
        return None
    return numbers  # type: ignore[return-value]


def resize_problems(size: object, resize: object, pad_mode: object) -> list[str]:
    """What is wrong with an input side, resize method and pad mode, one line each (the
    settings checks of the data, of training and of a bundle's preprocessing all use it)."""
    problems = []
    if type(size) is not int or not MIN_SIZE <= size <= MAX_SIZE:
        problems.append(
            f"size={size!r}: use a whole number of pixels from {MIN_SIZE} to {MAX_SIZE}"
        )
    if resize not in RESIZE_METHODS:
        problems.append(f"resize={resize!r}: use one of {', '.join(RESIZE_METHODS)}")
    if pad_mode not in PAD_MODES:
        problems.append(f"pad_mode={pad_mode!r}: use one of {', '.join(PAD_MODES)}")
    return problems


@dataclass(frozen=True)
class PreprocessConfig:
    """How an RGB image becomes the model's input tensor (C, H, W) float32."""

    size: int = 224
    """Side of the square input, in pixels."""
    resize: ResizeMethod = "crop"
    """crop: scale the short side to `size`, cut the centre; pad: scale the long side
    to `size`, fill the rest (see `pad_mode`); squish: scale both sides to `size`,
    ignoring aspect."""
    pad_mode: PadMode = "zeros"
    """How resize="pad" fills the margin: zeros (black), border (the edge pixels
    repeated) or reflection (the image mirrored at its edge)."""
    interpolation: Interpolation = "bicubic"
    """Resampling filter used when resizing."""
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    """Per-channel mean subtracted after scaling pixels to [0, 1]."""
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    """Per-channel standard deviation divided by after the mean."""
    input: InputSource = field(default=IMAGE_INPUT)
    """What the files are (images, audio clips, raw bytes) and how one becomes a picture."""
    reduced_decode: bool = True
    """Decode JPEGs at a reduced scale (1/2, 1/4, 1/8) when that still leaves `size`
    pixels a side, before resizing: 2-3x less decoding for the same resize. Bundles
    written before this setting existed decode in full (False)."""

    def __post_init__(self) -> None:
        if isinstance(self.input, dict):  # as to_dict() writes it
            object.__setattr__(self, "input", source_from_dict(self.input))
        problems = resize_problems(self.size, self.resize, self.pad_mode)
        if self.interpolation not in _PIL_FILTERS:
            problems.append(
                f"interpolation={self.interpolation!r}: use one of {', '.join(_PIL_FILTERS)}"
            )
        if len(self.mean) != 3 or len(self.std) != 3:
            problems.append("mean and std need three values each (R, G, B)")
        elif not all(math.isfinite(m) for m in self.mean):
            problems.append(f"mean={self.mean!r}: every value must be a finite number")
        elif not all(MIN_STD <= s <= 1 / MIN_STD for s in self.std):
            problems.append(
                f"std={self.std!r}: every value must be from {MIN_STD} to {1 / MIN_STD:g}"
            )
        if problems:
            raise ConfigError("invalid preprocessing settings:\n  " + "\n  ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "resize": self.resize,
            "pad_mode": self.pad_mode,
            "interpolation": self.interpolation,
            "mean": list(self.mean),
            "std": list(self.std),
            "input": self.input.to_dict(),
            "reduced_decode": self.reduced_decode,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PreprocessConfig:
        """Read a bundle's ``preprocess`` record; a :class:`ConfigError` names what is wrong."""
        problems = []
        size = values.get("size")
        if type(size) is not int or not MIN_SIZE <= size <= MAX_SIZE:
            problems.append(
                f"size={size!r}: a whole number of pixels from {MIN_SIZE} to {MAX_SIZE}"
            )
        for key in ("resize", "interpolation", "pad_mode"):
            if not isinstance(values.get(key, "zeros"), str):
                problems.append(f"{key}={values.get(key)!r}: not a name")
        stats = {key: _three_numbers(values.get(key)) for key in ("mean", "std")}
        for key, numbers in stats.items():
            if numbers is None:
                problems.append(f"{key}={values.get(key)!r}: three finite numbers (R, G, B)")
        std = stats["std"]
        if std is not None and not all(MIN_STD <= s <= 1 / MIN_STD for s in std):
            problems.append(f"std={list(std)!r}: each from {MIN_STD} to {1 / MIN_STD:g}")
        source = values.get("input")
        if source is not None and not isinstance(source, dict):
            problems.append(f"input={source!r}: an object naming the input kind")
        decode = values.get("reduced_decode", False)
        if not isinstance(decode, bool):
            problems.append(f"reduced_decode={decode!r}: true or false")
        if problems:
            raise ConfigError("invalid preprocessing settings: " + "; ".join(problems))
        assert isinstance(size, int) and stats["mean"] is not None and std is not None
        return cls(
            size=size,
            resize=values["resize"],
            pad_mode=values.get("pad_mode", "zeros"),
            interpolation=values["interpolation"],
            mean=stats["mean"],
            std=std,
            input=source_from_dict(source),
            reduced_decode=decode,
        )


def resize_image(
    image: Image.Image, size: int, method: str, interpolation: str, pad_mode: str = "zeros"
) -> Image.Image:
    """Resize an RGB image to exactly ``size`` × ``size`` by ``method``."""
    resample = _PIL_FILTERS[interpolation]
    width, height = image.size
    if method == "squish":
        return image.resize((size, size), resample)
    if method == "crop":
        # Resample only the centre square of the source: scaling the whole image first
        # would turn a 1 × 50,000 pixel file into a size × 50,000·size intermediate.
        side = min(width, height)
        left, top = (width - side) / 2, (height - side) / 2
        return image.resize((size, size), resample, box=(left, top, left + side, top + side))
    if method == "pad":
        scale = size / max(width, height)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        resized = image.resize((new_w, new_h), resample)
        left, top = (size - new_w) // 2, (size - new_h) // 2
        if pad_mode == "zeros":
            canvas = Image.new("RGB", (size, size), (0, 0, 0))
            canvas.paste(resized, (left, top))
            return canvas
        if pad_mode not in _NUMPY_PAD:
            raise ConfigError(f"pad_mode={pad_mode!r}: use one of {', '.join(PAD_MODES)}")
        pixels = np.asarray(resized)
        # Reflection needs two pixels to mirror; a one-pixel-thin image repeats its edge.
        mode = _NUMPY_PAD[pad_mode] if min(new_w, new_h) > 1 else "edge"
        widths = ((top, size - new_h - top), (left, size - new_w - left), (0, 0))
        return Image.fromarray(np.pad(pixels, widths, mode=mode))  # type: ignore[call-overload]
    raise ConfigError(f"resize={method!r}: use one of {', '.join(RESIZE_METHODS)}")


def normalize(array: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """(H, W, 3) uint8 → (3, H, W) float32, scaled to [0, 1] then standardised."""
    mean = np.asarray(config.mean, dtype=np.float32)
    scale = np.asarray([1.0 / (255.0 * s) for s in config.std], dtype=np.float32)
    # One output buffer, updated in place: no temporaries (about 10x faster at 224 px).
    chw = np.empty((3, *array.shape[:2]), dtype=np.float32)
    chw[...] = array.transpose(2, 0, 1)
    chw -= (mean * 255.0)[:, None, None]
    chw *= scale[:, None, None]
    return chw


def resize_for_model(image: Image.Image, config: PreprocessConfig) -> Image.Image:
    """The deterministic (validation / inference) resize of ``config``."""
    return resize_image(image, config.size, config.resize, config.interpolation, config.pad_mode)


def preprocess(image: Image.Image, config: PreprocessConfig) -> np.ndarray:
    """An RGB PIL image → the model's input, (3, size, size) float32."""
    return normalize(np.asarray(resize_for_model(image, config), dtype=np.uint8), config)


def load_input(
    source: ImageSource, config: PreprocessConfig, *, max_pixels: int = MAX_PIXELS
) -> Image.Image:
    """Open a file the way ``config`` says (image, audio clip or bytes): an RGB picture."""
    return config.input.open(source, max_pixels=max_pixels, min_size=decode_size(config))


def decode_size(config: PreprocessConfig) -> int | None:
    """The ``min_size`` validation and serving open files with: the input side when
    ``reduced_decode`` is on, else None (full size)."""
    return config.size if config.reduced_decode else None


def prepare_input(
    source: ImageSource, config: PreprocessConfig, *, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """Open and preprocess one file: the model's input, (3, size, size) float32.

    Validation, ``predict``, export checks and the server all call this, so one
    file gives one tensor everywhere.
    """
    return preprocess(load_input(source, config, max_pixels=max_pixels), config)
