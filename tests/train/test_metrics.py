from __future__ import annotations

import math

import pytest
import torch

from ursa.train.metrics import classification_metrics, improved, per_class_scores


def test_per_class_scores_match_hand_counts() -> None:
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    predicted = torch.tensor([0, 0, 1, 1, 0, 1])
    scores = per_class_scores(predicted, labels, 3)
    # class 0: 2 of 3 predicted "0" are right, 2 of 3 found
    assert scores[0].precision == pytest.approx(2 / 3) and scores[0].recall == pytest.approx(2 / 3)
    # class 1: predicted 3 times, right once; 1 of 2 found
    assert scores[1].precision == pytest.approx(1 / 3) and scores[1].recall == pytest.approx(0.5)
    assert scores[1].f1 == pytest.approx(2 * (1 / 3) * 0.5 / (1 / 3 + 0.5))
    # class 2: never predicted, never found: F1 0 (a miss), precision undefined
    assert math.isnan(scores[2].precision) and scores[2].recall == 0 and scores[2].f1 == 0
    assert [s.support for s in scores] == [3, 2, 1]


def test_classification_metrics_accuracy_macro_f1_and_top_k() -> None:
    logits = torch.tensor(
        [[3.0, 2.0, 1.0, 0.0], [0.0, 3.0, 2.0, 1.0], [1.0, 0.0, 3.0, 2.0], [3.0, 0.0, 1.0, 2.0]]
    )
    labels = torch.tensor([0, 2, 2, 1])
    metrics = classification_metrics(logits, labels, loss=0.5)
    assert metrics.accuracy == 0.5 and metrics.error_rate == 0.5 and metrics.count == 4
    assert metrics.top_k == {3: 0.75}  # the 4th image's class 1 is its lowest score
    f1s = [s.f1 for s in metrics.per_class if s.support]
    assert metrics.macro_f1 == pytest.approx(sum(f1s) / len(f1s))
    assert metrics.value("macro_f1") == metrics.macro_f1
    empty = classification_metrics(torch.empty(0, 0), torch.empty(0, dtype=torch.long), math.nan)
    assert empty.count == 0 and math.isnan(empty.accuracy)


def test_improved_knows_which_way_is_better() -> None:
    assert improved("valid_loss", 0.4, 0.5) and not improved("valid_loss", 0.5, 0.4)
    assert improved("accuracy", 0.9, 0.8) and not improved("accuracy", 0.81, 0.8, min_delta=0.05)
    assert improved("error_rate", 0.1, None) and not improved("accuracy", math.nan, None)
