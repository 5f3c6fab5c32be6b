"""The interpretation's figures, drawn with matplotlib's object API on the Agg canvas.

No pyplot: nothing global is touched, so the figures work in scripts, tests,
servers and notebooks alike; each is an :class:`~ursa.data.show.InlineFigure`, which a
notebook shows as an image.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.ticker import MaxNLocator

from ursa.data.show import InlineFigure, new_figure
from ursa.data.show import png_bytes as png_bytes  # the report's PNGs, one definition
from ursa.interpret.metrics import Calibration

#: Longest class name shown on an axis; longer ones are cut with an ellipsis.
MAX_LABEL = 24


def _short(name: str) -> str:
    return name if len(name) <= MAX_LABEL else name[: MAX_LABEL - 1] + "…"


def confusion_figure(
    matrix: np.ndarray, class_names: Sequence[str], *, normalize: bool = False, title: str = ""
) -> InlineFigure:
    """The confusion matrix (rows actual, columns predicted), readable from 2 to 100+ classes.

    The figure grows with the number of classes up to a cap; tick labels shrink
    to fit their cells (every n-th label when even the smallest font does not
    fit), and values are written in the cells only where they fit.
    """
    from ursa.interpret.metrics import row_normalize

    count = len(class_names)
    values = row_normalize(matrix) if normalize else matrix.astype(np.float64)
    side = min(max(4.0, 0.3 * count + 1.5), 26.0)  # inches for the matrix itself
    cell = side * 72.0 / count  # points per cell
    longest = max(len(_short(n)) for n in class_names)
    label_size = min(10.0, max(cell * 0.7, 4.0))
    margin = 1.2 + longest * label_size * 0.6 / 72.0  # room for the row labels (inches)
    figure = new_figure(side + margin + 1.2, side + margin + 0.6)
    axes = figure.add_subplot()
    image = axes.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    bar = figure.colorbar(
        image, ax=axes, shrink=0.6, label="fraction of the row" if normalize else "images"
    )
    if not normalize:
        bar.locator = MaxNLocator(integer=True)  # no "2.5 images"
        bar.update_ticks()

    step = max(1, math.ceil(4.0 / (cell * 0.7))) if cell * 0.7 < 4.0 else 1
    ticks = np.arange(0, count, step)
    labels = [_short(class_names[int(i)]) for i in ticks]
    axes.set_xticks(ticks, labels, rotation=90 if count > 4 else 0, fontsize=label_size)
    axes.set_yticks(ticks, labels, fontsize=label_size)
    axes.set_xlabel("predicted")
    axes.set_ylabel("actual")
    axes.set_title(
        title or ("Confusion matrix (row-normalised)" if normalize else "Confusion matrix")
    )

    # Zeros are left blank beyond 10 classes: a sea of zeros hides the cells that matter.
    shown = [
        (row, column, _cell_text(value, normalize))
        for (row, column), value in np.ndenumerate(values)
        if value != 0 or count <= 10
    ]
    value_size = min(11.0, cell * 0.42)
    widest = max((len(text) for _, _, text in shown), default=1)
    if value_size >= 4.0 and 0.62 * value_size * widest <= cell * 0.92:
        threshold = values.max() / 2 if values.max() > 0 else 1.0
        for row, column, text in shown:
            axes.text(
                column, row, text, ha="center", va="center", fontsize=value_size,
                color="white" if values[row, column] > threshold else "black",
            )  # fmt: skip
    return figure


def _cell_text(value: float, normalize: bool) -> str:
    if not normalize:
        return str(int(value))
    text = f"{value:.2f}"
    if text == "1.00":
        return "1"
    return text[1:] if text.startswith("0.") else text  # ".85" fits where "0.85" does not


def top_losses_figure(
    images: Sequence[np.ndarray],
    titles: Sequence[str],
    heatmaps: Sequence[np.ndarray] | None = None,
) -> InlineFigure:
    """A grid of (H, W, 3) uint8 images with titles; Grad-CAM maps overlaid when given."""
    count = len(images)
    columns = max(1, math.ceil(math.sqrt(count)))
    rows = max(1, math.ceil(count / columns))
    figure = new_figure(3.0 * columns, 3.4 * rows)
    for index in range(count):
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.imshow(images[index])
        if heatmaps is not None:
            axes.imshow(heatmaps[index], cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
        axes.set_title(titles[index], fontsize=8)
        axes.axis("off")
    if count == 0:
        axes = figure.add_subplot()
        axes.text(0.5, 0.5, "no images", ha="center", va="center")
        axes.axis("off")
    return figure


def reliability_figure(result: Calibration) -> InlineFigure:
    """Reliability diagram: accuracy per confidence bin against the diagonal, with counts."""
    figure = new_figure(5.5, 5.5)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    centres = (result.edges[:-1] + result.edges[1:]) / 2
    width = result.edges[1] - result.edges[0]
    filled = result.counts > 0
    top.bar(centres[filled], result.accuracy[filled], width=width * 0.9, color="#4c72b0",
            edgecolor="black", label="accuracy")  # fmt: skip
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    top.scatter(centres[filled], result.confidence[filled], color="#dd8452", zorder=3,
                label="mean confidence")  # fmt: skip
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.set_title(f"Reliability (expected calibration error {result.ece:.3f})")
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(centres, result.counts, width=width * 0.9, color="#8c8c8c")
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence (top probability)")
    bottom.set_ylabel("images")
    return figure


def history_figure(history: Sequence[Mapping[str, Any]]) -> InlineFigure | None:
    """Training and validation loss per epoch, with the error rate; None without history."""
    if not history:
        return None
    epochs = [int(r["epoch"]) for r in history]

    def series(key: str) -> list[float]:
        return [float("nan") if r.get(key) is None else float(r[key]) for r in history]

    figure = new_figure(6.5, 3.8)
    axes = figure.add_subplot()
    axes.plot(epochs, series("train_loss"), marker="o", label="training loss")
    axes.plot(epochs, series("valid_loss"), marker="o", label="validation loss")
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss")
    rate_axes = axes.twinx()
    rate_axes.plot(epochs, series("error_rate"), color="#c44e52", marker="s", linestyle=":",
                   label="error rate")  # fmt: skip
    rate_axes.set_ylabel("error rate")
    rate_axes.set_ylim(0, 1)
    frozen = [e for e, r in zip(epochs, history, strict=True) if r.get("phase") == "frozen"]
    if frozen:
        axes.axvspan(min(frozen) - 0.5, max(frozen) + 0.5, color="grey", alpha=0.12,
                     label="body frozen")  # fmt: skip
    handles, labels = axes.get_legend_handles_labels()
    more_handles, more_labels = rate_axes.get_legend_handles_labels()
    axes.legend(handles + more_handles, labels + more_labels, fontsize=8, loc="upper right")
    axes.set_xticks(epochs)
    axes.set_title("Training history")
    return figure
