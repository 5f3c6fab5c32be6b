"""`ursa train --input audio`: the CLI trains on clips with the audio defaults."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from tests.conftest import TINY_ARCH
from tests.core.test_audio import make_tone_folder
from ursa.cli import app
from ursa.core.bundle import read_bundle

runner = CliRunner()


def test_train_on_clips_records_the_audio_input_and_its_defaults(tmp_path: Path) -> None:
    folder = make_tone_folder(tmp_path / "tones", per_class=6)
    bundle = tmp_path / "tones.ursa"
    args = ["train", str(folder), "-o", str(bundle), "--arch", TINY_ARCH, "--no-pretrained"]
    args += ["--size", "32", "--epochs", "1", "--freeze-epochs", "0", "--workers", "0"]
    result = runner.invoke(app, [*args, "--input", "audio", "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    config = read_bundle(bundle).config
    assert config.preprocess.input.kind == "audio"
    assert config.preprocess.resize == "squish"  # no crop of time or frequency
    assert config.training["augment"] == "none"  # no flips of a clip

    # Flags given explicitly still win over the audio defaults.
    again = runner.invoke(
        app, [*args, "--input", "audio", "--resize", "pad", "--augment", "no_flip"]
    )
    assert again.exit_code == 0, again.output
    config = read_bundle(bundle).config
    assert (config.preprocess.resize, config.training["augment"]) == ("pad", "no_flip")
