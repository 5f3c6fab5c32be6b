from __future__ import annotations

import itertools

import numpy as np
from matplotlib.figure import Figure
from matplotlib.text import Text

from ursa.interpret.plots import confusion_figure, png_bytes


def _ticks_overlap(figure: Figure) -> bool:
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    labels = [t for t in figure.axes[0].get_yticklabels() if t.get_text()]
    boxes = sorted((t.get_window_extent(renderer) for t in labels), key=lambda b: b.y0)
    return any(low.y1 > high.y0 + 0.5 for low, high in itertools.pairwise(boxes))


def _cell_texts(figure: Figure) -> list[Text]:
    return [t for t in figure.axes[0].texts if t.get_text()]


def test_two_classes_show_every_value_and_label() -> None:
    matrix = np.array([[7, 1], [2, 9]])
    figure = confusion_figure(matrix, ["black", "grizzly"])
    figure.canvas.draw()  # type: ignore[attr-defined]
    assert sorted(t.get_text() for t in _cell_texts(figure)) == ["1", "2", "7", "9"]
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["black", "grizzly"]
    assert png_bytes(figure)[:8] == b"\x89PNG\r\n\x1a\n"
    normalized = confusion_figure(matrix, ["black", "grizzly"], normalize=True)
    assert sorted(t.get_text() for t in _cell_texts(normalized)) == [
        ".12",
        ".18",
        ".82",
        ".88",
    ]  # 1/8, 2/11, 9/11, 7/8


def test_a_hundred_classes_stay_readable() -> None:
    classes = 100
    rng = np.random.default_rng(0)
    matrix = np.diag(rng.integers(5, 20, classes)) + (rng.random((classes, classes)) > 0.97)
    names = [f"species-number-{i:03d}-with-a-long-name" for i in range(classes)]
    figure = confusion_figure(matrix, names)
    figure.canvas.draw()  # type: ignore[attr-defined]
    labels = [t for t in figure.axes[0].get_yticklabels() if t.get_text()]
    assert not _ticks_overlap(figure)
    assert all(t.get_fontsize() >= 4 for t in labels)
    assert all(len(t.get_text()) <= 24 for t in labels)  # long names cut
    assert len(labels) == 100  # every class named
    texts = _cell_texts(figure)
    assert len(texts) == np.count_nonzero(matrix)  # values where there is room, no zeros
    width, height = figure.get_size_inches() * 100
    assert max(width, height) < 4000  # bounded, whatever the number of classes


def test_beyond_three_hundred_classes_every_other_name_and_no_values() -> None:
    matrix = np.eye(400, dtype=np.int64) * 3
    figure = confusion_figure(matrix, [f"c{i}" for i in range(400)])
    labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert labels[:3] == ["c0", "c2", "c4"] and len(labels) == 200
    assert _cell_texts(figure) == []  # no room for numbers: the colours carry the counts
