"""Every figure ursa returns shows as an image in IPython, and every plot's path is optional."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pytest
from IPython.core.formatters import DisplayFormatter
from PIL import Image

from tests.notebook.conftest import Trained
from ursa.core.errors import ConfigError

PNG = b"\x89PNG\r\n\x1a\n"


def displayed_png(figure: Any) -> bytes:
    """What IPython's own display formatter (as a kernel runs it, no magic) makes of
    ``figure``: the PNG bytes, or a failure naming the formats it got instead."""
    data, _ = DisplayFormatter().format(figure)
    assert "image/png" in data, f"IPython shows only {sorted(data)}: {data.get('text/plain')}"
    png = data["image/png"]
    return png if isinstance(png, bytes) else bytes(png)


def pixels(png: bytes) -> np.ndarray:
    assert png.startswith(PNG)
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float32)


@pytest.fixture(scope="module")
def interp(trained: Trained) -> Any:
    return trained.learner.interpret()


@pytest.fixture
def other_backend() -> Iterator[str]:
    """A global backend other than Agg, put back afterwards: drawing must not switch it."""
    before = matplotlib.get_backend()
    matplotlib.use("svg")
    yield "svg"
    matplotlib.use(before)


FIGURES: dict[str, Callable[[Trained, Any], Any]] = {
    "show_batch": lambda t, i: t.data.show_batch(n=4),
    "show_batch valid": lambda t, i: t.data.show_batch(n=4, split="valid"),
    "show_augmentations": lambda t, i: t.data.show_augmentations(n=3),
    "learner.plot_history": lambda t, i: t.learner.plot_history(),
    "lr_find().plot": lambda t, i: t.learner.lr_find(steps=10, end_lr=1.0).plot(),
    "plot_confusion_matrix": lambda t, i: i.plot_confusion_matrix(normalize=True),
    "plot_top_losses": lambda t, i: i.plot_top_losses(4, heatmap=True),
    "plot_calibration": lambda t, i: i.plot_calibration(),
    "interp.plot_history": lambda t, i: i.plot_history(),
}


@pytest.mark.parametrize("name", FIGURES)
def test_every_figure_displays_as_a_png_without_magic(
    name: str, trained: Trained, interp: Any, other_backend: str
) -> None:
    figure = FIGURES[name](trained, interp)
    drawn = pixels(displayed_png(figure))
    assert drawn.shape[0] > 100 and drawn.shape[1] > 100
    assert drawn.std() > 10  # axes, text and images, not a blank canvas
    assert matplotlib.get_backend() == other_backend  # nothing global was switched


def test_plot_paths_are_optional_and_a_given_path_gets_the_same_figure(
    trained: Trained, interp: Any, tmp_path: Path
) -> None:
    learner = trained.learner
    found = learner.lr_find(steps=10, end_lr=1.0)
    plots: dict[str, Callable[[str | Path | None], Any]] = {
        "history": lambda path: learner.plot_history(path),
        "lr": lambda path: found.plot(path),
        "confusion": lambda path: interp.plot_confusion_matrix(path=path),
        "top_losses": lambda path: interp.plot_top_losses(3, path=path),
        "calibration": lambda path: interp.plot_calibration(path=path),
        "interp_history": lambda path: interp.plot_history(path=path),
        "batch": lambda path: trained.data.show_batch(n=4, path=path, seed=3),
    }
    for name, plot in plots.items():
        figure = plot(None)  # no path: only the figure, nothing written
        assert hasattr(figure, "savefig"), name
        target = tmp_path / "figures" / f"{name}.png"
        again = plot(target)
        assert hasattr(again, "savefig"), name  # the figure, not the path
        assert pixels(target.read_bytes()).std() > 10, name
    written = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert written == sorted(f"{name}.png" for name in plots)  # no temporary file left


def test_plot_history_before_training_says_what_to_do(trained: Trained) -> None:
    from ursa.train import Learner, SilentLogger

    fresh = Learner(trained.data, arch=trained.learner.arch, pretrained=False,
                    logger=SilentLogger())  # fmt: skip
    with pytest.raises(ConfigError, match="after fitting"):
        fresh.plot_history()
