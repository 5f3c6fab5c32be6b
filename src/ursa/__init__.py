"""ursa: from a folder of photos to a fine-tuned image classifier, offline.

``import ursa`` is cheap: the heavy parts (torch, timm) load on first use of
``ursa.ImageData``'s loaders, ``ursa.Learner`` or ``ursa.load``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ursa.core.errors import (
    BundleError,
    ConfigError,
    DataError,
    ImageError,
    UrsaError,
    WeightsError,
)
from ursa.core.prediction import Prediction
from ursa.core.version import __version__

if TYPE_CHECKING:
    from ursa.data.core import ImageData
    from ursa.export.model import Model, load
    from ursa.interpret.interpretation import Interpretation
    from ursa.train.learner import Learner

__all__ = [
    "BundleError",
    "ConfigError",
    "DataError",
    "ImageData",
    "ImageError",
    "Interpretation",
    "Learner",
    "Model",
    "Prediction",
    "UrsaError",
    "WeightsError",
    "__version__",
    "load",
]

_LAZY = {
    "ImageData": ("ursa.data.core", "ImageData"),
    "Interpretation": ("ursa.interpret.interpretation", "Interpretation"),
    "Learner": ("ursa.train.learner", "Learner"),
    "Model": ("ursa.export.model", "Model"),
    "load": ("ursa.export.model", "load"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'ursa' has no attribute {name!r}")
