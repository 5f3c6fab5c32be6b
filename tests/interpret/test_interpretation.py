from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ursa
from tests.conftest import make_class_folder
from tests.interpret.conftest import LEAK, PLANTED, Trained
from ursa.core.errors import BundleError, ConfigError, DataError
from ursa.data.core import ImageData
from ursa.interpret import Interpretation


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def test_top_losses_on_the_train_split_find_the_planted_mislabels(trained: Trained) -> None:
    interp = trained.learner.interpret("train")
    top = interp.top_losses(5)
    ranked = [_relative(t.path, trained.root) for t in top]
    assert set(PLANTED) <= set(ranked), ranked
    planted = [t for t in top if "planted" in t.path.name]
    for entry in planted:  # the model disagrees with the wrong label
        assert entry.predicted != entry.actual and entry.probability_actual < 0.5
        assert entry.split == "train"
    figure = interp.plot_top_losses(5, heatmap=True)
    titles = [axes.get_title() for axes in figure.axes]
    assert sum("planted" in title for title in titles) == 2
    assert all(" / " in title and "loss" in title and "p(actual)" in title for title in titles)
    assert len(figure.axes[0].get_images()) == 2  # the photo and its heat map


def test_confusion_matrix_counts_sum_to_the_split_and_agree_with_validate(
    trained: Trained,
) -> None:
    learner = trained.learner
    interp = learner.interpret()
    matrix = interp.confusion_matrix()
    metrics = learner.validate()
    assert matrix.sum() == len(learner.data.valid_items) == metrics.count == 25
    assert np.trace(matrix) / matrix.sum() == pytest.approx(metrics.accuracy)
    assert interp.loss == pytest.approx(metrics.loss, rel=1e-4)
    valid_counts = learner.data.counts()["valid"]
    assert matrix.sum(axis=1).tolist() == [valid_counts[n] for n in interp.class_names]
    assert np.allclose(interp.confusion_matrix(normalize=True).sum(axis=1), 1.0)
    rows = interp.per_class_metrics()
    assert [r.support for r in rows[:3]] == matrix.sum(axis=1).tolist()
    assert rows[-1].name == "weighted average"
    assert rows[-1].recall == pytest.approx(metrics.accuracy)  # weighted recall = accuracy
    every = learner.interpret("all")
    assert every.confusion_matrix().sum() == len(learner.data.train_items) + 25


def test_most_confused_lists_the_mistakes_most_frequent_first(trained: Trained) -> None:
    interp = trained.learner.interpret("train")
    matrix = interp.confusion_matrix()
    pairs = interp.most_confused()
    assert sum(p.count for p in pairs) == matrix.sum() - np.trace(matrix)
    assert [p.count for p in pairs] == sorted((p.count for p in pairs), reverse=True)
    assert ("blue", "red") in {(p.actual, p.predicted) for p in pairs}  # the planted red one
    assert all(p.count >= 2 for p in interp.most_confused(min_val=2))
    with pytest.raises(ConfigError, match="min_val"):
        interp.most_confused(min_val=0)


def test_from_bundle_reproduces_the_learners_interpretation(
    trained: Trained, tmp_path: Path
) -> None:
    bundle = trained.learner.export(tmp_path / "m.ursa")
    from_learner = trained.learner.interpret()
    from_folder = Interpretation.from_bundle(bundle, trained.root)  # split as in training
    assert from_folder.class_names == from_learner.class_names
    assert np.array_equal(from_folder.confusion_matrix(), from_learner.confusion_matrix())
    assert np.allclose(from_folder.probabilities, from_learner.probabilities, atol=1e-5)
    assert len(from_folder.summary.history) == len(trained.learner.history) == 4  # + average
    assert from_folder.summary.source == str(bundle)
    lazy = ursa.Interpretation.from_bundle(str(bundle), trained.learner.data, "train")
    assert lazy.split == "train" and len(lazy.targets) == len(trained.learner.data.train_items)


def test_save_writes_the_five_files(trained: Trained, tmp_path: Path) -> None:
    interp = trained.learner.interpret("train")
    files = interp.save(tmp_path / "report", k=4)
    assert sorted(files) == sorted(
        ["confusion.png", "top_losses.png", "most_confused.csv", "per_class.csv", "report.html"]
    )
    for name in ("confusion.png", "top_losses.png"):
        with Image.open(files[name]) as image:
            assert image.format == "PNG" and min(image.size) > 200
    with files["most_confused.csv"].open() as stream:
        rows = list(csv.DictReader(stream))
    assert [(r["actual"], r["predicted"], int(r["count"])) for r in rows] == [
        (p.actual, p.predicted, p.count) for p in interp.most_confused()
    ]
    with files["per_class.csv"].open() as stream:
        per_class = list(csv.DictReader(stream))
    assert [r["class"] for r in per_class[:3]] == ["blue", "green", "red"]
    assert sum(int(r["support"]) for r in per_class[:3]) == len(interp.targets)
    page = files["report.html"].read_text()
    assert "http://" not in page.replace("https://images.example.org", "")
    assert page.count("data:image/png;base64,") == 5  # confusion ×2, history, top losses, ECE


def test_report_names_the_known_limits_and_the_sources(trained: Trained, tmp_path: Path) -> None:
    page = trained.learner.interpret().report(tmp_path / "card.html", k=3).read_text()
    for section in ("data", "training", "metrics", "confusion", "most-confused", "top-losses",
                    "calibration", "limits"):  # fmt: skip
        assert f'<section id="{section}">' in page
    assert "copies of training images (leakage)" in page
    assert Path(LEAK).name in page and "train/red/03.png" in page
    assert "fewer than 10 validation images (&#39;blue&#39; 8" in page  # red: 9
    assert "cc-by 4.0" in page and "Ann Example" in page and "openverse" in page
    assert "no recorded licence" in page  # most images were added by hand
    # fine_tune's first fit is the head fit: no epochs or rates to show for it.
    head_row = page[page.index("fit 1") :][:200]
    assert "head fitted on the frozen body" in head_row and "weight decay" in head_row, head_row
    assert "lr []" not in page


def test_errors_say_what_to_do(trained: Trained, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="split='test'"):
        trained.learner.interpret("test")
    other = make_class_folder(tmp_path / "other", per_class=3)
    (other / "red").rename(other / "purple")
    bundle = trained.learner.export(tmp_path / "m.ursa")
    with pytest.raises(DataError, match="classes the model does not know: purple"):
        Interpretation.from_bundle(bundle, other, "all")
    with pytest.raises(BundleError, match="no such bundle"):
        Interpretation.from_bundle(tmp_path / "missing.ursa", other)
    only_train = ImageData.from_folder(other, valid_pct=0.0, size=32, num_workers=0)
    with pytest.raises(DataError, match="no validation images"):
        Interpretation.from_bundle(bundle, only_train)
    with pytest.raises(ConfigError, match="k=0"):
        trained.learner.interpret().top_losses(0)
