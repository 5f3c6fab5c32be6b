"""examples/first-model.ipynb runs top to bottom in a real kernel: figures as images, the
reprs as tables, progress in place, nothing on stderr."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.notebook.conftest import execute, nbformat, stderr_of

NOTEBOOK = Path(__file__).parents[2] / "examples" / "first-model.ipynb"

#: What each figure cell calls; each must end in one PNG image and no text-only figure.
FIGURE_CALLS = ("show_batch(", "found.plot(", "plot_history(", "plot_confusion_matrix(",
                "plot_top_losses(")  # fmt: skip


@pytest.mark.slow
def test_first_model_notebook_runs_clean_with_inline_figures(tmp_path: Path) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    run = execute(notebook, tmp_path)  # raises CellExecutionError if any cell fails

    assert stderr_of(run) == []  # no warning, no traceback, no red text
    figures = 0
    for index, cell in run.code_cells():
        outputs = run.outputs(index)
        assert all(o["output_type"] != "error" for o in outputs)
        shown = [o["data"] for o in outputs if "data" in o]
        # A figure shown as the text "<Figure size ...>" alone is what the issue found.
        assert not any(list(d) == ["text/plain"] and "Figure" in d["text/plain"] for d in shown)
        if any(call in cell.source for call in FIGURE_CALLS):
            images = [d["image/png"] for d in shown if "image/png" in d]
            assert len(images) == 1, (cell.source, outputs)
            with Image.open(io.BytesIO(base64.b64decode(images[0]))) as image:
                pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
            assert pixels.shape[0] > 200 and pixels.std() > 20, cell.source
            figures += 1
    assert figures == len(FIGURE_CALLS)

    def result_of(start: str) -> dict[str, str]:
        cell = next(c for _, c in run.code_cells() if c.source.startswith(start))
        return next(o["data"] for o in cell.outputs if o["output_type"] == "execute_result")

    data = result_of("data = ursa.ImageData")
    assert "<table>" in data["text/html"] and len(data["text/plain"]) < 1500
    assert data["text/plain"].startswith("ImageData: 10 classes, 240 training and 60 validation")
    assert "text/html" in result_of("learner = ursa.Learner")
    assert result_of("interp = learner.interpret()")["text/plain"].startswith("Interpretation")
    assert "suggestion (valley)" in result_of("found = learner.lr_find()")["text/plain"]

    training = next(c for _, c in run.code_cells() if "fine_tune(" in c.source)
    shown = [o["data"]["text/html"] for o in training.outputs if o["output_type"] == "display_data"]
    bar, table = shown
    assert "<progress" in bar and "done in" in bar
    assert table.count("<tr>") == 4  # header, the head fit, one unfrozen epoch, the average
    assert any("held-back digits right:" in o.get("text", "") for _, c in run.code_cells()
               for o in c.outputs)  # fmt: skip
    assert (tmp_path / "first-model" / "digits.ursa").is_file()
