"""The journal alone (no model, no server): decisions, undo, collisions, conflicts, recovery."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.clean.conftest import assert_journal_matches_disk, class_files, snapshot
from tests.conftest import make_class_folder
from ursa.clean.journal import ConflictError, Journal, UnknownImageError
from ursa.core.errors import DataError
from ursa.core.manifest import MANIFEST_NAME, QUARANTINE_DIR, Manifest
from ursa.data.core import ImageData


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """blue / green / red × 4 PNGs."""
    return make_class_folder(tmp_path / "colours", per_class=4)


def by_path(journal: Journal) -> dict[str, int]:
    return {image.path: image.id for image in journal.images()}


def test_sync_gives_every_image_a_stable_id(folder: Path) -> None:
    with Journal(folder) as journal:
        assert journal.sync() == 12
        first = by_path(journal)
        assert journal.sync() == 0  # nothing changed: nothing re-hashed or re-numbered
    (folder / "red" / "00.png").unlink()
    with Journal(folder) as journal:
        assert journal.sync() == 1
        assert by_path(journal) == {p: i for p, i in first.items() if p != "red/00.png"}


def test_relabel_delete_keep_and_undo_move_files_and_journal(folder: Path) -> None:
    before = snapshot(folder)
    with Journal(folder) as journal:
        journal.sync()
        ids = by_path(journal)
        moved = journal.relabel(ids["red/01.png"], "blue")
        assert moved.new_path == "blue/01-1.png"  # blue/01.png exists: no overwrite
        deleted = journal.delete(ids["green/02.png"])
        assert deleted.new_path == f"{QUARANTINE_DIR}/green/02.png"
        kept = journal.keep(ids["blue/00.png"])
        assert snapshot(folder)["blue/01-1.png"] == before["red/01.png"]  # same bytes, moved
        assert ("green", "02.png") not in class_files(folder)
        assert (folder / QUARANTINE_DIR / "green/02.png").is_file()
        assert journal.image(ids["blue/00.png"]).reviewed
        summary = journal.summary()
        assert (summary.relabeled, summary.deleted, summary.kept) == (1, 1, 1)
        assert_journal_matches_disk(folder)

        undone = journal.undo_all()
        assert [entry.undoes for entry in undone] == [kept.id, deleted.id, moved.id]
        assert journal.summary().undone == 3
    assert snapshot(folder) == before  # every byte back where it was
    assert_journal_matches_disk(folder)


def test_manifest_rows_follow_the_files(folder: Path) -> None:
    with Journal(folder) as journal:
        journal.sync()
        ids = by_path(journal)
        entry = journal.relabel(ids["red/01.png"], "green")
        journal.delete(ids["blue/03.png"])
    with Manifest(folder, create=False) as manifest:
        assert manifest.get("red/01.png") is None
        moved = manifest.get(entry.new_path)
        deleted = manifest.get("blue/03.png")
    assert moved is not None and (moved.label, moved.status) == ("green", "relabeled")
    assert deleted is not None and deleted.status == "deleted"
    assert deleted.quarantine_path == f"{QUARANTINE_DIR}/blue/03.png"


def test_a_relabel_stays_relabeled_through_a_delete_and_its_undo(folder: Path) -> None:
    with Journal(folder) as journal:
        journal.sync()
        ids = by_path(journal)
        moved = journal.relabel(ids["red/01.png"], "green")
        deleted = journal.delete(moved.image_id)
        journal.undo(deleted.id)  # the file comes back, still relabeled
        with Manifest(folder, create=False) as manifest:
            row = manifest.get(moved.new_path)
            assert row is not None and (row.label, row.status) == ("green", "relabeled")
        back = journal.relabel(moved.image_id, "red")  # moved back by hand: no longer relabeled
    with Manifest(folder, create=False) as manifest:
        row = manifest.get(back.new_path)
    assert row is not None and (row.label, row.status) == ("red", "ok")


def test_training_reads_the_new_labels(folder: Path) -> None:
    with Journal(folder) as journal:
        journal.sync()
        ids = by_path(journal)
        journal.relabel(ids["red/00.png"], "blue")
        journal.delete(ids["green/00.png"])
    data = ImageData.from_folder(folder, valid_pct=0.0, size=32)
    labelled = {(item.label, item.path.name) for item in data.train_items}
    assert ("blue", "00-1.png") in labelled and ("red", "00.png") not in labelled
    counts = data.counts()["train"]
    assert counts == {"blue": 5, "green": 3, "red": 3}  # the quarantine is not read


def test_a_decision_on_a_stale_version_is_refused(folder: Path) -> None:
    with Journal(folder) as journal:
        journal.sync()
        image = journal.image(by_path(journal)["red/02.png"])
        journal.relabel(image.id, "blue", version=image.version)  # tab one
        with pytest.raises(ConflictError, match="changed since this page showed it"):
            journal.delete(image.id, version=image.version)  # tab two, same stale view
        assert (folder / "blue/02-1.png").is_file()
        assert_journal_matches_disk(folder)


def test_bad_requests_change_nothing(folder: Path) -> None:
    before = snapshot(folder)
    with Journal(folder) as journal:
        journal.sync()
        red = by_path(journal)["red/00.png"]
        with pytest.raises(UnknownImageError):
            journal.delete(10_000)
        with pytest.raises(DataError, match="no class 'purple'"):
            journal.relabel(red, "purple")
        with pytest.raises(DataError, match="no class"):
            journal.relabel(red, "../blue")
        with pytest.raises(DataError, match="already in red"):
            journal.relabel(red, "red")
        with pytest.raises(UnknownImageError, match="no decision #7"):
            journal.undo(7)
        assert journal.history() == []
    assert snapshot(folder) == before


def test_undo_in_the_wrong_order_names_the_decision_to_undo_first(folder: Path) -> None:
    with Journal(folder) as journal:
        journal.sync()
        image_id = by_path(journal)["red/03.png"]
        first = journal.relabel(image_id, "blue")
        second = journal.relabel(image_id, "green")
        with pytest.raises(ConflictError, match=f"undo #{second.id} first"):
            journal.undo(first.id)
        journal.undo(second.id)
        journal.undo(first.id)
        with pytest.raises(ConflictError, match="already undone"):
            journal.undo(first.id)
        assert journal.image(image_id).path == "red/03.png"


def test_split_folders_keep_their_split(tmp_path: Path) -> None:
    root = tmp_path / "split"
    make_class_folder(root / "train", per_class=2)
    make_class_folder(root / "valid", per_class=1)
    with Journal(root) as journal:
        journal.sync()
        ids = by_path(journal)
        entry = journal.relabel(ids["valid/red/00.png"], "green")
    assert entry.new_path == "valid/green/00-1.png"
    with Manifest(root, create=False) as manifest:
        row = manifest.get("valid/green/00-1.png")
    assert row is not None and row.split == "valid"


def _pending(folder: Path, fault: str) -> None:
    """Relabel red/00.png to blue in a child process that kills itself at ``fault``."""
    code = (
        "import sys; from ursa.clean.journal import Journal\n"
        f"j = Journal(sys.argv[1], fault={fault!r}); j.sync()\n"
        "i = next(i for i in j.images() if i.path == 'red/00.png')\n"
        "j.relabel(i.id, 'blue')\n"
    )
    child = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True)
    assert child.returncode == -9, child.stderr.decode()
    with sqlite3.connect(folder / MANIFEST_NAME) as db:
        states = db.execute("SELECT state FROM clean_journal").fetchall()
    assert states == [("pending",)]  # the crash left the intent, not the outcome


def test_a_crash_after_the_move_is_finished_on_restart(folder: Path) -> None:
    _pending(folder, "after-move")
    assert (folder / "blue/00-1.png").is_file()  # moved, but not yet marked done
    with Journal(folder) as journal:
        [entry] = journal.history()
        assert entry.state == "done"
        assert journal.image(entry.image_id).label == "blue"
    assert_journal_matches_disk(folder)


def test_a_crash_before_the_move_is_rolled_back_on_restart(folder: Path) -> None:
    _pending(folder, "before-move")
    with Journal(folder) as journal:
        [entry] = journal.history()
        assert entry.state == "rolled_back" and "old place" in entry.note
        assert journal.image(entry.image_id).label == "red"
    assert (folder / "red/00.png").is_file() and not (folder / "blue/00-1.png").exists()
    assert_journal_matches_disk(folder)


def test_the_interpretation_report_counts_what_was_cleaned(folder: Path) -> None:
    from ursa.interpret.report import source_summary

    with Journal(folder) as journal:
        journal.sync()
        ids = by_path(journal)
        journal.relabel(ids["red/00.png"], "blue")
        journal.delete(ids["green/01.png"])
        journal.keep(ids["green/02.png"])
    sources = source_summary(ImageData.from_folder(folder, valid_pct=0.25, size=32))
    assert sources is not None and (sources.relabeled, sources.deleted) == (1, 1)
