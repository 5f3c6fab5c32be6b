"""Training: the Learner, the loop, one-cycle schedules, progress reporting."""

from ursa.train.learner import Learner
from ursa.train.loop import Metrics, fit
from ursa.train.progress import EpochRecord, PrintLogger, SilentLogger, TrainingLogger

__all__ = [
    "EpochRecord",
    "Learner",
    "Metrics",
    "PrintLogger",
    "SilentLogger",
    "TrainingLogger",
    "fit",
]
