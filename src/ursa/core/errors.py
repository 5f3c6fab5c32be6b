"""The errors a person can cause, each saying what happened and what to do.

Every error raised on user input is an :class:`UrsaError`. The CLI prints the
message and exits 1 (no traceback); the server answers with a 4xx and the
message.
"""

from __future__ import annotations


class UrsaError(Exception):
    """Base of every error a user can cause and act on."""


class ImageError(UrsaError):
    """A file is not an image ursa can read (corrupt, truncated, too large, not an image)."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class DataError(UrsaError):
    """A dataset folder, label or split that cannot be used as given."""


class WeightsError(UrsaError):
    """Pretrained weights that cannot be found or do not fit the architecture."""


class BundleError(UrsaError):
    """A `.ursa` bundle that is missing, corrupt, foreign or of an unknown schema."""


class ConfigError(UrsaError, ValueError):
    """Settings that do not make sense together; the message lists every problem."""
