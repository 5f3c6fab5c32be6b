"""Training: the Learner, the loop, one-cycle schedules, lr_find, checkpoints, progress."""

from ursa.train.learner import Learner, TrainingInterrupted
from ursa.train.loop import FitOptions, fit
from ursa.train.lr_find import LRFindResult
from ursa.train.metrics import ClassScores, Metrics
from ursa.train.progress import EpochRecord, PrintLogger, SilentLogger, TrainingLogger

__all__ = [
    "ClassScores",
    "EpochRecord",
    "FitOptions",
    "LRFindResult",
    "Learner",
    "Metrics",
    "PrintLogger",
    "SilentLogger",
    "TrainingInterrupted",
    "TrainingLogger",
    "fit",
]
