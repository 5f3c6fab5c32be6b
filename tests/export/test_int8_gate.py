"""The int8 gate on constructed predictions: a real drop refused, one flipped image accepted."""

from __future__ import annotations

import random

import pytest
from scipy.stats import binomtest

from ursa.core.errors import ConfigError
from ursa.export.gate import GateRule, binomial_tail, drop_interval, judge, pick
from ursa.export.onnx import ExportError
from ursa.export.quantize import check_drop


def _predictions(
    images: int, fp32_only: int, int8_only: int, both_wrong: int = 0
) -> tuple[list[int], list[int], list[int]]:
    """(labels, fp32 top-1, int8 top-1) with the given discordant counts; classes 0..2."""
    labels = [index % 3 for index in range(images)]
    fp32, int8 = list(labels), list(labels)
    wrong = [(label + 1) % 3 for label in labels]
    for index in range(fp32_only):
        int8[index] = wrong[index]
    for index in range(fp32_only, fp32_only + int8_only):
        fp32[index] = wrong[index]
    for index in range(fp32_only + int8_only, fp32_only + int8_only + both_wrong):
        fp32[index] = int8[index] = wrong[index]
    return labels, fp32, int8


def test_one_flipped_image_out_of_60_is_accepted() -> None:
    # 1.7 points: the old fixed 1-point limit refused this model.
    result = check_drop(*_predictions(60, fp32_only=1, int8_only=0, both_wrong=6))
    assert result.accepted and result.drop_points == pytest.approx(100 / 60, abs=1e-3)
    assert result.agreement == pytest.approx(59 / 60) and result.p_value == 0.5
    assert "agrees with fp32 on 59/60" in result.summary()


def test_a_real_drop_is_refused_with_what_was_measured() -> None:
    labels, fp32, int8 = _predictions(60, fp32_only=8, int8_only=1)
    with pytest.raises(ExportError) as caught:
        check_drop(labels, fp32, int8, method="sensitivity")
    message = str(caught.value)
    assert message.startswith("int8 model refused (sensitivity): 60 validation images")
    assert "agrees with fp32 on 51/60 (85.0%)" in message
    assert "98.33% (fp32) → 86.67% (int8), drop 11.67 points" in message
    assert "fp32 right where int8 wrong on 8, the reverse on 1" in message
    assert "McNemar exact p = 0.0195" in message  # P(X >= 8), X ~ Bin(9, 1/2) = 10/512
    assert "p < 0.05 and the drop is more than one image and more than 1 points" in message
    assert "\n" not in message


def test_a_drop_that_chance_explains_is_accepted_though_past_the_limit() -> None:
    # 4 of 60 images (6.7 points) the other way: p = 1/16 is not below 0.05.
    assert judge(*_predictions(60, fp32_only=4, int8_only=0)).accepted
    assert not judge(*_predictions(60, fp32_only=5, int8_only=0)).accepted  # p = 1/32


def test_a_significant_drop_within_the_limit_is_accepted() -> None:
    labels, fp32, int8 = _predictions(1000, fp32_only=9, int8_only=0)  # p = 0.002, 0.9 points
    result = judge(labels, fp32, int8)
    assert result.p_value < 0.01 and result.accepted
    assert not judge(labels, fp32, int8, GateRule(max_drop_points=0.5)).accepted


def test_a_one_image_drop_is_never_refused() -> None:
    # At a level of 0.6 one flipped image would be 'significant' (p = 0.5); the rule's
    # one-image clause still accepts it, and refuses two.
    rule = GateRule(level=0.6, max_drop_points=0.0)
    assert judge(*_predictions(10, fp32_only=1, int8_only=0), rule).accepted
    assert not judge(*_predictions(10, fp32_only=2, int8_only=0), rule).accepted


def test_the_exact_p_value_is_the_binomial_test_on_the_discordant_images() -> None:
    for fp32_only, int8_only in [(1, 0), (3, 1), (8, 1), (12, 9), (20, 2), (0, 5)]:
        expected = binomtest(fp32_only, fp32_only + int8_only, 0.5, alternative="greater")
        assert binomial_tail(fp32_only, fp32_only + int8_only) == pytest.approx(
            expected.pvalue, rel=1e-12
        )
    assert binomial_tail(0, 0) == 1.0


def test_the_drop_interval_covers_the_true_drop_about_95_percent_of_the_time() -> None:
    rng = random.Random(0)
    images, fp32_rate, int8_rate = 60, 0.06, 0.02  # true drop: 4 points
    covered = 0
    trials = 2000
    for _ in range(trials):
        draws = [rng.random() for _ in range(images)]
        fp32_only = sum(draw < fp32_rate for draw in draws)
        int8_only = sum(fp32_rate <= draw < fp32_rate + int8_rate for draw in draws)
        low, high = drop_interval(fp32_only, int8_only, images)
        covered += low <= 4.0 <= high
    assert 0.93 <= covered / trials <= 0.99
    low, high = drop_interval(0, 0, 60)
    assert low < 0 < high and high - low > 4  # no disagreement in 60 images: still ±3 points


def test_bad_rules_and_mismatched_predictions_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"level=0: use a probability between 0 and 1"):
        GateRule(level=0)
    with pytest.raises(ConfigError, match="max_drop_points=nan: use a finite number"):
        GateRule(max_drop_points=float("nan"))
    with pytest.raises(ValueError, match="same images"):
        judge([0, 1], [0, 1], [0])


def test_the_shipped_method_is_the_first_accepted_that_agrees_with_fp32() -> None:
    refused = judge(*_predictions(100, fp32_only=12, int8_only=0))
    changes_many = judge(*_predictions(100, fp32_only=6, int8_only=5))  # accepted, 89 % agree
    changes_few = judge(*_predictions(100, fp32_only=1, int8_only=0))  # 99 %
    changes_some = judge(*_predictions(100, fp32_only=2, int8_only=1))  # 97 %
    assert not refused.accepted and changes_many.accepted and changes_many.agreement == 0.89
    assert pick([refused, changes_few, changes_many]) == 1  # the first reaching 98 %
    assert pick([changes_many, changes_few]) == 1  # accepted, but a later one agrees more
    assert pick([changes_many, changes_some]) == 1  # none reaches 98 %: the most agreeing
    assert pick([changes_some, changes_some]) == 0  # ... the earliest of equals
    assert pick([refused, refused]) is None
    # With model times, the fastest of those reaching 98 %; the others do not count.
    assert pick([changes_few, changes_few], times=[5.0, 3.0]) == 1
    assert pick([changes_few, changes_many, changes_few], times=[4.0, 1.0, 4.0]) == 0
    assert pick([changes_few, changes_few], times=[None, 3.0]) == 1
    assert pick([changes_many, changes_some], times=[1.0, 2.0]) == 1  # none reaches 98 %
