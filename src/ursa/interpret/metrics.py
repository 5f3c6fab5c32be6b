"""Classification metrics from predictions, in numpy: confusion matrix, per-class scores,
most confused pairs, calibration. No torch: these work on any model's outputs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClassMetrics:
    """Scores for one class (or an average over classes)."""

    name: str
    precision: float
    """Of the images predicted as this class, the fraction that are (NaN when none were)."""
    recall: float
    """Of the images of this class, the fraction found (NaN when there are none)."""
    f1: float
    """Harmonic mean of precision and recall (NaN when either is NaN, 0 when both are 0)."""
    support: int
    """Images of this class in the split."""


@dataclass(frozen=True)
class Confusion:
    """One off-diagonal cell of the confusion matrix."""

    actual: str
    predicted: str
    count: int


@dataclass(frozen=True)
class Calibration:
    """How well the model's confidence matches its accuracy.

    ``edges`` has ``bins + 1`` entries; bin ``i`` holds the images whose top
    probability lies in ``(edges[i], edges[i + 1]]``.
    """

    edges: np.ndarray
    confidence: np.ndarray
    """Mean top probability per bin (NaN for empty bins)."""
    accuracy: np.ndarray
    """Fraction right per bin (NaN for empty bins)."""
    counts: np.ndarray
    """Images per bin."""
    ece: float
    """Expected calibration error: sum over bins of |accuracy - confidence| × share of images."""


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, C) logits, stable for large values."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exps = np.exp(shifted)
    return exps / exps.sum(axis=1, keepdims=True)


def cross_entropy(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-image cross-entropy loss, (N,), as ``torch.nn.CrossEntropyLoss`` computes it."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(targets)), targets]


def confusion_matrix(targets: np.ndarray, predictions: np.ndarray, classes: int) -> np.ndarray:
    """(classes, classes) counts: row = actual class, column = predicted class."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (targets, predictions), 1)
    return matrix


def row_normalize(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its total (the recall view); rows without images stay 0."""
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)


def per_class_metrics(matrix: np.ndarray, class_names: Sequence[str]) -> list[ClassMetrics]:
    """Precision, recall, F1 and support of each class, then the macro and weighted averages."""
    true_positive = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    support = matrix.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, true_positive / predicted, np.nan)
        recall = np.where(support > 0, true_positive / support, np.nan)
        both = precision + recall
        f1 = np.where(both > 0, 2 * precision * recall / both, np.where(both == 0, 0.0, np.nan))
    rows = [
        ClassMetrics(name, float(p), float(r), float(f), int(s))
        for name, p, r, f, s in zip(class_names, precision, recall, f1, support, strict=True)
    ]
    present = support > 0
    total = int(support.sum())
    if present.any():
        # scikit-learn's convention: a class never predicted counts as precision 0 in averages
        precision_0 = np.nan_to_num(precision[present])
        f1_0 = np.nan_to_num(f1[present])
        weights = support[present] / total
        rows.append(
            ClassMetrics(
                "macro average",
                float(precision_0.mean()),
                float(recall[present].mean()),
                float(f1_0.mean()),
                total,
            )
        )
        rows.append(
            ClassMetrics(
                "weighted average",
                float((precision_0 * weights).sum()),
                float((recall[present] * weights).sum()),
                float((f1_0 * weights).sum()),
                total,
            )
        )
    return rows


def most_confused(
    matrix: np.ndarray, class_names: Sequence[str], min_val: int = 1
) -> list[Confusion]:
    """Off-diagonal cells with at least ``min_val`` images, most frequent first (as fastai's)."""
    actual, predicted = np.nonzero(matrix)
    pairs = [
        Confusion(class_names[int(a)], class_names[int(p)], int(matrix[a, p]))
        for a, p in zip(actual, predicted, strict=True)
        if a != p and matrix[a, p] >= min_val
    ]
    return sorted(pairs, key=lambda c: (-c.count, c.actual, c.predicted))


def calibration(probabilities: np.ndarray, targets: np.ndarray, bins: int = 10) -> Calibration:
    """Reliability bins over the top probability, and the expected calibration error."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == targets
    # bin i holds (edges[i], edges[i+1]]; a confidence of exactly 0 cannot happen (softmax > 0)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_confidence = np.bincount(which, weights=confidence, minlength=bins) / counts
        mean_accuracy = np.bincount(which, weights=correct, minlength=bins) / counts
    total = max(len(targets), 1)
    gaps = np.abs(np.nan_to_num(mean_accuracy) - np.nan_to_num(mean_confidence))
    ece = float((gaps * counts).sum() / total)
    return Calibration(edges, mean_confidence, mean_accuracy, counts, ece)
