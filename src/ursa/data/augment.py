"""The augmentation presets (``DataConfig.augment``) and their strengths. Torch-free: the
data settings check names here; the loaders and ``batch_augment`` apply them."""

from __future__ import annotations

from dataclasses import dataclass

from ursa.core.errors import ConfigError


@dataclass(frozen=True)
class AugmentSettings:
    """How strongly each training image is changed (fastai's ``aug_transforms`` defaults)."""

    flip: bool = True
    """Mirror left-right with probability 0.5."""
    max_rotate: float = 10.0
    """Rotate by up to this many degrees either way."""
    max_zoom: float = 1.1
    """Zoom in by a factor from 1 up to this, at a random centre."""
    max_warp: float = 0.2
    """Perspective warp: corners move by up to this fraction of the half-side."""
    max_lighting: float = 0.2
    """Brightness and contrast change by up to this fraction either way."""
    p_affine: float = 0.75
    """Probability of each of rotate, zoom and warp (drawn separately per image)."""
    p_lighting: float = 0.75
    """Probability of each of the brightness and contrast changes."""

    def __post_init__(self) -> None:
        problems = []
        for name in ("max_rotate", "max_warp", "max_lighting"):
            if not getattr(self, name) >= 0:
                problems.append(f"{name}={getattr(self, name)}: use 0 or more")
        if not self.max_lighting < 1:
            problems.append(f"max_lighting={self.max_lighting}: use less than 1, such as 0.2")
        if not self.max_warp < 1:
            problems.append(f"max_warp={self.max_warp}: use less than 1, such as 0.2")
        if not self.max_zoom >= 1:
            problems.append(f"max_zoom={self.max_zoom}: use 1 (no zoom) or more, such as 1.1")
        for name in ("p_affine", "p_lighting"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name}={getattr(self, name)}: use a probability from 0 to 1")
        if problems:
            raise ConfigError("invalid augmentation settings:\n  " + "\n  ".join(problems))


#: The named presets of ``DataConfig.augment``; None: no augmentation at all.
AUGMENT_PRESETS: dict[str, AugmentSettings | None] = {
    "default": AugmentSettings(),
    "no_flip": AugmentSettings(flip=False),
    "none": None,
}

#: Strengths that change nothing (for checking that the maps are exact).
IDENTITY = AugmentSettings(flip=False, max_rotate=0.0, max_zoom=1.0, max_warp=0.0, max_lighting=0.0)
