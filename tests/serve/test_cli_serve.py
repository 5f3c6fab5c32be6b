from __future__ import annotations

import csv
from pathlib import Path

from typer.testing import CliRunner

from tests.export.bundles import copy_bundle
from ursa.cli import app

runner = CliRunner()


def test_predict_folder_and_glob_to_csv(tiny_served: tuple[Path, Path], tmp_path: Path) -> None:
    bundle, folder = tiny_served
    (folder.parent / "extra").mkdir(exist_ok=True)
    bad = folder.parent / "extra" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n but then nothing")
    out = tmp_path / "preds.csv"
    args = ["predict", str(bundle), str(folder), str(folder.parent / "extra" / "*.png")]
    result = runner.invoke(app, [*args, "--out", str(out), "--batch-size", "16"])
    assert result.exit_code == 1  # one file failed ...
    assert "1 unreadable" in result.output
    with out.open() as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 91  # ... every other file answered, in order
    assert rows[-1]["path"] == str(bad) and "not an image" in rows[-1]["error"]
    good = rows[:-1]
    assert all(row["label"] in {"blue", "green", "red"} and not row["error"] for row in good)
    correct = sum(Path(row["path"]).parent.name == row["label"] for row in good)
    assert correct >= 75  # the tiny model knows its colours
    assert len(good[0]["top_k"].split(", ")) == 3
    bad.unlink()


def test_predict_keeps_the_file_table(tiny_served: tuple[Path, Path]) -> None:
    image = sorted(tiny_served[1].rglob("*.png"))[0]
    result = runner.invoke(app, ["predict", str(tiny_served[0]), str(image)])
    assert result.exit_code == 0 and image.name in result.output
    result = runner.invoke(app, ["predict", str(tiny_served[0]), "nothing/*.jpg"])
    assert result.exit_code == 1 and "no image files match" in result.output


def test_bench_reports_every_configuration(tiny_served: tuple[Path, Path], tmp_path: Path) -> None:
    bundle = copy_bundle(tiny_served[0], tmp_path / "m.ursa")
    images = tiny_served[1] / "red"
    args = ["bench", str(bundle), "--images", str(images), "--requests", "20", "--concurrency", "4"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = [line.split("\t") for line in result.output.strip().splitlines()]
    assert lines[0][:3] == ["mode", "precision", "concurrency"]
    seen = {(row[0], row[1], row[2]) for row in lines[1:]}
    for precision in ("fp32", "int8"):
        assert ("in-process", precision, "1") in seen and ("model only", precision, "1") in seen
        assert ("http", precision, "1") in seen and ("http", precision, "4") in seen
    assert all(float(row[7]) > 0 for row in lines[1:])
