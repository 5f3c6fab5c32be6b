"""Training progress in a real Jupyter kernel: a bar that moves in place above the epoch
table, chosen automatically, with nothing on stderr; a script keeps plain text."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TINY_ARCH, make_class_folder
from tests.notebook.conftest import Run, errors_of, execute, notebook_of, stderr_of


def html_of(outputs: list[dict[str, Any]]) -> list[str]:
    return [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    folder = tmp_path_factory.mktemp("progress")
    make_class_folder(folder / "colours", per_class=20)
    setup = textwrap.dedent(f"""
        import ursa
        from ursa.train.progress import NotebookLogger
        data = ursa.ImageData.from_folder(
            "colours", size=32, batch_size=4, num_workers=0, seed=0, cache=False
        )
        learner = ursa.Learner(data, arch={TINY_ARCH!r}, pretrained=False)
        print(type(learner.logger).__name__)
    """)
    notebook = notebook_of(
        setup,
        "first = learner.fit_one_cycle(2, 1e-3)",
        # every=0: redraw after every batch, so the test sees each step of the bar
        "learner.logger = NotebookLogger(every=0)\nsecond = learner.fit_one_cycle(1, 1e-3)",
    )
    return execute(notebook, folder, allow_errors=True)  # each test says what went wrong


def test_a_kernel_gets_the_notebook_logger_and_no_warning(run: Run) -> None:
    assert errors_of(run) == []
    setup = run.outputs(0)
    assert [o.get("text") for o in setup] == ["NotebookLogger\n"]
    assert stderr_of(run) == []  # no TqdmWarning when the Learner is created, or later


def test_the_table_lists_each_epoch_below_the_bar(run: Run) -> None:
    bar, table = html_of(run.outputs(1))  # two displays, updated in place; nothing else
    assert "<progress" in bar and "epoch 1 (all) done in" in bar
    assert table.count("<tr>") == 3 and "train_loss" in table  # header and two epochs
    plain = [o["data"]["text/plain"] for o in run.outputs(1)]
    assert plain[1].splitlines()[0].split()[:3] == ["epoch", "phase", "train_loss"]


def test_the_bar_moves_within_an_epoch_with_the_time_left(run: Run) -> None:
    texts = [u["data"]["text/plain"] for u in run.updates]
    bars = [t for t in texts if "epoch 2 (all): " in t]  # the third cell's epoch
    # 48 training images in batches of 4: 12 steps, each drawn (every=0), then validation
    done = [int(re.search(r": (\d+)/12,", t).group(1)) for t in bars]  # type: ignore[union-attr]
    assert done == list(range(13))
    assert all(re.search(r"\d\d:\d\d left, loss \d\.\d{4}$", t) for t in bars[1:-1])
    assert "12/12" in bars[-1] and "validating" in bars[-1]  # the bar says what it waits for
    # A new cell got its own bar and table; the first cell's table still holds its two epochs.
    bar, table = html_of(run.outputs(2))
    assert "epoch 2 (all) done in" in bar and table.count("<tr>") == 2
    assert html_of(run.outputs(1))[1].count("<tr>") == 3


def test_a_script_keeps_plain_text(tmp_path: Path) -> None:
    from ursa.train.progress import NotebookLogger, PrintLogger, default_logger

    assert isinstance(default_logger(), PrintLogger)  # pytest is no kernel
    folder = make_class_folder(tmp_path / "colours", per_class=20)
    script = textwrap.dedent(f"""
        import ursa
        data = ursa.ImageData.from_folder({str(folder)!r}, size=32, batch_size=4, num_workers=0,
                                          cache=False)
        learner = ursa.Learner(data, arch={TINY_ARCH!r}, pretrained=False)
        print(type(learner.logger).__name__)
        learner.fit_one_cycle(1, 1e-3)
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True
    )
    lines = result.stdout.splitlines()
    assert lines[0] == "PrintLogger"
    assert lines[1].split()[:2] == ["epoch", "phase"] and lines[2].split()[:2] == ["0", "all"]
    assert "<" not in result.stdout  # no HTML in a terminal
    assert not isinstance(default_logger(), NotebookLogger)
