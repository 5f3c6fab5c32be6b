from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ursa.interpret import metrics


def test_confusion_matrix_and_per_class_scores_by_hand() -> None:
    # actual:    a a a a b b c
    # predicted: a a b b b b b     (c is never predicted)
    targets = np.array([0, 0, 0, 0, 1, 1, 2])
    predictions = np.array([0, 0, 1, 1, 1, 1, 1])
    matrix = metrics.confusion_matrix(targets, predictions, 3)
    assert matrix.tolist() == [[2, 2, 0], [0, 2, 0], [0, 1, 0]]
    a, b, c, macro, weighted = metrics.per_class_metrics(matrix, ["a", "b", "c"])
    assert (a.precision, a.recall, a.support) == (1.0, 0.5, 4)
    assert a.f1 == pytest.approx(2 / 3)
    assert (b.precision, b.recall, b.support) == (pytest.approx(0.4), 1.0, 2)
    assert b.f1 == pytest.approx(2 * 0.4 / 1.4)
    assert math.isnan(c.precision) and math.isnan(c.f1)  # never predicted: unknown, not 0
    assert c.recall == 0.0 and c.support == 1
    assert macro.precision == pytest.approx((1.0 + 0.4 + 0.0) / 3)  # unknown counts as 0
    assert macro.recall == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert weighted.recall == pytest.approx(4 / 7)  # = accuracy
    assert weighted.support == 7
    assert metrics.row_normalize(matrix)[0].tolist() == [0.5, 0.5, 0.0]


def test_most_confused_sorted_and_filtered() -> None:
    matrix = np.array([[5, 3, 1], [0, 4, 3], [2, 0, 6]])
    pairs = metrics.most_confused(matrix, ["a", "b", "c"])
    assert [(p.actual, p.predicted, p.count) for p in pairs] == [
        ("a", "b", 3), ("b", "c", 3), ("c", "a", 2), ("a", "c", 1),
    ]  # fmt: skip
    assert len(metrics.most_confused(matrix, ["a", "b", "c"], min_val=3)) == 2


def test_losses_match_torch() -> None:
    logits = np.random.default_rng(0).normal(0, 5, size=(16, 4))
    targets = np.arange(16) % 4
    expected = torch.nn.functional.cross_entropy(
        torch.from_numpy(logits), torch.from_numpy(targets), reduction="none"
    )
    assert np.allclose(metrics.cross_entropy(logits, targets), expected.numpy())
    assert np.allclose(metrics.softmax(logits).sum(axis=1), 1.0)
    assert np.isfinite(metrics.softmax(np.array([[1000.0, 0.0]]))).all()


def test_calibration_error_of_known_predictions() -> None:
    # Four images at confidence 0.9 with 2 right; four at 0.6 with 3 right.
    probabilities = np.array([[0.9, 0.1]] * 4 + [[0.6, 0.4]] * 4)
    targets = np.array([0, 0, 1, 1, 0, 0, 0, 1])
    result = metrics.calibration(probabilities, targets, bins=10)
    assert result.counts.sum() == 8 and result.counts[8] == 4 and result.counts[5] == 4
    assert result.accuracy[8] == pytest.approx(0.5) and result.confidence[8] == pytest.approx(0.9)
    assert result.ece == pytest.approx(0.5 * 0.4 + 0.5 * 0.15)
    perfect = metrics.calibration(np.array([[1.0, 0.0]] * 3), np.array([0, 0, 0]))
    assert perfect.ece == pytest.approx(0.0)
