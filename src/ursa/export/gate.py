"""The int8 accuracy gate: refuse a quantized model only on a drop that is real.

fp32 and int8 predict the same validation images, so the comparison is paired.
What matters are the *discordant* images: ``fp32_only`` (fp32 right, int8 wrong)
and ``int8_only`` (the reverse). If int8 were no worse than fp32, each discordant
image would be either kind with probability ½ at most, so an exact one-sided
McNemar test (binomial on the discordant pairs) gives the chance of seeing
``fp32_only`` or more of them by luck.

The rule: refuse when all three hold

* the drop is significant: McNemar's exact one-sided p-value below ``level``;
* it is more than one image (``fp32_only - int8_only > 1``);
* it is more than ``max_drop_points`` percentage points.

On 60 images a single flipped image is 1.7 points: a fixed 1-point limit alone
would refuse it, though one image in 60 says nothing about the model. The drop's
95 % interval is reported too (Agresti and Min's adjusted Wald interval for
matched proportions); it stays wide when there are few images, as it should.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

from ursa.core.errors import ConfigError

#: Largest accuracy loss (percentage points) an int8 model may cost.
MAX_DROP_POINTS = 1.0
#: Significance level of the one-sided exact McNemar test.
LEVEL = 0.05
#: Top-1 agreement with fp32 at which ``ursa export`` stops trying further int8 methods.
AGREEMENT_TARGET = 0.98
#: Two-sided 95 % normal quantile, for the reported interval on the drop.
_Z = NormalDist().inv_cdf(0.975)


@dataclass(frozen=True)
class GateRule:
    """When an int8 model is refused."""

    max_drop_points: float = MAX_DROP_POINTS
    """Accuracy points int8 may lose (a drop at or under it is accepted)."""
    level: float = LEVEL
    """A drop counts as real only when McNemar's exact one-sided p-value is below this."""

    def __post_init__(self) -> None:
        problems = []
        if not math.isfinite(self.max_drop_points):
            problems.append(f"max_drop_points={self.max_drop_points}: use a finite number")
        if not 0.0 < self.level < 1.0:
            problems.append(f"level={self.level}: use a probability between 0 and 1, e.g. 0.05")
        if problems:
            raise ConfigError("; ".join(problems))

    def describe(self) -> str:
        return (
            f"refuse when McNemar's exact one-sided p < {self.level:g} and the drop is more "
            f"than one image and more than {self.max_drop_points:g} points"
        )


@dataclass(frozen=True)
class GateResult:
    """fp32 against int8 on the same validation images, and the decision."""

    images: int
    agreement: float
    """Share of images where int8's top-1 class is fp32's."""
    fp32_accuracy: float
    int8_accuracy: float
    drop_points: float
    drop_interval_points: tuple[float, float]
    """The drop's 95 % interval in points (Agresti-Min, for paired proportions)."""
    fp32_only: int
    """Images fp32 got right and int8 wrong."""
    int8_only: int
    """Images int8 got right and fp32 wrong."""
    p_value: float
    """McNemar's exact one-sided p-value for 'int8 is less accurate than fp32'."""
    accepted: bool
    rule: str

    def summary(self) -> str:
        """One line: what was measured."""
        low, high = self.drop_interval_points
        agree = round(self.agreement * self.images)
        return (
            f"{self.images} validation images: int8 agrees with fp32 on {agree}/{self.images} "
            f"({self.agreement:.1%}); top-1 {self.fp32_accuracy:.2%} (fp32) → "
            f"{self.int8_accuracy:.2%} (int8), drop {self.drop_points:.2f} points "
            f"(95% interval {low:.1f} to {high:.1f}); fp32 right where int8 wrong on "
            f"{self.fp32_only}, the reverse on {self.int8_only}: McNemar exact p = "
            f"{self.p_value:.3g}"
        )

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["drop_interval_points"] = list(self.drop_interval_points)
        return record


def binomial_tail(successes: int, trials: int) -> float:
    """P(X ≥ ``successes``) for X ~ Binomial(``trials``, ½), exactly."""
    if successes <= 0:
        return 1.0
    tail = sum(math.comb(trials, k) for k in range(successes, trials + 1))
    return tail / 2**trials


def drop_interval(fp32_only: int, int8_only: int, images: int) -> tuple[float, float]:
    """95 % interval (points) for the paired accuracy drop ``(fp32_only - int8_only) / images``.

    Agresti and Min's adjusted Wald interval for matched proportions (2005): half an image
    added to each of the four agree/disagree cells before the usual Wald formula, which
    keeps its coverage near 95 % even with few images and few disagreements.
    """
    b, c, n = fp32_only + 0.5, int8_only + 0.5, images + 2.0
    difference = (b - c) / n
    spread = _Z * math.sqrt(max((b + c) - (b - c) ** 2 / n, 0.0)) / n
    return round((difference - spread) * 100, 2), round((difference + spread) * 100, 2)


def judge(
    labels: Collection[int],
    fp32_top1: Collection[int],
    int8_top1: Collection[int],
    rule: GateRule | None = None,
) -> GateResult:
    """Compare the two models' top-1 classes on the same labelled images; decide by ``rule``."""
    rule = rule or GateRule()
    if not len(labels) == len(fp32_top1) == len(int8_top1):
        raise ValueError(
            f"labels ({len(labels)}), fp32 ({len(fp32_top1)}) and int8 ({len(int8_top1)}) "
            f"predictions must be for the same images"
        )
    images = len(labels)
    triples = [
        (int(y), int(f), int(q)) for y, f, q in zip(labels, fp32_top1, int8_top1, strict=True)
    ]
    fp32_right = sum(int(f == y) for y, f, _ in triples)
    int8_right = sum(int(q == y) for y, _, q in triples)
    fp32_only = sum(int(f == y and q != y) for y, f, q in triples)
    int8_only = sum(int(q == y and f != y) for y, f, q in triples)
    agree = sum(int(f == q) for _, f, q in triples)
    drop = round((fp32_only - int8_only) / max(images, 1) * 100.0, 4)
    p_value = binomial_tail(fp32_only, fp32_only + int8_only)
    real = p_value < rule.level and fp32_only - int8_only > 1 and drop > rule.max_drop_points
    return GateResult(
        images=images,
        agreement=agree / max(images, 1),
        fp32_accuracy=fp32_right / max(images, 1),
        int8_accuracy=int8_right / max(images, 1),
        drop_points=drop,
        drop_interval_points=drop_interval(fp32_only, int8_only, images),
        fp32_only=fp32_only,
        int8_only=int8_only,
        p_value=p_value,
        accepted=not real,
        rule=rule.describe(),
    )


def pick(
    results: Sequence[GateResult],
    target: float = AGREEMENT_TARGET,
    times: Sequence[float | None] | None = None,
) -> int | None:
    """Which of the methods' results (in the order tried) to ship, or None when all refused.

    Of the accepted ones whose top-1 agreement with fp32 reaches ``target``, the fastest
    by ``times`` (model milliseconds, one per result; None where not measured), or the
    first when no times are given; when none reaches it, the accepted one that agrees most
    (the earliest of equals). An accepted model may still change many predictions, right
    and wrong alike, without losing accuracy: the gate does not refuse it, but a method
    that changes fewer is preferred.
    """
    accepted = [index for index, result in enumerate(results) if result.accepted]
    if not accepted:
        return None
    reaching = [index for index in accepted if results[index].agreement >= target]
    if reaching:
        if times is None:
            return reaching[0]
        timed = [index for index in reaching if times[index] is not None]
        if timed:
            return min(timed, key=lambda index: (times[index], index))
        return reaching[0]
    return max(accepted, key=lambda index: (results[index].agreement, -index))
