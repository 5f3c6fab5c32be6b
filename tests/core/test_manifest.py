"""The manifest ``ursa.sqlite``: crash recovery, WAL, export; training ignores it."""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import io
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.gather.fakeweb import encode, structured_image
from ursa.cli import app
from ursa.core.errors import DataError
from ursa.core.items import items_from_class_folders
from ursa.core.manifest import (
    LOCK_NAME,
    MANIFEST_NAME,
    PART_PREFIX,
    QUARANTINE_DIR,
    RECORD_FIELDS,
    STATUSES,
    ImageRecord,
    Manifest,
    export_to_file,
    folder_lock,
    image_row,
    place_image_row,
)

runner = CliRunner()


def record(path: str, **changes: str) -> ImageRecord:
    return ImageRecord(
        path=path, sha256="ab" * 32, label=path.split("/")[0], source_url=f"https://x/{path}",
        license="cc0 1.0", creator="Ada", provider="openverse", **changes,  # type: ignore[arg-type]
    )  # fmt: skip


def test_settle_pending_after_a_crash(tmp_path: Path) -> None:
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "renamed.jpg").write_bytes(b"x")
    (tmp_path / "cat" / f"{PART_PREFIX}abc.tmp").write_bytes(b"half")
    with Manifest(tmp_path) as manifest:
        manifest.put(record("cat/renamed.jpg", status="pending"))
        manifest.put(record("cat/never-renamed.jpg", status="pending"))
        assert manifest.settle_pending() == (1, 1)
        assert [r.path for r in manifest.records(status="ok")] == ["cat/renamed.jpg"]
        assert manifest.get("cat/never-renamed.jpg") is None
    assert not (tmp_path / "cat" / f"{PART_PREFIX}abc.tmp").exists()


def test_wal_lets_another_connection_read_while_writing(tmp_path: Path) -> None:
    with Manifest(tmp_path) as manifest:
        mode = manifest.connection.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
        manifest.put(record("cat/1.jpg"))
        with sqlite3.connect(tmp_path / MANIFEST_NAME) as reader:
            manifest.connection.execute("BEGIN IMMEDIATE")  # a writer holds the lock
            count = reader.execute("SELECT count(*) FROM images").fetchone()[0]
            manifest.connection.rollback()
        assert count == 1


def test_sources_exports_csv_and_json(tmp_path: Path) -> None:
    with Manifest(tmp_path) as manifest:
        manifest.put(record("cat/1.jpg"))
        manifest.put(record("dog/2.jpg", title="a dog, with a comma"))
        manifest.put(record("dog/3.jpg", status="rejected"))
    result = runner.invoke(app, ["sources", str(tmp_path), "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["path"] for r in rows] == ["cat/1.jpg", "dog/2.jpg"]
    assert rows[0]["license"] == "cc0 1.0" and rows[0]["creator"] == "Ada"
    count = export_to_file(tmp_path, tmp_path / "out" / "sources.csv", "csv")
    table = list(csv.DictReader(io.StringIO((tmp_path / "out" / "sources.csv").read_text())))
    assert count == 2 and table[1]["title"] == "a dog, with a comma"
    result = runner.invoke(app, ["sources", str(tmp_path), "--format", "xml"])
    assert result.exit_code == 2 and "is not one of" in result.output  # the choices
    result = runner.invoke(app, ["sources", str(tmp_path / "out")])
    assert result.exit_code == 1 and "has no manifest" in result.output


def test_bad_manifest_files_are_user_errors(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_NAME).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DataError, match="not a readable ursa manifest"):
        Manifest(tmp_path)
    newer = tmp_path / "newer"
    newer.mkdir()
    with sqlite3.connect(newer / MANIFEST_NAME) as connection:
        connection.execute("PRAGMA user_version=99")
    with pytest.raises(DataError, match="newer ursa"):
        Manifest(newer)


def test_training_ignores_manifest_quarantine_and_partial_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        (tmp_path / label / "1.png").write_bytes(encode(structured_image(rng), "PNG"))
        (tmp_path / label / f"{PART_PREFIX}x.tmp").write_bytes(b"half")
    (tmp_path / QUARANTINE_DIR / "a").mkdir(parents=True)
    (tmp_path / QUARANTINE_DIR / "a" / "2.png").write_bytes(encode(structured_image(rng), "PNG"))
    with Manifest(tmp_path) as manifest:
        manifest.put(record("a/1.png"))
    items = items_from_class_folders(tmp_path)
    assert sorted((i.label, i.path.name) for i in items) == [("a", "1.png"), ("b", "1.png")]


def test_read_only_opening_reads_and_never_writes(tmp_path: Path) -> None:
    with Manifest(tmp_path) as manifest:
        manifest.put(record("cat/1.jpg"))
    before = (tmp_path / MANIFEST_NAME).read_bytes()
    with Manifest(tmp_path, read_only=True) as manifest:
        assert [r.path for r in manifest.records()] == ["cat/1.jpg"]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            manifest.put(record("cat/2.jpg"))
    assert (tmp_path / MANIFEST_NAME).read_bytes() == before
    with pytest.raises(DataError, match="has no manifest"):
        Manifest(tmp_path / "cat", read_only=True)


def test_a_database_without_the_columns_ursa_reads_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / MANIFEST_NAME) as connection:
        connection.execute("CREATE TABLE images (path TEXT PRIMARY KEY, sha256 TEXT)")
    with pytest.raises(DataError, match=r"images lacks label"):
        Manifest(tmp_path, read_only=True)
    with pytest.raises(DataError, match="ursa manifest"):
        Manifest(tmp_path)


def test_the_folder_lock_is_reentrant_and_refuses_a_linked_lock_file(tmp_path: Path) -> None:
    waited: list[bool] = []
    # Taken twice by one process: no wait, no deadlock.
    with folder_lock(tmp_path, on_wait=lambda: waited.append(True)), folder_lock(tmp_path):
        assert (tmp_path / LOCK_NAME).is_file()
    assert waited == []
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / LOCK_NAME).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(DataError, match="symlink"), folder_lock(linked):
        pass
    assert not (tmp_path / "elsewhere").exists()


def test_the_folder_lock_excludes_another_thread_of_the_same_process(tmp_path: Path) -> None:
    inside = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def first() -> None:
        with folder_lock(tmp_path), folder_lock(tmp_path):  # re-entrant in its thread
            order.append("first in")
            inside.set()
            release.wait(10)
            order.append("first out")

    def waiting() -> None:
        order.append("second waits")
        release.set()

    thread = threading.Thread(target=first)
    thread.start()
    assert inside.wait(10)
    with folder_lock(tmp_path, on_wait=waiting):
        order.append("second in")
    thread.join(10)
    assert order == ["first in", "second waits", "first out", "second in"]
    with folder_lock(tmp_path):  # and released by both: a third holder gets straight in
        probe = os.open(tmp_path / LOCK_NAME, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):  # the flock is held while inside
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(probe)


def deny_opening(monkeypatch: pytest.MonkeyPatch, lock: Path, *, reading: bool) -> None:
    """Make opening ``lock`` fail as the kernel does for a file of another user's that this
    one may not write (``reading=False``) or not even read: needed where the tests run as
    root, whom file modes do not stop."""
    real_open = os.open

    def opening(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        writes = flags & (os.O_WRONLY | os.O_RDWR)
        if Path(path) == lock and (writes or reading):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", opening)


def test_a_lock_file_of_another_user_is_locked_through_a_read_only_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = tmp_path / LOCK_NAME
    lock.touch()
    lock.chmod(0o444)  # made by someone else; this user may read it, not write it
    probe = os.open(lock, os.O_RDONLY)
    if os.geteuid() == 0:
        deny_opening(monkeypatch, lock, reading=False)
    try:
        # Still exclusive: another holder has to wait.
        with folder_lock(tmp_path), pytest.raises(BlockingIOError):
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released on the way out
    finally:
        os.close(probe)


def test_a_lock_file_this_user_cannot_open_is_an_error_not_a_run_without_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = tmp_path / LOCK_NAME
    lock.touch()
    lock.chmod(0o000)
    if os.geteuid() == 0:
        deny_opening(monkeypatch, lock, reading=True)
    entered = False
    with (
        pytest.raises(DataError, match=r"cannot open the lock file .*chmod a\+r"),
        folder_lock(tmp_path),
    ):
        entered = True
    assert not entered
    monkeypatch.undo()
    lock.chmod(0o644)
    with folder_lock(tmp_path):  # the thread lock was let go with the error
        pass


def test_a_moved_file_s_row_keeps_its_provenance_and_takes_the_place(tmp_path: Path) -> None:
    """The cleaner records a move in the manifest through place_image_row, on its own
    connection and in its own transaction: the row follows the file, a row already at the
    new place goes, a file with no row gets one."""
    (tmp_path / "cat").mkdir()
    with Manifest(tmp_path) as manifest:
        manifest.put(record("cat/a.png"))
        manifest.put(record("dog/a.png"))  # a stale row where the file will go
    with contextlib.closing(sqlite3.connect(tmp_path / MANIFEST_NAME)) as db, db:
        row = image_row(db, "cat/a.png")
        moved = ImageRecord(path="dog/a.png", sha256="", label="dog", status="relabeled")
        place_image_row(db, row, moved)
        new = ImageRecord(path="dog/b.png", sha256="cd" * 32, label="dog", split="train")
        place_image_row(db, image_row(db, "dog/b.png"), new)
    with Manifest(tmp_path) as manifest:
        rows = {r.path: r for r in manifest.records()}
    assert set(rows) == {"dog/a.png", "dog/b.png"}
    kept = rows["dog/a.png"]
    assert (kept.label, kept.status, kept.sha256) == ("dog", "relabeled", "ab" * 32)
    assert (kept.source_url, kept.creator) == ("https://x/cat/a.png", "Ada")
    assert (rows["dog/b.png"].sha256, rows["dog/b.png"].split) == ("cd" * 32, "train")


def test_a_planted_status_is_refused_where_it_is_read(tmp_path: Path) -> None:
    """``images.status`` is one of STATUSES, in the schema and where rows are read."""
    with contextlib.closing(sqlite3.connect(tmp_path / MANIFEST_NAME)) as db, db:
        numbers = ("width", "height", "size_bytes")
        columns = ", ".join(
            f"{name} DEFAULT {0 if name in numbers else repr('')}" for name in RECORD_FIELDS
        )
        db.execute(f"CREATE TABLE images ({columns})")  # no CHECK: planted
        db.execute("INSERT INTO images (path, sha256, label, status) "
                   "VALUES ('cat/a.png', 'ab', 'cat', 'approved')")  # fmt: skip
    with Manifest(tmp_path) as manifest, pytest.raises(DataError) as refused:
        manifest.records()
    assert f"status = 'approved', not one of {', '.join(STATUSES)}" in str(refused.value)
    (tmp_path / "fresh").mkdir()
    with Manifest(tmp_path / "fresh") as manifest, pytest.raises(sqlite3.IntegrityError):
        manifest.put(ImageRecord(path="a/b.png", sha256="ab", label="a", status="approved"))  # type: ignore[arg-type]
