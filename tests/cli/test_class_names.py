"""Class names are data, never markers: classes called ``error``, ``ok``, ``label`` and
``path`` train, predict and export like any other (issue 13)."""

from __future__ import annotations

import csv
from pathlib import Path

from typer.testing import CliRunner

from tests.conftest import TINY_ARCH, make_class_folder
from ursa.cli import app

runner = CliRunner()
NAMES = {"blue": "error", "green": "ok", "red": "label"}


def test_classes_named_like_the_output_columns_train_predict_and_export(tmp_path: Path) -> None:
    folder = make_class_folder(tmp_path / "data", per_class=12)
    for colour, name in NAMES.items():
        (folder / colour).rename(folder / name)
    (folder / "path").mkdir()  # a fourth class, named like the CSV's first column
    for index, image in enumerate(sorted((folder / "label").glob("*.png"))[:6]):
        image.rename(folder / "path" / f"{index:02d}.png")
    bundle = tmp_path / "m.ursa"
    tiny = ["--arch", TINY_ARCH, "--no-pretrained", "--size", "32", "--workers", "0"]
    trained = runner.invoke(app, ["train", str(folder), "-o", str(bundle), *tiny, "--epochs", "1"])
    assert trained.exit_code == 0, trained.output
    exported = runner.invoke(app, ["export", str(bundle), "--onnx"])
    assert exported.exit_code == 0, exported.output

    out = tmp_path / "predictions.csv"
    images = sorted(str(p) for p in folder.rglob("*.png"))
    result = runner.invoke(app, ["predict", str(bundle), *images, "--out", str(out)])
    assert result.exit_code == 0, result.output  # every file was read
    assert "0 unreadable" in result.output
    with out.open() as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == len(images)
    assert all(row["label"] in {"error", "ok", "label", "path"} for row in rows)
    assert not any(row["error"] for row in rows)
    assert any(row["label"] == "error" for row in rows)  # the class called error is predicted

    # and an unreadable file is still told apart from a prediction of the class "error"
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n and nothing else")
    table = runner.invoke(app, ["predict", str(bundle), str(broken), images[0]])
    assert table.exit_code == 1
    lines = [line for line in table.output.splitlines() if line.strip()]
    assert any("broken.png" in line and "unreadable" in line for line in lines), table.output
