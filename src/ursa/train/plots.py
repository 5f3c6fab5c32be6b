"""PNG figures of training: the learning-rate sweep and the epoch history (matplotlib, Agg)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ursa.core.atomic import atomic_file

if TYPE_CHECKING:
    from ursa.train.lr_find import LRFindResult
    from ursa.train.progress import EpochRecord


def _figure() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6, 4), dpi=100)


def _save(figure: Any, path: Path) -> Path:
    """Save ``figure`` as a PNG atomically (temporary file, then rename) and close it."""
    import matplotlib.pyplot as plt

    try:
        figure.tight_layout()
        with atomic_file(path, suffix=".png") as stream:
            figure.savefig(stream, format="png")
    finally:
        plt.close(figure)
    return path


def plot_lr_find(result: LRFindResult, path: Path) -> Path:
    """Smoothed loss against learning rate (log scale), the suggestion marked."""
    figure, axes = _figure()
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
    axes.legend()
    return _save(figure, path)


def plot_history(records: Sequence[EpochRecord], path: Path) -> Path:
    """Training and validation loss per epoch, with accuracy on a second axis."""
    figure, axes = _figure()
    epochs = [r.epoch for r in records]
    axes.plot(epochs, [r.train_loss for r in records], "o-", label="train loss")
    axes.plot(epochs, [r.valid_loss for r in records], "o-", label="valid loss")
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss")
    other = axes.twinx()
    other.plot(epochs, [r.accuracy for r in records], "s--", color="tab:green", label="accuracy")
    other.set_ylabel("accuracy")
    other.set_ylim(0, 1)
    lines = axes.get_legend_handles_labels()
    more = other.get_legend_handles_labels()
    axes.legend(lines[0] + more[0], lines[1] + more[1], loc="center right")
    return _save(figure, path)
