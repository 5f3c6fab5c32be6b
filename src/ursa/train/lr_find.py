"""The learning-rate finder: an exponential sweep over (at most) one pass of the data.

The rate grows geometrically from ``start_lr`` to ``end_lr``, one optimizer step
per mini-batch. The loss is smoothed with a bias-corrected exponential moving
average; the sweep stops early when the smoothed loss exceeds ``diverge`` times
its minimum (or is not finite). Afterwards the model's weights (batch-norm
statistics included), the optimizer's state and the random generators are put
back exactly as they were: running the finder changes nothing about what follows.

Suggestion: the "valley" heuristic (the one fastai defaults to, reimplemented here):
find the longest stretch over which the smoothed loss keeps falling (the longest
decreasing subsequence of the curve, as a span of the sweep) and take the rate
halfway through it in log scale. It lands where the loss falls fastest for the
longest, away from both the flat start and the cliff at the end; the steepest
point alone is noisier (its gradient is a difference of two noisy values) and the
minimum alone is already too high (training there diverges).
"""

from __future__ import annotations

import copy
import html
import math
from collections.abc import Iterable, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ursa.core.errors import ConfigError, DataError
from ursa.data.core import html_table
from ursa.train.loop import set_train_mode

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True, repr=False)  # the repr below: the rates, not a hundred losses
class LRFindResult:
    """The sweep and its suggestion."""

    lrs: list[float]
    """Rate of each step."""
    losses: list[float]
    """Smoothed training loss after each step."""
    raw_losses: list[float]
    """Training loss of each step's mini-batch."""
    suggestion: float
    """The valley rate (see the module docstring)."""
    steepest: float
    """Where the smoothed loss falls fastest per log-rate (an alternative)."""
    minimum: float
    """The rate of the lowest smoothed loss, divided by 10 (a cautious alternative)."""
    diverged: bool
    """Whether the sweep stopped early because the loss blew up."""
    unusable: str | None = None
    """Why the suggestion should not be used (too few steps, a curve that never falls),
    or None (see :func:`unusable_reason`)."""

    def plot(self, path: str | Path | None = None) -> Figure:
        """Loss against rate (log scale) with the suggestion marked, as a figure (a notebook
        shows it); ``path``: also write it as a PNG."""
        from ursa.train.plots import plot_lr_find

        return plot_lr_find(self, path)

    def _rows(self) -> list[tuple[str, str]]:
        return [
            ("suggestion (valley)", f"{self.suggestion:.2e}"),
            ("steepest descent", f"{self.steepest:.2e}"),
            ("minimum / 10", f"{self.minimum:.2e}"),
        ]

    def _sweep(self) -> str:
        stopped = ", stopped where the loss diverged" if self.diverged else ""
        text = f"{len(self.lrs)} steps from {self.lrs[0]:.0e} to {self.lrs[-1]:.2e}{stopped}"
        if self.unusable is not None:
            text += f"; not to be trusted: {self.unusable}"
        return text

    def __repr__(self) -> str:
        rates = ", ".join(f"{name} {value}" for name, value in self._rows())
        return f"LRFindResult: {rates}; {self._sweep()}; .plot() draws the curve"

    def _repr_html_(self) -> str:
        return (
            f"<div><strong>LRFindResult</strong>: {html.escape(self._sweep())}"
            + html_table(("rate", "value"), self._rows())
            + "<code>.plot()</code> draws the curve</div>"
        )


def lr_sweep(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    *,
    loss_fn: nn.Module,
    device: torch.device,
    steps: int,
    batch_size: int,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    beta: float = 0.98,
    diverge: float = 4.0,
    channels_last: bool = False,
    keep_bn_stats: bool = False,
) -> LRFindResult:
    """Sweep up to ``steps`` rates over one pass of ``batches`` (of ``batch_size`` images;
    each may be cut in pieces so that a small dataset still gives a curve), then restore
    the model and the optimizer."""
    if not 0 < start_lr < end_lr:
        raise ConfigError(f"start_lr={start_lr}, end_lr={end_lr}: use 0 < start_lr < end_lr")
    if steps < 5:
        raise ConfigError(f"steps={steps}: use at least 5 steps for a curve")
    saved_model = copy.deepcopy(model.state_dict())
    saved_optimizer = copy.deepcopy(optimizer.state_dict())
    saved_rng = torch.get_rng_state()
    lrs: list[float] = []
    raw: list[float] = []
    smooth: list[float] = []
    average, best, diverged = 0.0, math.inf, False
    pieces, steps = _plan(batches, steps, batch_size)
    if steps < 5:
        raise DataError(
            f"the learning-rate sweep would get only {steps} steps from one pass; it needs "
            f"more training images (or a smaller batch size)"
        )
    factor = (end_lr / start_lr) ** (1 / (steps - 1))
    # Discriminative rates keep their ratios: each group's rate is the swept rate times
    # its share of the largest group rate given (the head's).
    top = max(group["lr"] for group in optimizer.param_groups)
    shares = [group["lr"] / top for group in optimizer.param_groups]
    set_train_mode(model, frozen=False, keep_bn_stats=keep_bn_stats)  # as fit() trains
    try:
        for images, labels in _chunks(batches, pieces):
            lr = start_lr * factor ** len(lrs)
            for group, share in zip(optimizer.param_groups, shares, strict=True):
                group["lr"] = lr * share
            memory_format = torch.channels_last if channels_last else torch.contiguous_format
            images = images.to(device, memory_format=memory_format)  # (b, 3, H, W)
            loss = loss_fn(model(images).float(), labels.to(device))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            value = loss.item()
            average = beta * average + (1 - beta) * value
            smoothed = average / (1 - beta ** (len(lrs) + 1))  # bias-corrected
            lrs.append(lr)
            raw.append(value)
            smooth.append(smoothed)
            best = min(best, smoothed)
            if not math.isfinite(smoothed) or smoothed > diverge * best:
                diverged = True
                break
            if len(lrs) >= steps:
                break
    finally:
        model.load_state_dict(saved_model)
        optimizer.load_state_dict(saved_optimizer)
        optimizer.zero_grad(set_to_none=True)
        torch.set_rng_state(saved_rng)
    if len(lrs) < 3:
        raise DataError(
            f"the loss diverged after {len(lrs)} steps of the learning-rate sweep; "
            f"start it lower (start_lr={start_lr})"
        )
    return LRFindResult(
        lrs=lrs,
        losses=smooth,
        raw_losses=raw,
        suggestion=valley(lrs, smooth),
        steepest=steepest(lrs, smooth),
        minimum=lrs[int(np.nanargmin(smooth))] / 10,
        diverged=diverged,
        unusable=unusable_reason(smooth),
    )


MIN_USABLE_STEPS = 20
MIN_FALL = 0.1


def unusable_reason(losses: list[float]) -> str | None:
    """Why a sweep's curve cannot be trusted, or None: fewer than :data:`MIN_USABLE_STEPS`
    points (a small dataset), or a smoothed loss that never falls :data:`MIN_FALL` below
    where it started (a flat curve: its "valley" is noise)."""
    if len(losses) < MIN_USABLE_STEPS:
        return f"only {len(losses)} steps in one pass of the data, {MIN_USABLE_STEPS} needed"
    values = np.nan_to_num(np.asarray(losses, dtype=np.float64), nan=np.inf)
    lowest = float(values.min())
    if not lowest < values[0] * (1 - MIN_FALL):
        return f"the loss never fell {100 * MIN_FALL:.0f} % below where it started"
    return None


def valley(lrs: list[float], losses: list[float]) -> float:
    """The rate halfway (in log scale) through the longest falling stretch of ``losses``."""
    values = np.nan_to_num(np.asarray(losses, dtype=np.float64), nan=np.inf)
    n = len(values)
    # longest[i]: length of the longest strictly decreasing subsequence ending at i;
    # start[i]: where that subsequence begins (the latest start among equally long ones,
    # so a flat beginning of the curve does not count as falling). O(n²), n <= a few hundred.
    longest, start = np.ones(n, dtype=int), np.arange(n)
    for i in range(n):
        for j in range(i):
            if values[j] > values[i] and longest[j] + 1 >= longest[i]:
                longest[i], start[i] = longest[j] + 1, start[j]
    end = int(np.argmax(longest))
    first = int(start[end])
    middle = math.exp((math.log(lrs[first]) + math.log(lrs[end])) / 2)
    return float(middle)


def steepest(lrs: list[float], losses: list[float]) -> float:
    """The rate where the loss falls fastest against log-rate."""
    values = np.asarray(losses, dtype=np.float64)
    slopes = np.gradient(values, np.log(np.asarray(lrs)))
    slopes[~np.isfinite(slopes)] = np.inf
    return float(lrs[int(np.argmin(slopes))])


def _plan(
    batches: Iterable[Any], steps: int, batch_size: int, smallest: int = 8
) -> tuple[int, int]:
    """(pieces per loader batch, sweep steps): one pass gives up to ``steps`` points, each
    loader batch cut into pieces of at least ``smallest`` images when there are few batches."""
    count = len(batches) if isinstance(batches, Sized) else steps
    pieces = max(1, min(math.ceil(steps / max(count, 1)), batch_size // smallest))
    return pieces, min(steps, count * pieces)


def _chunks(
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]], pieces: int
) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    for images, labels in batches:
        yield from zip(images.chunk(pieces), labels.chunk(pieces), strict=True)
