"""What a finished training run should tell its user: near chance, or too few images to judge."""

from __future__ import annotations

import math

MIN_VALID_IMAGES = 20
"""Below this, one validation image is more than 5 points of error."""

CHANCE_MARGIN = 0.05
"""An error within this of chance's counts as near chance, however many images."""


def chance_error(num_classes: int) -> float:
    """The error of guessing uniformly: 1 - 1/classes."""
    return 1.0 - 1.0 / num_classes


def near_chance(error_rate: float, num_classes: int, valid_images: int) -> bool:
    """Whether ``error_rate`` on ``valid_images`` is no real evidence of learning: within
    :data:`CHANCE_MARGIN` of chance, or not above chance's accuracy by two standard errors
    of a guess (a one-sided binomial test at about 2 %)."""
    if valid_images <= 0 or math.isnan(error_rate):
        return False
    chance_accuracy = 1.0 / num_classes
    spread = math.sqrt(chance_accuracy * (1 - chance_accuracy) / valid_images)
    accuracy = 1.0 - error_rate
    return error_rate >= chance_error(num_classes) - CHANCE_MARGIN or (
        accuracy < chance_accuracy + 2 * spread
    )


def training_warnings(error_rate: float, num_classes: int, valid_images: int) -> list[str]:
    """The warnings a run ending at ``error_rate`` deserves, each with what to try."""
    warnings = []
    if 0 < valid_images < MIN_VALID_IMAGES:
        warnings.append(
            f"only {valid_images} validation images: one image is "
            f"{100 / valid_images:.0f} points of error, so the error rate is a rough guide; "
            f"add images (or a larger --valid-pct) before trusting it"
        )
    if near_chance(error_rate, num_classes, valid_images):
        warnings.append(
            f"validation error {100 * error_rate:.1f} % is close to chance "
            f"({100 * chance_error(num_classes):.1f} % for {num_classes} classes): the model "
            f"has learnt little. Check the labels (ursa show, ursa verify), add images, or "
            f"try more epochs (--epochs) or another backbone (--arch)"
        )
    return warnings
