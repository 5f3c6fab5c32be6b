"""The cleaner's first predictions report their progress; the CLI draws it as a bar."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from ursa.clean.session import CleanSession
from ursa.cli.clean import PredictionBar


def test_first_predictions_report_each_batch_and_a_restart_none(
    tiny_bundle: tuple[Path, Path], dataset: Path
) -> None:
    calls: list[tuple[int, int]] = []
    session = CleanSession.open(tiny_bundle[0], dataset, batch_size=16, on_predicted=
                                lambda done, total: calls.append((done, total)))  # fmt: skip
    session.close()
    assert calls == [(done, 90) for done in (16, 32, 48, 64, 80, 90)]
    calls.clear()
    CleanSession.open(tiny_bundle[0], dataset, on_predicted=lambda *c: calls.append(c)).close()
    assert calls == []  # everything cached: nothing to predict, no bar


def test_the_bar_shows_done_of_total_and_the_lines_above_it(
    tiny_bundle: tuple[Path, Path], dataset: Path
) -> None:
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=100, color_system=None)
    with PredictionBar(console) as bar:
        CleanSession.open(tiny_bundle[0], dataset, progress=bar.line,
                          on_predicted=bar.update).close()  # fmt: skip
        bar.progress.refresh()
    text = stream.getvalue()
    assert "90 images; predicting 90 (the rest are cached)" in text
    assert "predicting" in text and "90/90" in text and "left" in text
