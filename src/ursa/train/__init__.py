"""Training: the Learner, the loop, one-cycle schedules, lr_find, checkpoints, progress,
and the typed training config.

The names below load on first use, so ``ursa.train.config`` (what the CLI's flags are made
from) imports without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ursa.train.config import TrainConfig
    from ursa.train.learner import Learner, TrainingInterrupted
    from ursa.train.loop import FitOptions, fit
    from ursa.train.lr_find import LRFindResult
    from ursa.train.metrics import ClassScores, Metrics
    from ursa.train.progress import EpochRecord, PrintLogger, SilentLogger, TrainingLogger

_LAZY = {
    "ClassScores": "ursa.train.metrics",
    "EpochRecord": "ursa.train.progress",
    "FitOptions": "ursa.train.loop",
    "LRFindResult": "ursa.train.lr_find",
    "Learner": "ursa.train.learner",
    "Metrics": "ursa.train.metrics",
    "PrintLogger": "ursa.train.progress",
    "SilentLogger": "ursa.train.progress",
    "TrainConfig": "ursa.train.config",
    "TrainingInterrupted": "ursa.train.learner",
    "TrainingLogger": "ursa.train.progress",
    "fit": "ursa.train.loop",
}
__all__ = [
    "ClassScores",
    "EpochRecord",
    "FitOptions",
    "LRFindResult",
    "Learner",
    "Metrics",
    "PrintLogger",
    "SilentLogger",
    "TrainConfig",
    "TrainingInterrupted",
    "TrainingLogger",
    "fit",
]
assert sorted(__all__) == sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ursa.train' has no attribute {name!r}")
