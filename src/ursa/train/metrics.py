"""Validation metrics from logits: accuracy, per-class precision / recall / F1, macro-F1, top-k.

Computed once per epoch over the whole validation set (never averaged over batches,
which would weigh a short last batch like a full one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

METRIC_NAMES = ("valid_loss", "error_rate", "accuracy", "macro_f1")
"""Metrics that early stopping and keep-best can watch."""

LOWER_IS_BETTER = frozenset({"valid_loss", "error_rate"})


@dataclass(frozen=True)
class ClassScores:
    """Precision, recall and F1 of one class on the validation set."""

    precision: float
    """Of the images predicted as this class, the fraction that are (NaN when none were)."""
    recall: float
    """Of the images of this class, the fraction found (NaN when there are none)."""
    f1: float
    """Harmonic mean of precision and recall (0 when both are 0, NaN when either is NaN)."""
    support: int
    """Validation images of this class."""


@dataclass(frozen=True)
class Metrics:
    """Validation results."""

    loss: float
    error_rate: float
    accuracy: float
    count: int
    """Validation images counted (each exactly once, also when gathered across processes)."""
    macro_f1: float = math.nan
    """Unweighted mean of the per-class F1 over classes with images (NaN when none)."""
    per_class: tuple[ClassScores, ...] = ()
    """Scores per class, in class-index order."""
    top_k: dict[int, float] = field(default_factory=dict)
    """Top-k accuracy for each k below the number of classes (k=3, 5 by default)."""

    def value(self, name: str) -> float:
        """The metric called ``name`` (one of :data:`METRIC_NAMES`)."""
        return {
            "valid_loss": self.loss,
            "error_rate": self.error_rate,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
        }[name]


def per_class_scores(
    predicted: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> tuple[ClassScores, ...]:
    """Precision, recall and F1 per class from predicted and true indices, both (N,)."""
    # confusion[i, j]: images of class i predicted as j
    confusion = torch.bincount(labels * num_classes + predicted, minlength=num_classes**2)
    confusion = confusion.reshape(num_classes, num_classes).double()
    hits = confusion.diag()
    predicted_counts, actual_counts = confusion.sum(dim=0), confusion.sum(dim=1)
    scores = []
    for c in range(num_classes):
        precision = float(hits[c] / predicted_counts[c]) if predicted_counts[c] else math.nan
        recall = float(hits[c] / actual_counts[c]) if actual_counts[c] else math.nan
        if math.isnan(precision) or math.isnan(recall):
            f1 = 0.0 if actual_counts[c] and not predicted_counts[c] else math.nan
        else:
            total = precision + recall
            f1 = 2 * precision * recall / total if total else 0.0
        scores.append(ClassScores(precision, recall, f1, int(actual_counts[c])))
    return tuple(scores)


def classification_metrics(
    logits: torch.Tensor,
    labels: torch.Tensor,
    loss: float,
    *,
    top_ks: Sequence[int] = (3, 5),
) -> Metrics:
    """Every metric from (N, C) logits and (N,) labels; ``loss`` is the mean loss over them."""
    count = len(labels)
    if count == 0:
        nan = math.nan
        return Metrics(loss=nan, error_rate=nan, accuracy=nan, count=0)
    num_classes = logits.shape[1]
    predicted = logits.argmax(dim=1)
    accuracy = float((predicted == labels).double().mean())
    per_class = per_class_scores(predicted, labels, num_classes)
    # Classes absent from the validation set have no recall; leave them out of the mean.
    f1s = [s.f1 for s in per_class if s.support > 0 and not math.isnan(s.f1)]
    top_k = {}
    for k in top_ks:
        if k < num_classes:
            top = logits.topk(k, dim=1).indices  # (N, k)
            top_k[k] = float((top == labels[:, None]).any(dim=1).double().mean())
    return Metrics(
        loss=loss,
        error_rate=1.0 - accuracy,
        accuracy=accuracy,
        count=count,
        macro_f1=sum(f1s) / len(f1s) if f1s else math.nan,
        per_class=per_class,
        top_k=top_k,
    )


def improved(name: str, value: float, best: float | None, min_delta: float = 0.0) -> bool:
    """Whether ``value`` of metric ``name`` beats ``best`` by more than ``min_delta``."""
    if math.isnan(value):
        return False
    if best is None:
        return True
    if name in LOWER_IS_BETTER:
        return value < best - min_delta
    return value > best + min_delta
