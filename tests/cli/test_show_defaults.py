"""``ursa show`` previews the augmentation ``ursa train`` would use for the input."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.conftest import make_class_folder
from tests.core.test_audio import make_tone_folder
from ursa.cli import app

runner = CliRunner()


def test_audio_is_shown_without_augmentation_as_it_trains(tmp_path: Path) -> None:
    pytest.importorskip("soundfile")
    folder = make_tone_folder(tmp_path / "tones", per_class=4)
    out = tmp_path / "shown"
    args = ["show", str(folder), "--input", "audio", "--size", "32", "--out", str(out)]
    result = runner.invoke(app, [*args, "--n", "4", "--draws", "4"])
    assert result.exit_code == 0, result.output
    assert "(augment=none)" in result.output  # as `ursa train --input audio` trains
    with Image.open(out / "augment.png") as image:
        assert image.format == "PNG"
    flipped = runner.invoke(app, [*args, "--augment", "default"])  # asked for: still possible
    assert flipped.exit_code == 0 and "(augment=default)" in flipped.output, flipped.output


def test_images_keep_the_default_augmentation_and_out_must_be_a_folder(tmp_path: Path) -> None:
    folder = make_class_folder(tmp_path / "colours", per_class=4)
    out = tmp_path / "shown"
    result = runner.invoke(app, ["show", str(folder), "--size", "32", "--out", str(out)])
    assert result.exit_code == 0 and "(augment=default)" in result.output, result.output
    (tmp_path / "file").write_text("x")
    result = runner.invoke(app, ["show", str(folder), "--out", str(tmp_path / "file")])
    assert result.exit_code == 1 and "--out" in result.output and "is a file" in result.output
    result = runner.invoke(app, ["show", str(folder), "--augment", "flip"])
    assert result.exit_code == 2 and "is not one of" in result.output
