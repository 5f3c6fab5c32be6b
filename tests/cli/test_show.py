"""`ursa show`: batch.png and augment.png, with the shared labelling flags."""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from tests.conftest import make_class_folder
from tests.data.test_labels import PETS, pets_rows, write_images, write_table
from ursa.cli import app

runner = CliRunner()


def test_show_writes_the_batch_grid_and_the_augmentation_preview(tmp_path: Path) -> None:
    folder = make_class_folder(tmp_path / "c", per_class=4)
    out = tmp_path / "out"
    args = ["show", str(folder), "--out", str(out), "--size", "32", "--n", "6", "--draws", "4"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "3 classes, 9 training and 3 validation images" in result.output
    for name in ("batch.png", "augment.png"):
        with Image.open(out / name) as picture:
            assert picture.format == "PNG" and picture.width > 200
    # 6 images make a 3 × 2 grid, 4 draws a 2 × 2 one: the batch is the wider figure
    with Image.open(out / "batch.png") as batch, Image.open(out / "augment.png") as augment:
        assert batch.width > augment.width


def test_show_reads_names_by_regex_and_shows_the_validation_split(tmp_path: Path) -> None:
    folder = write_images(tmp_path / "pets", [*PETS, "corgi_1.jpg"])
    listing = tmp_path / "valid.txt"
    listing.write_text("beagle_3.jpg\npug_3.jpg\n", encoding="utf-8")
    out = tmp_path / "out"
    args = ["show", str(folder), "--pattern", r"^(.+)_\d+\.jpg$", "--valid-list", str(listing)]
    result = runner.invoke(app, [*args, "--out", str(out), "--size", "32", "--split", "valid"])
    assert result.exit_code == 0, result.output
    assert "3 classes, 19 training and 2 validation images" in result.output
    assert "classes with fewer than 2 images: corgi (1)" in result.output
    assert (out / "batch.png").is_file() and (out / "augment.png").is_file()


def test_show_reads_a_table_and_reports_its_errors(tmp_path: Path) -> None:
    write_images(tmp_path / "images", PETS)
    write_table(tmp_path / "labels.csv", pets_rows())
    base = ["show", str(tmp_path), "--csv", str(tmp_path / "labels.csv"), "--size", "32"]
    out = ["--out", str(tmp_path / "out")]
    result = runner.invoke(app, [*base, *out, "--label-col", "breed", "--split-col", "is_valid"])
    assert result.exit_code == 0, result.output
    assert "2 classes, 16 training and 4 validation images" in result.output

    result = runner.invoke(app, [*base, *out])
    assert result.exit_code == 1 and "no column 'label'; its columns are" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, [*base, *out, "--label-col", "breed", "--pattern", "(x)"])
    assert result.exit_code == 1 and "--pattern labels files by name" in result.output
    result = runner.invoke(app, ["show", str(tmp_path / "images"), "--labels", "xml", *out])
    assert result.exit_code == 2 and "'xml' is not one of 'folder'" in result.output
