from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_class_folder
from ursa.core.errors import ConfigError, DataError
from ursa.core.items import Item, random_split
from ursa.core.preprocess import MAX_SIZE, MIN_SIZE, PreprocessConfig
from ursa.data.core import DataConfig, ImageData


def _items(n_per_class: int) -> list[Item]:
    return [
        Item(Path(f"/d/{label}/{i:03d}.png"), label) for label in "abc" for i in range(n_per_class)
    ]


def test_random_split_is_reproducible_and_stratified() -> None:
    items = _items(20)
    train_a, valid_a = random_split(items, 0.25, seed=7)
    train_b, valid_b = random_split(list(reversed(items)), 0.25, seed=7)
    assert valid_a == valid_b and train_a == train_b  # order of discovery does not matter
    assert len(valid_a) == 15 and len(train_a) == 45
    assert sorted({i.label for i in valid_a}) == ["a", "b", "c"]
    assert all(sum(i.label == c for i in valid_a) == 5 for c in "abc")
    _, valid_other = random_split(items, 0.25, seed=8)
    assert valid_other != valid_a


def test_split_values_are_fixed_for_a_seed() -> None:
    # The split must be the same on every machine and numpy version with PCG64.
    _, valid = random_split(_items(10), 0.2, seed=42)
    names = sorted(i.path.name for i in valid if i.label == "a")
    assert len(names) == 2
    again = sorted(i.path.name for i in random_split(_items(10), 0.2, seed=42)[1] if i.label == "a")
    assert names == again


def test_from_folder_random_split(colour_folder: Path) -> None:
    data = ImageData.from_folder(colour_folder, valid_pct=0.25, seed=1, size=32)
    assert data.class_names == ["blue", "green", "red"]
    assert len(data.train_items) == 27 and len(data.valid_items) == 9
    assert not set(data.train_items) & set(data.valid_items)
    assert len(data.fingerprint) == 64


def test_from_folder_uses_existing_train_valid_folders(tmp_path: Path) -> None:
    make_class_folder(tmp_path / "split" / "train", per_class=5)
    make_class_folder(tmp_path / "split" / "valid", per_class=2, seed=3)
    data = ImageData.from_folder(tmp_path / "split", size=32)
    assert len(data.train_items) == 15 and len(data.valid_items) == 6
    assert all("valid" in item.path.parts for item in data.valid_items)


def test_valid_class_missing_from_train_is_an_error(tmp_path: Path) -> None:
    make_class_folder(tmp_path / "s" / "train", per_class=3)
    make_class_folder(tmp_path / "s" / "valid", per_class=2)
    (tmp_path / "s" / "valid" / "purple").mkdir()
    (tmp_path / "s" / "train" / "red").rename(tmp_path / "s" / "train_red_elsewhere")
    with pytest.raises(DataError, match="red"):
        ImageData.from_folder(tmp_path / "s", size=32)


def test_messy_folder_skips_and_reports_bad_files(messy_folder: Path) -> None:
    data = ImageData.from_folder(messy_folder, size=32)
    skipped = sorted(Path(e.source).name for e in data.skipped)
    assert skipped == ["empty.jpg", "notes.jpg", "truncated.jpg"]
    assert len(data.train_items) + len(data.valid_items) == 60
    assert "3 unreadable files skipped" in data.summary()


def test_loose_images_get_a_helpful_error(tmp_path: Path) -> None:
    folder = make_class_folder(tmp_path / "x", per_class=2)
    flat = tmp_path / "flat"
    flat.mkdir()
    for path in folder.rglob("*.png"):
        path.rename(flat / f"{path.parent.name}_{path.name}")
    with pytest.raises(DataError, match="loose images"):
        ImageData.from_folder(flat)


def test_one_class_is_not_enough(tmp_path: Path) -> None:
    folder = make_class_folder(tmp_path / "x", per_class=3)
    for name in ("green", "red"):
        for path in (folder / name).iterdir():
            path.unlink()
        (folder / name).rmdir()
    with pytest.raises(DataError, match="at least 2 classes"):
        ImageData.from_folder(folder)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        ImageData.from_folder(tmp_path / "nothing")


def test_data_config_lists_every_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        DataConfig(size=4, valid_pct=1.5, batch_size=0, augment="wild")
    message = str(caught.value)
    for field in ("size=4", "valid_pct=1.5", "batch_size=0", "augment='wild'"):
        assert field in message


@pytest.mark.parametrize("size", [4, 4096, 224.0, True])
def test_the_data_settings_refuse_the_sizes_a_bundle_refuses(size: object) -> None:
    """One size check: a data setting that training would accept but its bundle could not
    hold (a side over MAX_SIZE) is refused at once, with the same line."""
    with pytest.raises(ConfigError) as data:
        DataConfig(size=size)  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as bundle:
        PreprocessConfig(size=size)  # type: ignore[arg-type]
    line = f"size={size!r}: use a whole number of pixels from {MIN_SIZE} to {MAX_SIZE}"
    assert line in str(data.value) and line in str(bundle.value)
