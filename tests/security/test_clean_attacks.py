"""Attacks on ``ursa clean`` (issue 14): hostile journal rows, hostile class names, symlinks
that lead out of the dataset, huge unauthenticated bodies, and IPv6 loopback.

Every test runs the real journal on real files and a real SQLite manifest; the server tests
run the real app under uvicorn on loopback and talk to it over a socket. No model is loaded:
the session is built from the journal alone (the cleaner's checks do not need predictions).
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.clean.conftest import clean_server, snapshot
from tests.conftest import make_class_folder
from tests.export.bundles import shared_tiny_bundle
from ursa.clean.app import check_port, create_app, page_url
from ursa.clean.journal import Journal
from ursa.clean.session import CleanSession
from ursa.clean.settings import CleanSettings
from ursa.clean.thumbnails import CACHE_DIR, Thumbnails
from ursa.cli import app
from ursa.core.errors import DataError
from ursa.core.manifest import LOCK_NAME, MANIFEST_NAME, QUARANTINE_DIR, Manifest

CLASSES = ["blue", "green", "red"]
runner = CliRunner()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """blue / green / red × 3 PNGs, two levels below ``tmp_path`` so that a name climbing
    two levels out lands in ``tmp_path/outside``, still inside the test's own folder."""
    return make_class_folder(tmp_path / "deep" / "colours", per_class=3)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """Where an attack would put (or take) files: next to the dataset, not in it."""
    return tmp_path / "outside"


def execute(folder: Path, sql: str, parameters: tuple[Any, ...] = ()) -> None:
    """Change the manifest behind the cleaner's back, as a shared ``ursa.sqlite`` can."""
    with contextlib.closing(sqlite3.connect(folder / MANIFEST_NAME)) as db, db:
        db.execute(sql, parameters)


def journal_rows(folder: Path) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(folder / MANIFEST_NAME)) as db:
        return db.execute("SELECT id, state, note FROM clean_journal ORDER BY id").fetchall()


def ids(journal: Journal) -> dict[str, int]:
    return {image.path: image.id for image in journal.images()}


def relabeled(folder: Path) -> int:
    """Relabel red/00.png to green (it lands as green/00-1.png); the decision's number."""
    with Journal(folder) as journal:
        journal.sync()
        return journal.relabel(ids(journal)["red/00.png"], "green").id


def session_for(folder: Path, class_names: list[str]) -> CleanSession:
    """A cleaning session without a model: every image listed, none predicted."""
    journal = Journal(folder, class_names=class_names)
    journal.sync()
    thumbnails = Thumbnails(journal.root / CACHE_DIR / "thumbnails", 64)
    return CleanSession(journal, class_names, {}, {}, {}, thumbnails)


@contextlib.contextmanager
def page_client(folder: Path, class_names: list[str] = CLASSES) -> Iterator[tuple[TestClient, str]]:
    """The app in-process, with a session on ``folder``; ``(client, the page's token)``."""
    settings = CleanSettings(bundle=folder / "m.ursa", data=folder)
    application = create_app(settings, session_for(folder, class_names))
    with TestClient(application, base_url="http://127.0.0.1") as client:
        html = client.get("/").text
        yield client, html.split('name="ursa-token" content="')[1].split('"')[0]


def image_ids(client: TestClient, **query: str) -> dict[str, int]:
    listing = client.get("/api/images", params={"limit": "500", **query}).json()
    return {f"{image['label']}/{image['name']}": image["id"] for image in listing["images"]}


# -- 1: paths read from the journal ---------------------------------------------------------


def test_undo_all_refuses_a_journal_row_with_an_absolute_old_path(
    folder: Path, outside: Path
) -> None:
    number = relabeled(folder)
    outside.mkdir()
    victim = outside / "victim.png"
    execute(folder, "UPDATE clean_journal SET old_path = ? WHERE id = ?", (str(victim), number))
    before = snapshot(folder)
    result = runner.invoke(app, ["clean", str(folder), "--undo-all"])
    assert result.exit_code == 1, result.output
    assert f"decision #{number}'s old_path" in result.output and "is absolute" in result.output
    assert "Traceback" not in result.output
    assert list(outside.iterdir()) == []  # nothing moved out
    assert snapshot(folder) == before


def test_undo_refuses_a_journal_row_whose_old_path_climbs_out(folder: Path, outside: Path) -> None:
    number = relabeled(folder)
    execute(
        folder, "UPDATE clean_journal SET old_path = '../../outside/victim.png' WHERE id = ?",
        (number,),
    )  # fmt: skip
    before = snapshot(folder)
    result = runner.invoke(app, ["clean", str(folder), "--undo", str(number)])
    assert result.exit_code == 1, result.output
    assert f"decision #{number}'s old_path" in result.output and "contains '..'" in result.output
    assert not outside.exists()  # no folder made on the way out either
    assert snapshot(folder) == before


def test_a_pending_journal_row_pointing_outside_is_rolled_back_not_finished(
    folder: Path, outside: Path
) -> None:
    outside.mkdir()
    victim = outside / "victim.png"
    shutil.copy(folder / "blue" / "00.png", victim)
    with Journal(folder) as journal:
        journal.sync()
        image = ids(journal)["red/00.png"]
    # A crash "left" a decision whose file is said to be outside: finishing it would make the
    # outside file the image's, for the next decision to pull into the dataset.
    execute(
        folder,
        "INSERT INTO clean_journal (image_id, action, state, old_path, new_path, old_label, "
        "new_label, old_state, new_state, old_reviewed, new_reviewed, version_after, at) "
        "VALUES (?, 'relabel', 'pending', ?, ?, 'red', 'red', 'active', 'active', 0, 1, 2, '')",
        (image, str(victim), str(victim)),
    )
    with Journal(folder) as journal:
        assert journal.image(image).path == "red/00.png"
        assert journal_rows(folder)[-1][1] == "rolled_back"
        assert "is absolute" in journal_rows(folder)[-1][2]
        journal.delete(image)
    assert victim.read_bytes() == (folder / "blue" / "00.png").read_bytes()
    assert (folder / QUARANTINE_DIR / "red" / "00.png").is_file()


@pytest.mark.parametrize("decision", ["delete", "relabel"])
def test_an_image_row_pointing_outside_is_never_moved(
    folder: Path, outside: Path, decision: str
) -> None:
    outside.mkdir()
    victim = outside / "victim.png"
    shutil.copy(folder / "blue" / "00.png", victim)
    with Journal(folder) as journal:
        journal.sync()
        image = ids(journal)["red/00.png"]
    execute(folder, "UPDATE clean_images SET path = ? WHERE id = ?", (str(victim), image))
    before = snapshot(folder)
    with Journal(folder) as journal, pytest.raises(DataError, match=f"image #{image}'s path"):
        if decision == "delete":
            journal.delete(image)
        else:
            journal.relabel(image, "blue")
    assert victim.is_file() and snapshot(folder) == before  # not pulled in


def test_a_lock_file_linking_outside_is_not_opened(folder: Path, outside: Path) -> None:
    relabeled(folder)
    outside.mkdir()
    (folder / LOCK_NAME).unlink()
    (folder / LOCK_NAME).symlink_to(outside / "planted.lock")
    result = runner.invoke(app, ["clean", str(folder), "--history"])
    assert result.exit_code == 1 and "lock file" in result.output, result.output
    assert "Traceback" not in result.output
    assert list(outside.iterdir()) == []  # nothing created outside


PLANTED = "#!/bin/sh\necho pwned\n"
"""An executable a shared dataset ships in its quarantine, for a planted row to move out."""


def plant_quarantined(folder: Path) -> tuple[Path, int]:
    """A shared dataset's planted file ``.ursa-quarantine/blue/evil.png`` (executable) and its
    ``clean_images`` row (deleted); ``(the file, the row's id)``."""
    with Journal(folder) as journal:
        journal.sync()
    planted = folder / QUARANTINE_DIR / "blue" / "evil.png"
    planted.parent.mkdir(parents=True)
    planted.write_text(PLANTED)
    planted.chmod(0o755)
    execute(
        folder, "INSERT INTO clean_images (path, label, sha256, size_bytes, mtime_ns, state) "
        "VALUES (?, 'blue', 'ab', 1, 1, 'deleted')", (f"{QUARANTINE_DIR}/blue/evil.png",),
    )  # fmt: skip
    with contextlib.closing(sqlite3.connect(folder / MANIFEST_NAME)) as db:
        row = db.execute("SELECT max(id) FROM clean_images").fetchone()
    return planted, int(row[0])


HIDDEN_TARGETS = [".git/hooks/post-checkout", "evil.sh", MANIFEST_NAME]


@pytest.mark.parametrize("old_state", ["active", "deleted", "gone"])
@pytest.mark.parametrize("target", HIDDEN_TARGETS)
def test_undo_all_refuses_a_journal_row_that_moves_a_file_out_of_the_class_folders(
    folder: Path, target: str, old_state: str
) -> None:
    # A shared dataset (a git repository) ships an executable in its quarantine and a
    # "done" delete whose old place is a git hook, a top-level file or the manifest:
    # undoing it would install the hook. Every such path is inside the folder, so only
    # the rule "an image is a file in a class folder, none of its parts hidden" stops it.
    (folder / ".git" / "hooks").mkdir(parents=True)
    planted, image = plant_quarantined(folder)
    execute(
        folder,
        "INSERT INTO clean_journal (image_id, action, state, old_path, new_path, old_label, "
        "new_label, old_state, new_state, old_reviewed, new_reviewed, version_after, at) "
        "VALUES (?, 'delete', 'done', ?, ?, 'blue', 'blue', ?, 'deleted', 0, 1, 1, '')",
        (image, target, f"{QUARANTINE_DIR}/blue/evil.png", old_state),
    )
    manifest = (folder / MANIFEST_NAME).read_bytes()
    before = snapshot(folder)
    result = runner.invoke(app, ["clean", str(folder), "--undo-all"])
    assert result.exit_code == 1, result.output
    assert "old_path" in result.output and repr(target) in result.output
    assert "Traceback" not in result.output
    assert snapshot(folder) == before and planted.read_text() == PLANTED
    assert list((folder / ".git" / "hooks").iterdir()) == []
    assert not (folder / "evil.sh").exists() and not (folder / "ursa-1.sqlite").exists()
    assert (folder / MANIFEST_NAME).read_bytes()[:16] == manifest[:16]  # still the manifest
    assert [state for _, state, _ in journal_rows(folder)] == ["done"]  # no undo was made


@pytest.mark.parametrize("target", HIDDEN_TARGETS)
def test_undo_refuses_to_move_a_file_back_to_a_hidden_or_top_level_place(
    folder: Path, target: str
) -> None:
    number = relabeled(folder)
    execute(folder, "UPDATE clean_journal SET old_path = ? WHERE id = ?", (target, number))
    before = snapshot(folder)
    with Journal(folder) as journal, pytest.raises(DataError, match="not a file in a class"):
        journal.undo(number)
    assert snapshot(folder) == before and not (folder / "evil.sh").exists()
    assert not (folder / ".git").exists()


@pytest.mark.parametrize("decision", ["delete", "relabel"])
@pytest.mark.parametrize("path", [".git/config", "notes.txt", MANIFEST_NAME])
def test_an_image_row_naming_a_hidden_or_top_level_file_is_never_moved(
    folder: Path, path: str, decision: str
) -> None:
    (folder / ".git").mkdir()
    for name in (".git/config", "notes.txt"):
        (folder / name).write_text("not an image")
    with Journal(folder) as journal:
        journal.sync()
    execute(
        folder, "INSERT INTO clean_images (path, label, sha256, size_bytes, mtime_ns, state) "
        "VALUES (?, 'red', 'ab', 1, 1, 'active')", (path,),
    )  # fmt: skip
    before = snapshot(folder)
    with Journal(folder) as journal:
        image = ids(journal)[path]
        with pytest.raises(DataError, match=f"image #{image}'s path .*not a file in a class"):
            journal.delete(image) if decision == "delete" else journal.relabel(image, "blue")
    assert snapshot(folder) == before and (folder / MANIFEST_NAME).is_file()
    assert not (folder / QUARANTINE_DIR).exists()


def test_a_pending_row_naming_a_git_hook_is_rolled_back_not_finished(folder: Path) -> None:
    hook = folder / ".git" / "hooks" / "post-checkout"
    hook.parent.mkdir(parents=True)
    hook.write_text(PLANTED)
    with Journal(folder) as journal:
        journal.sync()
        image = ids(journal)["red/00.png"]
    (folder / "red" / "00.png").unlink()  # "the move happened": only the new place has a file
    execute(
        folder,
        "INSERT INTO clean_journal (image_id, action, state, old_path, new_path, old_label, "
        "new_label, old_state, new_state, old_reviewed, new_reviewed, version_after, at) "
        "VALUES (?, 'relabel', 'pending', 'red/00.png', ?, 'red', 'red', 'active', 'active', "
        "0, 1, 2, '')",
        (image, ".git/hooks/post-checkout"),
    )
    with Journal(folder) as journal:
        assert journal.image(image).path == "red/00.png"  # the hook did not become the image
    _, state, note = journal_rows(folder)[-1]
    assert state == "rolled_back" and "not a file in a class folder" in note
    assert hook.read_text() == PLANTED


# -- the cleaner's own tables, planted ---------------------------------------------------------


JOURNAL_COLUMNS = (
    "id, image_id, action, state, old_path, new_path, old_label, new_label, old_state, "
    "new_state, old_reviewed, new_reviewed, version_after, undoes, undone_by, at, "
    "finished_at, note"
)
DONE_ROW = (1, 1, "relabel", "done", "red/00.png", "green/00.png", "red", "green", "active",
            "active", 0, 1, 2, None, None, "", "", "")  # fmt: skip


def plant_journal(folder: Path, columns: str, row: tuple[Any, ...]) -> None:
    """A ``clean_journal`` table of the given (untyped) columns holding ``row``, as a shared
    ``ursa.sqlite`` may have, beside an honest manifest."""
    with contextlib.closing(sqlite3.connect(folder / MANIFEST_NAME)) as db, db:
        db.execute(f"CREATE TABLE clean_journal ({columns})")
        marks = ", ".join("?" for _ in row)
        db.execute(f"INSERT INTO clean_journal VALUES ({marks})", row)


PLANTED_JOURNALS = {
    "missing columns": (
        "id INTEGER PRIMARY KEY, image_id INTEGER, action TEXT, state TEXT",
        (1, 1, "relabel", "done"),
        "clean_journal lacks old_path, new_path, old_label",
    ),
    "a number for a path": (
        JOURNAL_COLUMNS, (1, 1, "relabel", "done", 42, *DONE_ROW[5:]),
        "clean_journal row 1 has old_path = 42, not text",
    ),
    "text for a number": (
        JOURNAL_COLUMNS, (*DONE_ROW[:12], "two", *DONE_ROW[13:]),
        "clean_journal row 1 has version_after = 'two', not a whole number",
    ),
    "an unknown action": (
        JOURNAL_COLUMNS, (1, 1, "rm -rf", *DONE_ROW[3:]),
        "clean_journal row 1 has action = 'rm -rf', not one of relabel, delete, keep, undo",
    ),
}  # fmt: skip


@pytest.mark.parametrize("kind", list(PLANTED_JOURNALS))
def test_a_planted_clean_journal_table_is_one_line_error_not_a_traceback(
    folder: Path, kind: str
) -> None:
    columns, row, message = PLANTED_JOURNALS[kind]
    with Manifest(folder):
        pass  # an honest manifest (images, fetches, ...) and a planted journal beside it
    plant_journal(folder, columns, row)
    before = snapshot(folder)
    for command in (["--history"], ["--undo-all"]):
        result = runner.invoke(app, ["clean", str(folder), *command])
        assert result.exit_code == 1, result.output
        assert message in result.output and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
    assert MANIFEST_NAME in result.output and "aside" in result.output
    assert snapshot(folder) == before


def test_a_planted_clean_images_table_is_refused_where_it_is_read(folder: Path) -> None:
    with contextlib.closing(sqlite3.connect(folder / MANIFEST_NAME)) as db, db:
        db.execute(
            "CREATE TABLE clean_images (id INTEGER PRIMARY KEY, path UNIQUE, label, sha256, "
            "size_bytes, mtime_ns, state, reviewed, version)"
        )
        db.execute("INSERT INTO clean_images VALUES (1, 'red/00.png', 'red', 'ab', 1, 1, "
                   "'bogus', 0, 1)")  # fmt: skip
        db.execute("INSERT INTO clean_images VALUES (2, 7, 'red', 'ab', 1, 1, 'active', 0, 1)")
    with Journal(folder) as journal:
        with pytest.raises(DataError, match="clean_images row 1 has state = 'bogus', not one of"):
            journal.images(states=("bogus",))  # type: ignore[arg-type]
        with pytest.raises(DataError, match="clean_images row 1 has state = 'bogus'"):
            journal.sync()
        execute(folder, "UPDATE clean_images SET state = 'active' WHERE id = 1")
        with pytest.raises(DataError, match="clean_images row 2 has path = 7, not text"):
            journal.sync()
    result = runner.invoke(app, ["clean", str(folder), "--history"])
    assert result.exit_code == 0, result.output  # the journal itself is fine


def test_a_clean_images_table_missing_columns_is_refused_on_opening(folder: Path) -> None:
    with contextlib.closing(sqlite3.connect(folder / MANIFEST_NAME)) as db, db:
        db.execute("CREATE TABLE clean_images (id INTEGER PRIMARY KEY, path TEXT)")
    with pytest.raises(DataError, match="clean_images lacks label, sha256, size_bytes"):
        Journal(folder)


def test_a_planted_clean_journal_with_extra_columns_still_reads(folder: Path) -> None:
    with Manifest(folder):
        pass
    plant_journal(folder, JOURNAL_COLUMNS + ", planted", (*DONE_ROW, "extra"))
    result = runner.invoke(app, ["clean", str(folder), "--history"])
    assert result.exit_code == 0, result.output
    assert "relabel red/00.png: red → green" in result.output


# -- one process, two holders of the folder ----------------------------------------------------


def test_two_journals_on_one_folder_in_one_process_take_turns(folder: Path) -> None:
    first, second = Journal(folder), Journal(folder)
    first.sync()
    inside = threading.Event()
    order: list[str] = []

    def hold_first() -> None:
        with first._lock.hold():
            order.append("first in")
            inside.set()
            time.sleep(0.5)
            order.append("first out")

    thread = threading.Thread(target=hold_first)
    thread.start()
    assert inside.wait(10)
    second.keep(ids(second)["red/00.png"])  # waits for the first journal
    order.append("second decided")
    thread.join(10)
    first.close()
    second.close()
    assert order == ["first in", "first out", "second decided"]


def test_a_thread_holding_the_folder_lock_and_a_journal_in_another_do_not_deadlock(
    folder: Path,
) -> None:
    # A verify --fix style holder takes the folder lock first, then uses the journal, while
    # a page thread is already deciding: both must finish (one lock order for everyone).
    from ursa.core.manifest import folder_lock

    journal = Journal(folder)
    journal.sync()
    image = ids(journal)["red/00.png"]
    holding = threading.Event()
    finished: list[str] = []

    def holder() -> None:
        with folder_lock(folder):
            holding.set()
            time.sleep(0.3)  # meanwhile the other thread starts its decision
            journal.sync()
        finished.append("holder")

    def decider() -> None:
        assert holding.wait(10)
        journal.keep(image)
        finished.append("decider")

    threads = [threading.Thread(target=holder, daemon=True),
               threading.Thread(target=decider, daemon=True)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert sorted(finished) == ["decider", "holder"], "the two threads deadlocked"
    journal.close()


# -- 2: class names that would climb out of the dataset --------------------------------------


HOSTILE_CLASSES = {"climbing": "../../outside/escaped", "absolute": "{outside}/escaped"}


@pytest.mark.parametrize("kind", list(HOSTILE_CLASSES))
def test_relabel_to_a_class_named_to_climb_out_is_refused_by_the_journal(
    folder: Path, outside: Path, kind: str
) -> None:
    hostile = HOSTILE_CLASSES[kind].format(outside=outside)
    before = snapshot(folder)
    with Journal(folder, class_names=[*CLASSES, hostile]) as journal:
        journal.sync()
        with pytest.raises(DataError, match="a class name becomes a folder name"):
            journal.relabel(ids(journal)["red/00.png"], hostile)
    assert not outside.exists()  # no file moved there, no folder made on the way
    assert snapshot(folder) == before and journal_rows(folder) == []


@pytest.mark.parametrize("kind", list(HOSTILE_CLASSES))
def test_relabel_to_a_class_named_to_climb_out_is_a_400_from_the_page(
    folder: Path, outside: Path, kind: str
) -> None:
    hostile = HOSTILE_CLASSES[kind].format(outside=outside)
    before = snapshot(folder)
    with page_client(folder, [*CLASSES, hostile]) as (client, token):
        image = image_ids(client)["red/00.png"]
        answer = client.post(
            f"/api/images/{image}/relabel", json={"label": hostile, "version": 1},
            headers={"X-Ursa-Token": token},
        )  # fmt: skip
    assert answer.status_code == 400, answer.text
    assert "contains '/'" in answer.json()["detail"]
    assert not outside.exists()
    assert snapshot(folder) == before and journal_rows(folder) == []


def test_relabel_into_a_class_folder_that_links_outside_is_refused(
    folder: Path, outside: Path
) -> None:
    outside.mkdir()
    shutil.move(folder / "blue", outside / "blue")
    (folder / "blue").symlink_to(outside / "blue", target_is_directory=True)
    elsewhere = sorted(p.name for p in (outside / "blue").iterdir())
    with Journal(folder, class_names=CLASSES) as journal:
        journal.sync()
        assert not [path for path in ids(journal) if path.startswith("blue/")]  # not listed
        with pytest.raises(DataError, match="leads outside"):
            journal.relabel(ids(journal)["red/00.png"], "blue")
    assert sorted(p.name for p in (outside / "blue").iterdir()) == elsewhere
    assert (folder / "red" / "00.png").is_file() and journal_rows(folder) == []


# -- 6: symlinks inside the dataset ----------------------------------------------------------


def test_a_class_folder_linking_outside_is_not_listed(
    folder: Path, outside: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outside.mkdir()
    shutil.copytree(folder / "blue", outside / "private")
    (folder / "evil").symlink_to(outside / "private", target_is_directory=True)
    with caplog.at_level(logging.WARNING), page_client(folder) as (client, _):
        listed = image_ids(client)
    assert len(listed) == 9 and not [path for path in listed if path.startswith("evil/")]
    assert "evil" in caplog.text and "outside" in caplog.text


def test_an_image_linking_outside_is_neither_listed_nor_served(folder: Path, outside: Path) -> None:
    outside.mkdir()
    shutil.copy(folder / "blue" / "00.png", outside / "secret.png")
    (folder / "red" / "secret.png").symlink_to(outside / "secret.png")
    with page_client(folder) as (client, _):
        assert "red/secret.png" not in image_ids(client)
        # A manifest that names the link anyway still gets nothing from it.
        execute(
            folder, "INSERT INTO clean_images (path, label, sha256, size_bytes, mtime_ns, state) "
            "VALUES ('red/secret.png', 'red', 'ab', 1, 1, 'active')",
        )  # fmt: skip
        row = max(image_ids(client).values())
        answer = client.get(f"/api/images/{row}/thumbnail")
    assert answer.status_code == 400 and "leads outside" in answer.json()["detail"]
    assert not (folder / CACHE_DIR).exists()  # no thumbnail was made of the outside file


def test_a_quarantine_linking_outside_is_not_written_through(folder: Path, outside: Path) -> None:
    (outside / "bin").mkdir(parents=True)
    (folder / QUARANTINE_DIR).symlink_to(outside / "bin", target_is_directory=True)
    before = snapshot(folder)
    with page_client(folder) as (client, token):
        image = image_ids(client)["red/00.png"]
        answer = client.post(
            f"/api/images/{image}/delete", json={"version": 1}, headers={"X-Ursa-Token": token}
        )
    assert answer.status_code == 400 and "leads outside" in answer.json()["detail"]
    assert list((outside / "bin").iterdir()) == []
    assert snapshot(folder) == before


def test_a_quarantine_swapped_for_a_link_is_not_moved_back_from(
    folder: Path, outside: Path
) -> None:
    with Journal(folder) as journal:
        journal.sync()
        deleted = journal.delete(ids(journal)["red/00.png"])
    outside.mkdir()
    shutil.move(folder / QUARANTINE_DIR, outside / "bin")
    (folder / QUARANTINE_DIR).symlink_to(outside / "bin", target_is_directory=True)
    with Journal(folder) as journal:
        with pytest.raises(DataError, match="leads outside"):
            journal.undo(deleted.id)
        journal.sync()
        assert journal.images(states=("deleted",)) == []  # nor listed as deleted
    assert (outside / "bin" / "red" / "00.png").is_file()
    assert not (folder / "red" / "00.png").exists()


def test_a_thumbnail_cache_linking_outside_is_not_written_through(
    folder: Path, outside: Path
) -> None:
    (outside / "cache").mkdir(parents=True)
    (folder / CACHE_DIR).symlink_to(outside / "cache", target_is_directory=True)
    with page_client(folder) as (client, _):
        answer = client.get(f"/api/images/{image_ids(client)['red/00.png']}/thumbnail")
    assert answer.status_code == 200 and answer.content[:2] == b"\xff\xd8"  # made, not cached
    assert list((outside / "cache").iterdir()) == []


# -- 12: token and size are checked before the body is read -----------------------------------


@contextlib.contextmanager
def live_cleaner(folder: Path, host: str = "127.0.0.1") -> Iterator[int]:
    """The app under uvicorn on ``host``, on a free port (yielded), in a thread."""
    import uvicorn

    settings = CleanSettings(bundle=folder / "m.ursa", data=folder, host=host)
    application = create_app(settings, session_for(folder, CLASSES))
    server = uvicorn.Server(
        uvicorn.Config(application, host=host, port=0, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        yield int(server.servers[0].sockets[0].getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def page_token(host: str, port: int) -> str:
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request("GET", "/")
        html = connection.getresponse().read().decode()
    finally:
        connection.close()
    return html.split('name="ursa-token" content="')[1].split('"')[0]


def read_until_closed(stream: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a time-out fails)."""
    received = b""
    while True:
        try:
            block = stream.recv(65536)
        except ConnectionResetError:  # closed with our unread bytes still in its buffer
            return received
        if not block:
            return received
        received += block


HUGE = 300_000_000


def huge_post(port: int, headers: dict[str, str]) -> bytes:
    """Send the head of a 300 MB POST and 1 KB of its body; what comes back before more."""
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = (
        f"POST /api/images/1/delete HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\n{head}\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as stream:
        stream.sendall(request.encode() + b"{" + b" " * 1023)
        # The answer arrives while 299.99 MB are still unsent, and the server hangs up, so it
        # never reads (nor throws away) the rest; a server waiting for the body times out here.
        return read_until_closed(stream)


def test_an_unauthenticated_huge_post_is_refused_before_its_body_is_read(folder: Path) -> None:
    with live_cleaner(folder) as port:
        answer = huge_post(port, {"Content-Length": str(HUGE)})
    assert answer.startswith(b"HTTP/1.1 403"), answer[:200]
    assert b"X-Ursa-Token" in answer and b"connection: close" in answer.lower()
    assert not (folder / QUARANTINE_DIR).exists()  # and nothing was deleted


def test_a_huge_post_with_the_token_is_413_before_its_body_is_read(folder: Path) -> None:
    with live_cleaner(folder) as port:
        token = page_token("127.0.0.1", port)
        answer = huge_post(port, {"Content-Length": str(HUGE), "X-Ursa-Token": token})
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"URSA_CLEAN_MAX_BODY_BYTES" in answer


def test_a_chunked_post_past_the_body_limit_is_413(folder: Path) -> None:
    with live_cleaner(folder) as port:
        token = page_token("127.0.0.1", port)
        request = (
            f"POST /api/images/1/delete HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"X-Ursa-Token: {token}\r\nContent-Type: application/json\r\n"
            f"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b" " * 1_000_000
        with socket.create_connection(("127.0.0.1", port), timeout=10) as stream:
            stream.sendall(request.encode() + f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            answer = read_until_closed(stream)  # the last chunk is never sent
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_honest_decisions_still_pass_the_body_checks(folder: Path) -> None:
    with live_cleaner(folder) as port:
        token = page_token("127.0.0.1", port)
        for chunked in (False, True):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            body = b'{"version": 1}'
            connection.request(
                "POST", f"/api/images/{1 + chunked}/keep", body=iter([body]) if chunked else body,
                headers={"X-Ursa-Token": token, "Content-Type": "application/json"},
                encode_chunked=chunked,
            )  # fmt: skip
            response = connection.getresponse()
            assert response.status == 200, response.read()
            connection.close()


# -- 16: IPv6 loopback -------------------------------------------------------------------------


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not has_ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_the_cleaner_answers_on_ipv6_loopback(folder: Path) -> None:
    with live_cleaner(folder, host="::1") as port:
        token = page_token("::1", port)  # http.client sends Host: [::1]:PORT
        connection = http.client.HTTPConnection("::1", port, timeout=10)
        connection.request(
            "POST", "/api/images/1/keep", body=b'{"version": 1}',
            headers={"X-Ursa-Token": token, "Content-Type": "application/json"},
        )  # fmt: skip
        assert connection.getresponse().status == 200
        connection.close()
        connection = http.client.HTTPConnection("::1", port, timeout=10)
        connection.request("GET", "/", headers={"Host": f"[::2]:{port}"})
        assert connection.getresponse().status == 400  # still no other host
        connection.close()
    settings = CleanSettings(bundle=folder / "m.ursa", data=folder, host="::1", port=port)
    assert page_url(settings) == f"http://[::1]:{port}/"
    check_port(settings)  # the port is free again, and ::1 is a place to listen on


@pytest.mark.skipif(not has_ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_ursa_clean_host_ipv6_loopback_serves_the_page_and_takes_decisions(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    bundle, data = shared_tiny_bundle(tmp_path_factory)
    dataset = Path(shutil.copytree(data, tmp_path / "colours"))
    with clean_server(bundle, dataset, host="::1") as server:  # `ursa clean --host ::1`
        assert server.token  # the page came back (its Host header was [::1]:PORT)
        status, listing = server.request("GET", "/api/images?label=red&limit=1")
        assert status == 200, listing
        image = listing["images"][0]
        status, kept = server.request("POST", f"/api/images/{image['id']}/keep", {"version": 1})
        assert status == 200 and kept["image"]["reviewed"], kept


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("127.0.0.1:8100", 200), ("localhost", 200), ("LOCALHOST:8100", 200),
        ("[::1]:8100", 200), ("[::1]", 200),
        ("[::1", 400), ("[::1]x", 400), ("127.0.0.1:80:80", 400), ("evil.example", 400),
        ("127.0.0.1.evil.example", 400), ("", 400),
    ],
)  # fmt: skip
def test_host_headers_are_parsed_with_ipv6_brackets(folder: Path, host: str, status: int) -> None:
    with page_client(folder) as (client, _):
        answer = client.get("/healthz", headers={"Host": host})
    assert answer.status_code == status, answer.text


def test_a_bracketed_host_setting_is_the_address(folder: Path) -> None:
    settings = CleanSettings(bundle=folder / "m.ursa", data=folder, host="[::1]")
    assert settings.host == "::1" and "::1" in settings.allowed_hosts()
