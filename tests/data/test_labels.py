"""Labels from file names and tables; splits by seed, folder, column and list; the spec."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import CLASS_COLOURS, colour_image, make_class_folder
from ursa.core.errors import ConfigError, DataError
from ursa.core.items import Item
from ursa.data.core import ImageData
from ursa.data.labels import DataSpec, compile_label_pattern, items_from_table, label_from_name

PETS = [f"{breed}_{i}.jpg" for breed in ("beagle", "pug") for i in range(1, 11)]


def write_images(folder: Path, names: list[str], seed: int = 0) -> Path:
    """A tiny JPEG for each name, coloured by the name's first letter (so labels are learnable)."""
    rng = np.random.default_rng(seed)
    colours = list(CLASS_COLOURS.values())
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        colour = colours[ord(Path(name).name[0]) % len(colours)]
        colour_image(colour, rng, size=16).save(path, format="JPEG")
    return folder


def names(items: list[Item]) -> list[str]:
    return sorted(item.path.name for item in items)


# --- regex on file names ---------------------------------------------------------------


def test_regex_labels_pets_style_names(tmp_path: Path) -> None:
    folder = write_images(tmp_path / "pets", [*PETS, "sub/Great_Pyrenees_3.JPG"])
    data = ImageData.from_name_regex(folder, valid_pct=0.25, seed=0, size=16)
    assert data.class_names == ["Great_Pyrenees", "beagle", "pug"]  # sorted, as written
    labels = {item.path.name: item.label for item in data.train_items + data.valid_items}
    assert labels["beagle_10.jpg"] == "beagle" and labels["pug_3.jpg"] == "pug"
    assert data.spec == DataSpec(labels="regex", pattern=r"^(.+)_\d+\.\w+$", split="random")


def test_regex_named_group_is_the_label(tmp_path: Path) -> None:
    folder = write_images(tmp_path / "p", ["2021-cat-a.png", "2022-cat-b.png", "2021-dog-c.png"])
    folder = write_images(folder, ["2023-dog-d.png"])
    data = ImageData.from_name_regex(folder, r"^(\d+)-(?P<label>[a-z]+)-", valid_pct=0.0, size=16)
    assert data.class_names == ["cat", "dog"]
    regex = compile_label_pattern(r"(x)?y")
    assert label_from_name(regex, "y.png") is None  # an empty capture is no label


def test_regex_names_the_files_that_do_not_match_with_a_count(tmp_path: Path) -> None:
    odd = ["README.jpg", "beagle.jpg", "pug-3.jpg", "x.jpg", "y.jpg", "z.jpg", "zz.jpg"]
    folder = write_images(tmp_path / "pets", PETS + odd)
    with pytest.raises(DataError) as error:
        ImageData.from_name_regex(folder, r"^(.+)_\d+\.jpg$", size=16)
    message = str(error.value)
    assert "7 of 27 image files" in message and "README.jpg, beagle.jpg, pug-3.jpg" in message
    assert "and 2 more" in message and "group 1 or a group named 'label'" in message


def test_regex_without_a_group_or_invalid_is_a_config_error(tmp_path: Path) -> None:
    folder = write_images(tmp_path / "pets", PETS)
    with pytest.raises(ConfigError, match="captures nothing"):
        ImageData.from_name_regex(folder, r"^.+_\d+\.jpg$", size=16)
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        ImageData.from_name_regex(folder, r"^(.+_\d+\.jpg$", size=16)


def test_regex_uses_train_and_valid_folders_when_present(tmp_path: Path) -> None:
    write_images(tmp_path / "p" / "train", PETS[:8] + PETS[10:18])
    write_images(tmp_path / "p" / "valid", PETS[8:10] + PETS[18:])
    data = ImageData.from_name_regex(tmp_path / "p", size=16)
    assert names(data.valid_items) == ["beagle_10.jpg", "beagle_9.jpg", "pug_10.jpg", "pug_9.jpg"]
    assert data.spec.split == "folder"


# --- seeded random split: golden values ------------------------------------------------


def test_same_seed_gives_the_same_split_on_any_machine(tmp_path: Path) -> None:
    # numpy's PCG64 default_rng is the same on every platform, and items are ordered by
    # path before shuffling: these names are the split for seed 42, written out.
    folder = write_images(tmp_path / "pets", list(reversed(PETS)))
    data = ImageData.from_name_regex(folder, valid_pct=0.2, seed=42, size=16)
    assert names(data.valid_items) == ["beagle_5.jpg", "beagle_6.jpg", "pug_4.jpg", "pug_8.jpg"]
    flat = ImageData.from_name_regex(folder, valid_pct=0.2, seed=42, stratify=False, size=16)
    assert names(flat.valid_items) == ["beagle_7.jpg", "beagle_9.jpg", "pug_4.jpg", "pug_5.jpg"]
    other = ImageData.from_name_regex(folder, valid_pct=0.2, seed=43, size=16)
    assert names(other.valid_items) != names(data.valid_items)


# --- tables ----------------------------------------------------------------------------


def write_table(path: Path, rows: list[list[str]], delimiter: str = ",") -> Path:
    path.write_text("\n".join(delimiter.join(row) for row in rows) + "\n", encoding="utf-8")
    return path


def pets_rows(valid_values: tuple[str, str] = ("true", "false")) -> list[list[str]]:
    rows = [["file", "breed", "is_valid"]]
    for i, name in enumerate(PETS):
        rows.append([f"images/{name}", name.split("_")[0], valid_values[i % 5 != 0]])
    return rows


def test_csv_labels_and_split_column(tmp_path: Path) -> None:
    write_images(tmp_path / "pets" / "images", PETS)
    table = write_table(tmp_path / "pets" / "labels.csv", pets_rows())
    data = ImageData.from_csv(table, label_col="breed", split_col="is_valid", size=16)
    assert data.class_names == ["beagle", "pug"] and data.root == (tmp_path / "pets").resolve()
    assert names(data.valid_items) == ["beagle_1.jpg", "beagle_6.jpg", "pug_1.jpg", "pug_6.jpg"]
    assert len(data.train_items) == 16
    assert data.spec.to_dict() == {
        "labels": "csv", "split": "column", "csv": "labels.csv", "label_col": "breed",
        "split_col": "is_valid",
    }  # fmt: skip


@pytest.mark.parametrize(
    "values", [("1", "0"), ("yes", "no"), ("valid", "train"), ("Validation", "TRAIN")]
)
def test_split_column_accepts_the_usual_spellings(tmp_path: Path, values: tuple[str, str]) -> None:
    images = write_images(tmp_path / "images", PETS)
    table = write_table(tmp_path / "labels.csv", pets_rows(values))
    data = ImageData.from_csv(table, tmp_path, label_col="breed", split_col="is_valid", size=16)
    assert names(data.valid_items) == ["beagle_1.jpg", "beagle_6.jpg", "pug_1.jpg", "pug_6.jpg"]
    assert images.is_dir()


def test_tsv_and_sniffed_semicolons_read_the_same(tmp_path: Path) -> None:
    write_images(tmp_path / "images", PETS)
    rows = [["label", "path"], *[[n.split("_")[0], f"images/{n}"] for n in PETS]]
    tsv = write_table(tmp_path / "labels.tsv", rows, "\t")
    semicolons = write_table(tmp_path / "labels.csv", rows, ";")
    a = ImageData.from_csv(tsv, valid_pct=0.2, seed=3, size=16)  # path_col: first other column
    b = ImageData.from_csv(semicolons, tmp_path, path_col="path", valid_pct=0.2, seed=3, size=16)
    assert a.valid_items == b.valid_items and a.train_items == b.train_items
    assert a.class_names == ["beagle", "pug"] and len(a.valid_items) == 4


def test_a_missing_column_lists_the_columns_there_are(tmp_path: Path) -> None:
    write_images(tmp_path / "images", PETS)
    table = write_table(tmp_path / "labels.csv", pets_rows())
    with pytest.raises(DataError) as error:
        ImageData.from_csv(table, size=16)  # label_col="label" is not there
    assert "no column 'label'; its columns are: file, breed, is_valid" in str(error.value)
    assert "label_col=" in str(error.value)
    with pytest.raises(DataError, match=r"no column 'fold'.*split_col="):
        ImageData.from_csv(table, label_col="breed", split_col="fold", size=16)


def test_missing_files_are_listed_with_a_count(tmp_path: Path) -> None:
    write_images(tmp_path / "images", PETS[3:])
    table = write_table(tmp_path / "labels.csv", pets_rows())
    with pytest.raises(DataError) as error:
        ImageData.from_csv(table, label_col="breed", size=16)
    message = str(error.value)
    assert "3 of 20 files listed in" in message
    assert "images/beagle_1.jpg, images/beagle_2.jpg, images/beagle_3.jpg" in message
    assert "paths in the table are relative to it" in message


def test_bad_split_values_are_named(tmp_path: Path) -> None:
    write_images(tmp_path / "images", PETS)
    rows = pets_rows()
    rows[2][2], rows[3][2], rows[4][2] = "maybe", "maybe", ""
    table = write_table(tmp_path / "labels.csv", rows)
    with pytest.raises(DataError) as error:
        ImageData.from_csv(table, label_col="breed", split_col="is_valid", size=16)
    message = str(error.value)
    assert "'maybe' (2 rows), '' (1 rows)" in message and "true/false" in message


def test_duplicate_rows_once_and_conflicting_labels_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_images(tmp_path / "images", PETS)
    rows = pets_rows()
    table = write_table(tmp_path / "labels.csv", [*rows, rows[1]])
    with caplog.at_level(logging.WARNING):
        found = items_from_table(table, tmp_path, label_col="breed")
    assert len(found.items) == 20 and found.duplicates == ["images/beagle_1.jpg"]
    assert "lists 1 file(s) twice" in caplog.text
    conflict = write_table(tmp_path / "conflict.csv", [*rows, ["images/beagle_1.jpg", "pug", "0"]])
    with pytest.raises(DataError, match=r"1 file.* two different labels: images/beagle_1\.jpg"):
        items_from_table(conflict, tmp_path, label_col="breed")


def test_rows_without_a_label_and_empty_tables(tmp_path: Path) -> None:
    write_images(tmp_path / "images", PETS)
    rows = pets_rows()
    rows[5][1] = ""
    with pytest.raises(DataError, match=r"1 row\(s\) lack a file name or a label \(lines 6\)"):
        items_from_table(write_table(tmp_path / "a.csv", rows), tmp_path, label_col="breed")
    with pytest.raises(DataError, match="no rows under its header"):
        items_from_table(write_table(tmp_path / "b.csv", rows[:1]), tmp_path, label_col="breed")
    with pytest.raises(DataError, match="does not exist"):
        items_from_table(tmp_path / "none.csv", tmp_path)


# --- explicit validation lists ---------------------------------------------------------


def test_valid_list_from_a_file_and_from_a_python_list(tmp_path: Path) -> None:
    folder = write_images(tmp_path / "pets", PETS)
    listing = tmp_path / "pets" / "valid.txt"
    listing.write_text("# held out\nbeagle_2.jpg\n\n./pug_7.jpg\n", encoding="utf-8")
    data = ImageData.from_name_regex(folder, valid_list=listing, size=16)
    assert names(data.valid_items) == ["beagle_2.jpg", "pug_7.jpg"]
    assert data.spec.split == "list" and data.spec.valid_list == "valid.txt"
    same = ImageData.from_name_regex(folder, valid_list=["beagle_2.jpg", "pug_7.jpg"], size=16)
    assert same.valid_items == data.valid_items and same.spec.valid_list == PETS[1:2] + PETS[16:17]


def test_unknown_names_in_the_valid_list_are_an_error(tmp_path: Path) -> None:
    folder = write_images(tmp_path / "pets", PETS)
    with pytest.raises(DataError) as error:
        ImageData.from_name_regex(folder, valid_list=["pug_2.jpg", "cat_1.jpg", "x/pug_2.jpg"])
    message = str(error.value)
    assert "2 of 3 names in the validation list match no file" in message
    assert "cat_1.jpg, x/pug_2.jpg" in message
    with pytest.raises(DataError, match="does not exist"):
        ImageData.from_name_regex(folder, valid_list=tmp_path / "nothing.txt")
    with pytest.raises(DataError, match="the validation list is empty"):
        ImageData.from_name_regex(folder, valid_list=[])


def test_split_col_and_valid_list_together_is_a_config_error(tmp_path: Path) -> None:
    table = write_table(tmp_path / "labels.csv", pets_rows())
    with pytest.raises(ConfigError, match="not both"):
        ImageData.from_csv(table, split_col="is_valid", valid_list=["beagle_1.jpg"])


# --- small classes, the spec and rebuilding --------------------------------------------


def test_a_class_with_fewer_than_2_images_is_reported(tmp_path: Path) -> None:
    folder = write_images(tmp_path / "pets", [*PETS, "corgi_1.jpg"])
    data = ImageData.from_name_regex(folder, valid_pct=0.2, size=16)
    assert data.small_classes() == {"corgi": 1}
    assert "classes with fewer than 2 images: corgi (1)" in data.summary()
    assert "corgi" in data.class_names  # kept, and trained on


def test_from_spec_rebuilds_the_same_labels_and_split(tmp_path: Path) -> None:
    write_images(tmp_path / "images", PETS)
    table = write_table(tmp_path / "labels.csv", pets_rows())
    by_column = ImageData.from_csv(table, label_col="breed", split_col="is_valid", size=16)
    by_list = ImageData.from_csv(
        table, label_col="breed", valid_list=["beagle_4.jpg", "pug_4.jpg"], size=16
    )
    folder = write_images(tmp_path / "pets", PETS)
    by_regex = ImageData.from_name_regex(folder, valid_pct=0.3, seed=5, size=16)
    for data, settings in ((by_column, {}), (by_list, {}), (by_regex, {"valid_pct": 0.3})):
        spec = data.spec.to_dict()
        again = ImageData.from_spec(spec, data.root, size=16, seed=5, **settings)  # type: ignore[arg-type]
        assert again.train_items == data.train_items and again.valid_items == data.valid_items
        assert again.spec == data.spec and again.fingerprint == data.fingerprint


def test_spec_checks_its_fields() -> None:
    assert DataSpec.from_dict(None) == DataSpec() == DataSpec.from_dict({})
    with pytest.raises(ConfigError, match="needs a pattern"):
        DataSpec(labels="regex")
    with pytest.raises(ConfigError, match="labels='xml'"):
        DataSpec.from_dict({"labels": "xml"})
    with pytest.raises(ConfigError, match="unknown labelling settings: colour"):
        DataSpec.from_dict({"colour": "red"})


def test_folder_labels_with_a_valid_list(tmp_path: Path) -> None:
    make_class_folder(tmp_path / "c", per_class=4)
    data = ImageData.from_folder(tmp_path / "c", valid_list=["red/01.png", "blue/02.png"])
    assert [(i.label, i.path.name) for i in data.valid_items] == [
        ("blue", "02.png"),
        ("red", "01.png"),
    ]
    assert data.spec == DataSpec(split="list", valid_list=["red/01.png", "blue/02.png"])
    again = ImageData.from_spec(data.spec.to_dict(), tmp_path / "c")
    assert again.valid_items == data.valid_items
    make_class_folder(tmp_path / "s" / "train", per_class=2)
    make_class_folder(tmp_path / "s" / "valid", per_class=1)
    with pytest.raises(ConfigError, match="has train/ and valid/ folders, which are its split"):
        ImageData.from_folder(tmp_path / "s", valid_list=["red/00.png"])
