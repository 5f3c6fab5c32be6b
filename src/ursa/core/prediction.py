"""What a prediction is, the same from the Learner, a loaded bundle and the server. Torch-free."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Prediction:
    """One image's answer: the top class and every class's probability."""

    label: str
    """The most probable class name."""
    index: int
    """Its position in the model's class names."""
    probability: float
    """Its probability, 0–1."""
    probabilities: dict[str, float]
    """Every class name → probability, in the model's class order."""

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` most probable (class, probability) pairs, most probable first."""
        return sorted(self.probabilities.items(), key=lambda item: -item[1])[:k]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, C) logits, computed stably in float64."""
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def predictions_from_logits(logits: np.ndarray, class_names: Sequence[str]) -> list[Prediction]:
    """(N, C) logits → one :class:`Prediction` per row."""
    probabilities = softmax(logits)
    results = []
    for row in probabilities:
        index = int(row.argmax())
        results.append(
            Prediction(
                label=class_names[index],
                index=index,
                probability=float(row[index]),
                probabilities={name: float(p) for name, p in zip(class_names, row, strict=True)},
            )
        )
    return results
