"""Figures of training: the learning-rate sweep and the epoch history.

Drawn like every figure of ursa (:class:`ursa.data.show.InlineFigure`): matplotlib's
object API on an Agg canvas, no pyplot, so the global backend and the user's own
figures are left alone; a notebook shows the returned figure, and a PNG is written
(atomically) only when a path is given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ursa.data.show import InlineFigure, new_figure, saved

if TYPE_CHECKING:
    from ursa.train.lr_find import LRFindResult
    from ursa.train.progress import EpochRecord


def plot_lr_find(result: LRFindResult, path: str | Path | None = None) -> InlineFigure:
    """Smoothed loss against learning rate (log scale), the suggestion marked."""
    figure = new_figure(6, 4)
    axes = figure.add_subplot()
    axes.plot(result.lrs, result.losses, color="tab:blue", label="smoothed loss")
    axes.set_xscale("log")
    axes.set_xlabel("learning rate")
    axes.set_ylabel("training loss")
    index = min(
        range(len(result.lrs)), key=lambda i: abs(math.log(result.lrs[i] / result.suggestion))
    )
    axes.plot(
        [result.suggestion], [result.losses[index]], "o", color="tab:red", markersize=8,
        label=f"suggestion (valley) {result.suggestion:.2e}",
    )  # fmt: skip
    top = min(max(result.losses), 2.5 * min(result.losses) + 0.5)
    axes.set_ylim(min(result.losses) * 0.9, top)
    if result.unusable is not None:
        axes.set_title(f"not to be trusted: {result.unusable}", fontsize=9)
    axes.legend()
    return saved(figure, path)


def plot_history(records: Sequence[EpochRecord], path: str | Path | None = None) -> InlineFigure:
    """Training and validation loss per epoch, with accuracy on a second axis."""
    figure = new_figure(6, 4)
    axes = figure.add_subplot()
    epochs = [r.epoch for r in records]
    axes.plot(epochs, [r.train_loss for r in records], "o-", label="train loss")
    axes.plot(epochs, [r.valid_loss for r in records], "o-", label="valid loss")
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss")
    axes.set_xticks(epochs)
    other = axes.twinx()
    other.plot(epochs, [r.accuracy for r in records], "s--", color="tab:green", label="accuracy")
    other.set_ylabel("accuracy")
    other.set_ylim(0, 1)
    lines = axes.get_legend_handles_labels()
    more = other.get_legend_handles_labels()
    axes.legend(lines[0] + more[0], lines[1] + more[1], loc="center right")
    return saved(figure, path)
