"""Any file as a picture: BytesInput and from_bytes_folder."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ursa.core.bytesimage import BytesInput
from ursa.core.errors import ConfigError, ImageError
from ursa.core.preprocess import PreprocessConfig, prepare_input
from ursa.core.sources import source_from_dict
from ursa.data.core import ImageData


def test_bytes_are_laid_out_row_by_row_and_zero_padded() -> None:
    data = bytes(range(256)) * 2 + b"\xff\x80\x01"  # 515 bytes
    pixels = BytesInput(width=64).pixels(data)
    assert pixels.shape == (9, 64) and pixels.dtype == np.uint8  # ceil(515 / 64) rows
    flat = pixels.reshape(-1)
    np.testing.assert_array_equal(flat[:515], np.frombuffer(data, dtype=np.uint8))
    assert (flat[515:] == 0).all()
    assert pixels[1, 0] == 64 and pixels[8, 2] == 1  # byte i sits at (i // 64, i % 64)


def test_open_gives_a_gray_rgb_picture_of_fixed_width(tmp_path: Path) -> None:
    path = tmp_path / "program.bin"
    path.write_bytes(os.urandom(1000))
    source = BytesInput(width=32)
    picture = source.open(path)
    assert picture.mode == "RGB" and picture.size == (32, 32)  # ceil(1000 / 32) = 32 rows
    array = np.asarray(picture)
    assert (array[..., 0] == array[..., 2]).all()
    for same in (path.read_bytes(), io.BytesIO(path.read_bytes()), str(path)):
        np.testing.assert_array_equal(np.asarray(source.open(same)), array)
    assert BytesInput(width=100).open(b"tiny").size == (100, 1)


def test_matches_every_visible_file_or_the_chosen_suffixes() -> None:
    anything = BytesInput()
    assert anything.matches("a/b/program.exe") and anything.matches("README")
    assert not anything.matches("folder/.hidden")
    chosen = BytesInput(suffixes=frozenset({".exe", ".dll"}))
    assert chosen.matches("x/LIB.DLL") and not chosen.matches("notes.txt")
    assert chosen.extensions == {".exe", ".dll"}


def test_errors_name_the_file_and_the_fix(tmp_path: Path) -> None:
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match="empty") as caught:
        BytesInput().open(empty)
    assert caught.value.source == str(empty)
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 5000)
    with pytest.raises(ImageError, match="5,000 bytes, over the limit of 4,096 bytes"):
        BytesInput(max_bytes=4096).open(big)
    with pytest.raises(ImageError, match="over the limit"):
        BytesInput(max_bytes=4096).open(io.BytesIO(b"x" * 5000))
    with pytest.raises(ImageError, match="no such file"):
        BytesInput().open(tmp_path / "missing.bin")
    with pytest.raises(ImageError, match="not a decoded picture"):
        BytesInput().open(Image.new("RGB", (4, 4)))


def test_settings_round_trip_and_bad_ones_are_named() -> None:
    source = BytesInput(width=128, max_bytes=1 << 20, suffixes=frozenset({".exe", ".dll"}))
    recorded = json.loads(json.dumps(source.to_dict()))
    assert recorded == {
        "kind": "bytes",
        "width": 128,
        "max_bytes": 1 << 20,
        "suffixes": [".dll", ".exe"],
    }
    assert source_from_dict(recorded) == source
    assert BytesInput.from_dict({"kind": "bytes"}) == BytesInput()
    config = PreprocessConfig(size=32, resize="squish", input=source)
    assert PreprocessConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ConfigError, match="unknown bytes settings: height"):
        BytesInput.from_dict({"kind": "bytes", "height": 3})
    with pytest.raises(ConfigError) as caught:
        BytesInput(width=3, max_bytes=0, suffixes=frozenset({"exe"}))
    message = str(caught.value)
    assert "width=3" in message and "max_bytes=0" in message and "suffixes=['exe']" in message
    with pytest.raises(ConfigError, match="give a list"):
        BytesInput.from_dict({"kind": "bytes", "suffixes": ".exe"})


def _write_files(root: Path, per_class: int = 8) -> Path:
    """Two kinds of file: text (printable bytes, many spaces) and random bytes."""
    rng = np.random.default_rng(0)
    words = [b"bear", b"grizzly", b"teddy", b"black", b"honey", b"forest"]
    for label in ("random", "text"):
        (root / label).mkdir(parents=True)
        for index in range(per_class):
            size = int(rng.integers(300, 3000))
            if label == "random":
                data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
            else:
                data = b" ".join(words[i] for i in rng.integers(0, len(words), size // 6))
            (root / label / f"{index:02d}.dat").write_bytes(data)
    return root


def test_from_bytes_folder_reads_every_file_the_same_way_everywhere(tmp_path: Path) -> None:
    root = _write_files(tmp_path / "files")
    (root / "text" / ".hidden").write_bytes(b"never looked at")
    (root / "text" / "empty.dat").write_bytes(b"")
    data = ImageData.from_bytes_folder(
        root, width=64, size=32, valid_pct=0.25, num_workers=0, batch_size=16
    )
    assert data.class_names == ["random", "text"]
    assert len(data.train_items) + len(data.valid_items) == 16
    assert [Path(e.source).name for e in data.skipped] == ["empty.dat"]
    assert data.config.resize == "squish" and data.config.augment == "none"
    assert data.config.input == BytesInput(width=64)
    config = PreprocessConfig(size=32, resize="squish", input=data.config.input)
    _, valid = data.dataloaders(config)
    inputs, _ = next(iter(valid))
    for tensor, item in zip(inputs.numpy(), data.valid_items, strict=True):
        np.testing.assert_allclose(prepare_input(item.path, config), tensor, atol=1e-6, rtol=0)
    only = ImageData.from_bytes_folder(root, suffixes=[".DAT"], valid_pct=0.25)
    assert only.config.input == BytesInput(suffixes=frozenset({".dat"}))
    with pytest.raises(ConfigError, match="drop input"):
        ImageData.from_bytes_folder(root, input=BytesInput())
