"""Short, informative reprs (text and HTML) of what a notebook user evaluates."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.conftest import TINY_ARCH, make_class_folder
from tests.notebook.conftest import Trained
from ursa.core.errors import ConfigError
from ursa.data.core import ImageData
from ursa.train import EpochRecord, Learner, SilentLogger


class Cells(HTMLParser):
    """The text of every table cell, and which tags were opened."""

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.cells: list[str] = []
        self.tags: list[str] = []
        self._inside = False
        self.feed(markup)

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.tags.append(tag)
        if tag in ("td", "th"):
            self._inside = True
            self.cells.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._inside = False

    def handle_data(self, data: str) -> None:
        if self._inside:
            self.cells[-1] += data


def test_image_data_repr_is_short_and_names_classes_counts_and_a_few_files(
    tmp_path: Path,
) -> None:
    root = make_class_folder(tmp_path / "colours", per_class=40)
    data = ImageData.from_folder(root, size=24, num_workers=0, seed=1, cache=False)
    text = repr(data)
    assert len(text) < 1200, text  # a dataclass repr lists all 120 paths: about 20,000 chars
    assert text.startswith("ImageData: 3 classes, 96 training and 24 validation images")
    assert "24 px" in text and "seed=1" in text
    counts = data.counts()
    for name in data.class_names:  # one row per class: name, training and validation images
        row = rf"^\s*{name}\s+{counts['train'][name]}\s+{counts['valid'][name]}$"
        assert re.search(row, text, re.MULTILINE), text
    shown_files = re.findall(r"\d\d\.png", text)
    assert 0 < len(shown_files) <= 6  # three of each split, never every path
    assert str(data.train_items[10].path) not in text


def test_image_data_html_is_a_table_with_escaped_class_names(tmp_path: Path) -> None:
    root = tmp_path / "odd"
    for index, name in enumerate(["<em>", "a&b", *[f"c{k:02d}" for k in range(20)]]):
        (root / name).mkdir(parents=True)
        for copy in range(3):
            colour = (index * 11 % 256, copy * 80, 128)
            Image.new("RGB", (12, 12), colour).save(root / name / f"{copy}.png")
    data = ImageData.from_folder(root, size=16, num_workers=0, valid_pct=0.34, cache=False)
    markup = data._repr_html_()
    assert "<em>" not in markup and html.escape("<em>") in markup
    parsed = Cells(markup)
    assert "em" not in parsed.tags  # the class name stayed text
    assert "<em>" in parsed.cells and "a&b" in parsed.cells
    assert "… 10 more classes" in parsed.cells  # 22 classes: the first 12, then a count
    assert len(repr(data).splitlines()) < 30


def test_fine_tune_returns_an_epoch_table_that_is_still_a_list(tmp_path: Path) -> None:
    data = ImageData.from_folder(
        make_class_folder(tmp_path / "c"), size=32, batch_size=8, num_workers=0, seed=0,
        cache=False,
    )  # fmt: skip
    learner = Learner(data, arch=TINY_ARCH, pretrained=False, logger=SilentLogger())
    records = learner.fine_tune(2, base_lr=2e-2)
    # Existing code keeps working: a list of EpochRecord, indexable, equal to a list.
    assert isinstance(records, list) and len(records) == 4
    assert all(isinstance(r, EpochRecord) for r in records)
    assert [r.phase for r in records] == ["head", "unfrozen", "unfrozen", "average"]
    assert records == learner.history and records[-1] is learner.history[-1]
    text = repr(records)
    assert "EpochRecord(" not in text
    lines = text.splitlines()
    assert lines[0].split() == [
        "epoch", "phase", "train_loss", "valid_loss", "error_rate", "accuracy", "macro_f1", "time"
    ]  # fmt: skip
    assert len(lines) == 5 and lines[1].split()[:2] == ["0", "head"]
    assert f"{records[2].error_rate:.4f}" in lines[3]
    assert lines[4].split()[:3] == ["3", "average", "—"]  # no training loss: a dash, not nan
    cells = Cells(records._repr_html_()).cells  # type: ignore[attr-defined]
    assert len(cells) == 8 * 5 and cells[8:10] == ["0", "head"]

    one_cycle = learner.fit_one_cycle(1, 1e-3)
    assert len(one_cycle) == 1 and one_cycle[0].epoch == 4
    lines = repr(one_cycle).splitlines()
    assert "EpochRecord(" not in repr(one_cycle) and lines[1].split()[:2] == ["4", "all"]


def test_learner_repr_says_model_data_device_and_what_was_trained(trained: Trained) -> None:
    learner = trained.learner
    text = repr(learner)
    assert text.startswith("Learner\n")
    assert TINY_ARCH in text and "3: blue, green, red" in text and "random weights" in text
    assert "48 training and 12 validation images, 32 px, batch 8" in text
    assert "(head, unfrozen, average)" in text
    assert learner.kept is not None and f"kept {learner.kept}: error_rate" in text
    assert len(text) < 600
    cells = Cells(learner._repr_html_()).cells
    assert "model" in cells and "unfrozen" in cells  # the facts and the epoch table

    fresh = Learner(trained.data, arch=TINY_ARCH, pretrained=False, logger=SilentLogger())
    assert "not yet: learner.fine_tune()" in repr(fresh)


def test_lr_find_result_repr_gives_the_rates_not_every_loss(trained: Trained) -> None:
    result = trained.learner.lr_find(steps=10, end_lr=1.0)
    text = repr(result)
    assert len(text) < 400, text  # the dataclass repr printed every rate and loss
    assert f"suggestion (valley) {result.suggestion:.2e}" in text
    assert f"{len(result.lrs)} steps" in text
    assert result.unusable is not None and result.unusable in text  # 6 steps: not usable
    cells = Cells(result._repr_html_()).cells
    assert cells[:2] == ["rate", "value"] and f"{result.steepest:.2e}" in cells


def test_interpretation_repr_gives_scores_and_the_most_confused(trained: Trained) -> None:
    interp = trained.learner.interpret()
    text = repr(interp)
    assert text.startswith("Interpretation\n")
    wrong = int((interp.predictions != interp.targets).sum())
    assert f"valid: {len(interp.items)} images, {wrong} predicted wrong" in text
    assert f"accuracy     {interp.accuracy:.4f}" in text
    confused = interp.most_confused()
    if confused:
        first = confused[0]
        assert re.search(rf"^\s*{first.actual}\s+{first.predicted}\s+{first.count}$", text, re.M)
    else:
        assert "no mistakes on this split" in text
    assert len(text) < 800
    cells = Cells(interp._repr_html_()).cells
    assert "accuracy" in cells and f"{interp.loss:.4f}" in cells


def test_show_batch_draws_a_new_batch_each_call_and_a_seed_repeats_one(tmp_path: Path) -> None:
    data = ImageData.from_folder(
        make_class_folder(tmp_path / "c", per_class=20), size=24, num_workers=0, cache=False
    )

    def shown(**kwargs: Any) -> tuple[str, list[np.ndarray]]:
        figure = data.show_batch(n=6, **kwargs)
        return figure.get_suptitle(), [
            np.asarray(a.get_images()[0].get_array()) for a in figure.axes
        ]

    draws = [shown() for _ in range(3)]
    titles = {title for title, _ in draws}
    assert len(titles) == 3  # each title says its own seed
    first, second = draws[0][1], draws[1][1]
    assert any(np.abs(a - b).mean() > 0.01 for a, b in zip(first, second, strict=True))

    seed = int(draws[0][0].rsplit("seed=", 1)[1])
    title, again = shown(seed=seed)  # the seed in the title shows that batch again
    assert title == draws[0][0]
    for a, b in zip(again, first, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ConfigError, match="seed=-1"):
        data.show_batch(seed=-1)
