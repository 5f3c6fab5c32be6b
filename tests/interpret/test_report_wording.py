"""The model card counts epochs as ``--epochs`` does and says each known limit once."""

from __future__ import annotations

import re
from pathlib import Path

from tests.interpret.conftest import Trained


def limits_of(page: str) -> list[str]:
    section = page[page.index('<section id="limits">') :]
    section = section[: section.index("</section>")]
    return re.findall(r"<li>(.*?)</li>", section, flags=re.S)


def test_epochs_are_the_fine_tuning_epochs_with_the_head_fit_beside(
    trained: Trained, tmp_path: Path
) -> None:
    page = trained.learner.interpret().report(tmp_path / "card.html", k=3).read_text()
    # The fixture ran fine_tune(2): a head fit, then 2 epochs (3 rows of history).
    row = re.search(r"<td>epochs</td>\s*<td[^>]*>(.*?)</td>", page, flags=re.S)
    assert row is not None, page[page.index('<section id="training">') :][:800]
    assert row.group(1) == "2, after the head fit"


def test_a_limit_shared_by_several_classes_is_one_line_naming_them(
    trained: Trained, tmp_path: Path
) -> None:
    page = trained.learner.interpret().report(tmp_path / "card.html", k=3).read_text()
    limits = limits_of(page)
    # Every class of the fixture has under 30 training and under 10 validation images.
    train = [line for line in limits if "training images" in line and "fewer than" in line]
    valid = [line for line in limits if "validation images" in line and "fewer than" in line]
    assert len(train) == 1 and len(valid) == 1, limits
    for name in trained.learner.class_names:
        assert f"&#39;{name}&#39;" in train[0] and f"&#39;{name}&#39;" in valid[0]
    assert train[0].startswith("3 classes have fewer than 30 training images")
    assert len(limits) == len(set(limits))
