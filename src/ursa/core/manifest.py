"""The dataset manifest ``ursa.sqlite``: one row per image, with where it came from.

A dataset folder may carry ``ursa.sqlite`` (stdlib :mod:`sqlite3`, WAL journal
so another process can read it while a download writes to it). It holds:

* ``images``: one row per image file — path (relative to the dataset folder),
  sha256, perceptual hash, label, split, status and reason, and for downloaded
  images the source URL, page URL, provider, query, licence, creator and
  fetch time;
* ``fetches``: what happened to every URL a download tried, so a second run
  skips what the first already settled;
* ``forgotten``: hashes (and URL hashes) of images taken out with
  ``ursa forget``; a download never saves them again;
* ``quarantine``: the journal of files moved to the quarantine folder, so
  ``ursa verify --restore`` can put each back where it was.

Status ``pending`` marks a downloaded file between "fully written under a
temporary name" and "renamed into its class folder"; a crash between the two
is settled by :meth:`Manifest.settle_pending` on the next run. The other
statuses are the design's: ok, rejected, deleted, relabeled.

A manifest may come from someone else (a dataset shared with its ``ursa.sqlite``):
every path read from it goes through :func:`row_path` before a file is read, moved
or deleted by it, and :func:`folder_lock` keeps two processes from changing the
folder's files at once. A folder that cannot be written is read with
``Manifest(root, read_only=True)`` (SQLite's read-only mode), never changed.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TextIO, get_args

from ursa.core.atomic import atomic_write_bytes
from ursa.core.errors import DataError
from ursa.core.safepaths import inside_root, outside_link

try:  # POSIX; elsewhere one process at a time is the user's to ensure.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

MANIFEST_NAME = "ursa.sqlite"
"""File name of the manifest inside a dataset folder."""
QUARANTINE_DIR = ".ursa-quarantine"
"""Folder (inside the dataset folder, hidden so training skips it) for rejected files."""
PART_PREFIX = ".ursa-part-"
"""Prefix of the temporary files a download writes before renaming them into place."""
LOCK_NAME = ".ursa-clean.lock"
"""Lock file (in the dataset folder) held by whoever changes the folder's files: ``ursa
clean`` (whose lock it first was), ``ursa verify --fix`` / ``--restore`` and ``ursa forget``."""
SCHEMA_VERSION = 1

Status = Literal["pending", "ok", "rejected", "deleted", "relabeled"]
STATUSES: tuple[Status, ...] = get_args(Status)


def sql_values(values: Iterable[str]) -> str:
    """``'a', 'b'``: a tuple of plain names as the inside of an SQL ``IN (...)``."""
    return ", ".join(f"'{value}'" for value in values)


_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS images (
    path TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    phash TEXT NOT NULL DEFAULT '',
    label TEXT NOT NULL,
    split TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'ok'
        CHECK (status IN ({sql_values(STATUSES)})),
    reason TEXT NOT NULL DEFAULT '',
    width INTEGER NOT NULL DEFAULT 0,
    height INTEGER NOT NULL DEFAULT 0,
    size_bytes INTEGER NOT NULL DEFAULT 0,
    source_url TEXT NOT NULL DEFAULT '',
    page_url TEXT NOT NULL DEFAULT '',
    provider TEXT NOT NULL DEFAULT '',
    query TEXT NOT NULL DEFAULT '',
    license TEXT NOT NULL DEFAULT '',
    license_url TEXT NOT NULL DEFAULT '',
    creator TEXT NOT NULL DEFAULT '',
    title TEXT NOT NULL DEFAULT '',
    fetched_at TEXT NOT NULL DEFAULT '',
    quarantine_path TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS images_sha256 ON images (sha256);
CREATE INDEX IF NOT EXISTS images_source_url ON images (source_url);
CREATE TABLE IF NOT EXISTS fetches (
    url TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS forgotten (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('sha256', 'phash', 'url')),
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    original_path TEXT NOT NULL,
    quarantine_path TEXT NOT NULL,
    reason TEXT NOT NULL,
    moved_at TEXT NOT NULL,
    restored_at TEXT NOT NULL DEFAULT ''
);
"""


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def url_key(url: str) -> str:
    """What ``forgotten`` stores for a URL: its sha256, so the URL itself is not kept."""
    return hashlib.sha256(url.encode()).hexdigest()


@dataclass(frozen=True)
class ImageRecord:
    """One row of ``images``."""

    path: str
    """Path relative to the dataset folder, with forward slashes."""
    sha256: str
    """Hex sha256 of the file's bytes."""
    label: str
    """Class name (the class folder's name)."""
    phash: str = ""
    """Perceptual hash, 16 hex digits (see :mod:`ursa.core.hashing`)."""
    split: str = ""
    """train, valid, or empty when the folder has no split made beforehand."""
    status: Status = "ok"
    """pending, ok, rejected, deleted or relabeled."""
    reason: str = ""
    """Why the status is what it is (for rejected files)."""
    width: int = 0
    height: int = 0
    size_bytes: int = 0
    source_url: str = ""
    """Where the image was downloaded from."""
    page_url: str = ""
    """The page that shows the image (its licence and credit are there)."""
    provider: str = ""
    """The search provider that found it."""
    query: str = ""
    """The search query that found it."""
    license: str = ""
    """Licence as the provider gave it (e.g. ``cc-by 4.0``); empty when unknown."""
    license_url: str = ""
    creator: str = ""
    title: str = ""
    fetched_at: str = ""
    """When it was downloaded (UTC, ISO 8601)."""
    quarantine_path: str = ""
    """Where the file is now when ``--fix`` moved it to the quarantine folder."""


RECORD_FIELDS = tuple(f.name for f in fields(ImageRecord))


@dataclass(frozen=True)
class QuarantineEntry:
    """One file moved to the quarantine folder."""

    id: int
    original_path: str
    quarantine_path: str
    reason: str
    moved_at: str
    restored_at: str


QUARANTINE_FIELDS = tuple(f.name for f in fields(QuarantineEntry))

#: Every column ursa reads, by table: a file without them is not a manifest ursa wrote.
_COLUMNS = {
    "images": RECORD_FIELDS,
    "fetches": ("url", "label", "outcome", "reason", "at"),
    "forgotten": ("key", "kind", "at"),
    "quarantine": QUARANTINE_FIELDS,
}


def missing_columns(
    connection: sqlite3.Connection,
    tables: Mapping[str, Iterable[str]],
    *,
    present_only: bool = False,
) -> dict[str, list[str]]:
    """``{table: [columns ursa reads that it lacks]}`` for the tables that lack any; with
    ``present_only``, tables not there at all are left out (``CREATE TABLE IF NOT
    EXISTS`` will make them)."""
    missing: dict[str, list[str]] = {}
    for table, columns in tables.items():
        have = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
        lacking = [name for name in columns if name not in have]
        if lacking and (have or not present_only):
            missing[table] = lacking
    return missing


def unreadable_manifest(root: Path, error: sqlite3.Error) -> DataError:
    """The error for a ``ursa.sqlite`` that SQLite cannot read (every reader says it so)."""
    return DataError(
        f"{root / MANIFEST_NAME} is not a readable ursa manifest ({error}); move it aside and "
        f"run `ursa verify {root}` to rebuild it from the files"
    )


def foreign_manifest(root: Path, lacking: Mapping[str, Sequence[str]]) -> DataError:
    """The error for a ``ursa.sqlite`` whose tables lack columns ursa reads
    (:func:`missing_columns`): made by something else, or changed by hand."""
    what = "; ".join(f"{table} lacks {', '.join(names)}" for table, names in lacking.items())
    return DataError(
        f"{root / MANIFEST_NAME} is not an ursa manifest: {what} (made by something else, or "
        f"changed by hand); move it aside (any cleaning history goes with it) and run "
        f"`ursa verify {root}` to rebuild it from the files"
    )


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """``path`` opened read-only. A WAL database in a folder that cannot be written may
    lack the ``-shm`` file SQLite needs and cannot create; it is then opened as
    immutable (nobody can change it there either)."""
    uri = path.resolve().as_uri()
    failure: sqlite3.Error | None = None
    for query in ("?mode=ro", "?mode=ro&immutable=1"):
        connection: sqlite3.Connection | None = None
        try:
            connection = sqlite3.connect(uri + query, uri=True, timeout=30.0)
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as error:
            if connection is not None:
                connection.close()
            failure = error
            continue
        return connection
    assert failure is not None
    raise failure


def manifest_writable(root: Path) -> bool:
    """Whether ursa can write ``root``'s manifest: the folder (and the file, when there is
    one) writable by this process. A read-only mount is not writable, even for root."""
    manifest = root / MANIFEST_NAME
    if not folder_writable(root):
        return False
    return not manifest.exists() or os.access(manifest, os.W_OK)


class Manifest:
    """``ursa.sqlite`` in a dataset folder; use as a context manager.

    Every write is committed at once, so a crash loses nothing already
    recorded and another process can read the file at any time. With
    ``read_only=True`` the file is opened in SQLite's read-only mode (for a
    folder that cannot be written); every write then fails.
    """

    def __init__(self, root: str | Path, *, create: bool = True, read_only: bool = False) -> None:
        self.root = Path(root)
        self.path = self.root / MANIFEST_NAME
        self.read_only = read_only
        if (not create or read_only) and not self.path.is_file():
            raise DataError(
                f"{self.root} has no manifest ({MANIFEST_NAME}); run `ursa gather` or "
                f"`ursa verify {self.root}` to make one"
            )
        if not self.root.is_dir():
            raise DataError(f"{self.root} is not a folder; give the dataset folder")
        if self.path.is_symlink() and outside_link(self.path, self.root):
            raise DataError(
                f"{self.path} is a symlink that leads outside {self.root}; ursa keeps the "
                f"manifest inside the dataset folder: remove the link (run `ursa verify "
                f"{self.root}` to make a new manifest)"
            )
        if not read_only and not manifest_writable(self.root):
            raise DataError(
                f"{self.root} is read-only: ursa cannot write its manifest ({MANIFEST_NAME}) "
                f"there. Make the folder writable, or check it without changing it: "
                f"`ursa verify {self.root}` (without --fix)"
            )
        try:
            if read_only:
                self.connection = _connect_read_only(self.path)
            else:
                self.connection = sqlite3.connect(self.path, timeout=30.0)
                self.connection.execute("PRAGMA journal_mode=WAL")
                self.connection.execute("PRAGMA synchronous=NORMAL")
            self.connection.row_factory = sqlite3.Row
            version = self.connection.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise DataError(
                    f"{self.path} was written by a newer ursa (schema {version}); upgrade ursa"
                )
            if not read_only:
                with self.connection:
                    self.connection.executescript(_SCHEMA)
                    self.connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            missing = missing_columns(self.connection, _COLUMNS)
        except sqlite3.DatabaseError as error:
            with contextlib.suppress(AttributeError, sqlite3.Error):
                self.connection.close()
            raise unreadable_manifest(self.root, error) from None
        if missing:
            self.connection.close()
            raise foreign_manifest(self.root, missing)

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.connection.close()

    # images -----------------------------------------------------------------

    def put(self, record: ImageRecord) -> None:
        """Insert ``record``, or replace the row with the same path."""
        with self.connection:
            _insert(self.connection, record, replace=True)

    def update(self, path: str, **changes: Any) -> None:
        """Change some columns of the row at ``path``."""
        unknown = set(changes) - set(RECORD_FIELDS)
        if unknown:
            raise ValueError(f"unknown manifest columns: {sorted(unknown)}")
        assignments = ", ".join(f"{name} = :{name}" for name in changes)
        with self.connection:
            self.connection.execute(
                f"UPDATE images SET {assignments} WHERE path = :path", {**changes, "path": path}
            )

    def remove(self, paths: Iterable[str]) -> None:
        with self.connection:
            self.connection.executemany("DELETE FROM images WHERE path = ?", [(p,) for p in paths])

    def get(self, path: str) -> ImageRecord | None:
        row = self.connection.execute("SELECT * FROM images WHERE path = ?", (path,)).fetchone()
        return _record(row) if row is not None else None

    def records(self, *, status: Status | None = None) -> list[ImageRecord]:
        """Rows ordered by path, all of them or those with ``status``."""
        if status is None:
            rows = self.connection.execute("SELECT * FROM images ORDER BY path")
        else:
            rows = self.connection.execute(
                "SELECT * FROM images WHERE status = ? ORDER BY path", (status,)
            )
        return [_record(row) for row in rows]

    def find(
        self, *, sha256: str | None = None, source_url: str | None = None
    ) -> list[ImageRecord]:
        """Rows with this content hash or this source URL."""
        if sha256 is not None:
            rows = self.connection.execute("SELECT * FROM images WHERE sha256 = ?", (sha256,))
        elif source_url is not None:
            rows = self.connection.execute(
                "SELECT * FROM images WHERE source_url = ?", (source_url,)
            )
        else:
            raise ValueError("give sha256 or source_url")
        return [_record(row) for row in rows]

    def settle_pending(self) -> tuple[int, int]:
        """Resolve rows a crash left ``pending``; remove orphaned temporary files.

        A pending row whose file is in place becomes ok (the rename happened);
        one whose file is missing is dropped (the download will be redone).
        Returns ``(kept, dropped)``.
        """
        kept = dropped = 0
        pending = self.records(status="pending")
        for record in pending:  # every row checked before any file is looked at
            row_path(self.root, record.path, what="pending image row's path")
        for record in pending:
            if (self.root / record.path).is_file():
                self.update(record.path, status="ok")
                kept += 1
            else:
                self.remove([record.path])
                dropped += 1
        for part in self.root.glob(f"*/{PART_PREFIX}*"):
            if outside_link(part, self.root):  # a class folder that links elsewhere
                continue
            part.unlink(missing_ok=True)
        return kept, dropped

    # fetches ----------------------------------------------------------------

    def record_fetch(self, url: str, label: str, outcome: str, reason: str = "") -> None:
        """Remember what happened to ``url`` (saved, duplicate, rejected, refused, failed)."""
        with self.connection:
            self.connection.execute(
                "INSERT OR REPLACE INTO fetches (url, label, outcome, reason, at) "
                "VALUES (?, ?, ?, ?, ?)",
                (url, label, outcome, reason, now()),
            )

    def fetch_outcomes(self) -> dict[str, str]:
        """``{url: outcome}`` for every URL tried so far."""
        rows = self.connection.execute("SELECT url, outcome FROM fetches")
        return {row["url"]: row["outcome"] for row in rows}

    # forgotten --------------------------------------------------------------

    def forget_keys(self, keys: Iterable[tuple[str, str]]) -> None:
        """Record ``(kind, key)`` pairs (kind sha256, phash or url) as never to be saved again."""
        stamp = now()
        with self.connection:
            self.connection.executemany(
                "INSERT OR IGNORE INTO forgotten (key, kind, at) VALUES (?, ?, ?)",
                [(key, kind, stamp) for kind, key in keys if key],
            )

    def forgotten(self, kind: str) -> set[str]:
        rows = self.connection.execute("SELECT key FROM forgotten WHERE kind = ?", (kind,))
        return {row["key"] for row in rows}

    # quarantine journal -----------------------------------------------------

    def add_quarantine(self, original: str, quarantined: str, reason: str) -> None:
        with self.connection:
            self.connection.execute(
                "INSERT INTO quarantine (original_path, quarantine_path, reason, moved_at) "
                "VALUES (?, ?, ?, ?)",
                (original, quarantined, reason, now()),
            )
            self.connection.execute(
                "UPDATE images SET status = 'rejected', reason = ?, quarantine_path = ? "
                "WHERE path = ?",
                (reason, quarantined, original),
            )

    def quarantined(self) -> list[QuarantineEntry]:
        """Files in the quarantine folder not yet restored, newest first."""
        rows = self.connection.execute(
            "SELECT * FROM quarantine WHERE restored_at = '' ORDER BY id DESC"
        )
        return [
            QuarantineEntry(**typed_row(row, "quarantine", _KINDS["quarantine"])) for row in rows
        ]

    def mark_restored(self, entry: QuarantineEntry) -> None:
        with self.connection:
            self.connection.execute(
                "UPDATE quarantine SET restored_at = ? WHERE id = ?", (now(), entry.id)
            )
            self.connection.execute(
                "UPDATE images SET status = 'ok', reason = '', quarantine_path = '' WHERE path = ?",
                (entry.original_path,),
            )

    # export -----------------------------------------------------------------

    def export(self, stream: TextIO, fmt: Literal["csv", "json"]) -> int:
        """Write every ok row (licence and provenance included) as CSV or JSON; return the count."""
        records = self.records(status="ok")
        if fmt == "json":
            json.dump([asdict(r) for r in records], stream, indent=2, ensure_ascii=False)
            stream.write("\n")
        else:
            writer = csv.DictWriter(stream, fieldnames=list(RECORD_FIELDS), lineterminator="\n")
            writer.writeheader()
            writer.writerows(asdict(r) for r in records)
        return len(records)


def image_row(db: sqlite3.Connection, path: str, *, quarantined: bool = False) -> str | None:
    """The path (the key) of the ``images`` row of the file now at ``path``, or None when it
    has none; for a file in the quarantine, ``path`` is where it lies there."""
    column = "quarantine_path" if quarantined else "path"
    found = db.execute(f"SELECT path FROM images WHERE {column} = ?", (path,)).fetchone()
    return None if found is None else str(found[0])


def place_image_row(
    db: sqlite3.Connection,
    row: str | None,
    record: ImageRecord,
) -> None:
    """Make ``images`` say where a file that moved now is, on ``db`` inside the caller's
    transaction (the cleaner moves a file and records it in one).

    ``row`` is the file's row (:func:`image_row`), whose ``path``, ``label``, ``status``,
    ``reason`` and ``quarantine_path`` become ``record``'s (its provenance stays); with no
    row, ``record`` is inserted. Another row at ``record.path`` is dropped first: the file
    there now is this one.
    """
    db.execute("DELETE FROM images WHERE path = ? AND path != ?", (record.path, row or ""))
    if row is None:
        _insert(db, record)
        return
    db.execute(
        "UPDATE images SET path = :path, label = :label, status = :status, reason = :reason, "
        "quarantine_path = :quarantine_path WHERE path = :row",
        {**asdict(record), "row": row},
    )


def _insert(db: sqlite3.Connection, record: ImageRecord, *, replace: bool = False) -> None:
    columns = ", ".join(RECORD_FIELDS)
    marks = ", ".join(f":{name}" for name in RECORD_FIELDS)
    verb = "INSERT OR REPLACE" if replace else "INSERT"
    db.execute(f"{verb} INTO images ({columns}) VALUES ({marks})", asdict(record))


ColumnKind = str | tuple[str, ...]
"""What a column read from ``ursa.sqlite`` must hold: ``"text"``, ``"int"`` (a whole
number), ``"int?"`` (or NULL), or a tuple of the only values (text) it may take."""

_KINDS: dict[str, dict[str, ColumnKind]] = {
    "images": {
        name: "int" if name in ("width", "height", "size_bytes") else "text"
        for name in RECORD_FIELDS
    }
    | {"status": STATUSES},
    "quarantine": {name: "int" if name == "id" else "text" for name in QUARANTINE_FIELDS},
}


def typed_row(
    row: sqlite3.Row,
    table: str,
    kinds: Mapping[str, ColumnKind],
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The row's columns named in ``kinds`` (or ``names`` of them), each of its kind; else a
    :class:`DataError` naming the row and the column (a table in a shared ``ursa.sqlite``
    may have been written by anyone and hold anything)."""
    values = {name: row[name] for name in (names or kinds)}
    for name, value in values.items():
        kind = kinds[name]
        if isinstance(kind, tuple):
            fits, wanted = value in kind and isinstance(value, str), f"one of {', '.join(kind)}"
        elif kind == "text":
            fits, wanted = isinstance(value, str), "text"
        else:
            whole = isinstance(value, int) and not isinstance(value, bool)
            fits, wanted = whole or (value is None and kind == "int?"), "a whole number"
        if not fits:
            shown = repr(value)
            key = values.get("id", values.get("path", values.get("sha256")))
            raise DataError(
                f"{MANIFEST_NAME}: {table} row {key!r} has {name} = "
                f"{shown[:60] + '…' if len(shown) > 60 else shown}, not {wanted}; the manifest "
                f"may come from someone else: move it aside (any cleaning history goes with "
                f"it) and run `ursa verify` to rebuild it from the files"
            )
    return values


def _record(row: sqlite3.Row) -> ImageRecord:
    return ImageRecord(**typed_row(row, "images", _KINDS["images"]))


def export_to_file(root: Path, output: Path, fmt: Literal["csv", "json"]) -> int:
    """Export the manifest of ``root`` to ``output`` (written atomically); return the row count."""
    buffer = io.StringIO()
    with Manifest(root, read_only=True) as manifest:
        count = manifest.export(buffer, fmt)
    atomic_write(output, buffer.getvalue().encode())
    return count


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, rename it over."""
    atomic_write_bytes(path, data, prefix=PART_PREFIX)


def iter_image_paths(root: Path) -> Iterator[tuple[str, str, str, Path]]:
    """``(relative path, label, split, absolute path)`` of every image file in a dataset folder.

    Uses the same walk as training (hidden folders, hence the quarantine, are skipped),
    and skips, with a warning, a split folder, class folder or file that is a symlink
    leading outside ``root``.
    """
    from ursa.core.items import find_split_folders, items_from_class_folders

    split = find_split_folders(root)
    parts = [(split[0], "train"), (split[1], "valid")] if split else [(root, "")]
    for folder, split_name in parts:
        if outside_link(folder, root):
            log.warning(
                "skipped %r: a symlink that leads outside %s (ursa only reads files inside it)",
                str(folder), root,
            )  # fmt: skip
            continue
        try:
            items = items_from_class_folders(folder, root=root)
        except DataError:
            continue  # an empty folder: nothing to list
        for item in items:
            yield item.path.relative_to(root).as_posix(), item.label, split_name, item.path


RowKind = Literal["image", "quarantine"]


def row_path(root: Path, value: object, *, what: str, kind: RowKind = "image") -> Path:
    """``root / value`` for a path read from the manifest, checked before ursa reads,
    moves or deletes a file by it; else a :class:`DataError` naming the row.

    Every such path is relative, free of ``..`` and inside ``root`` with symlinks
    resolved (:func:`ursa.core.safepaths.inside_root`). An image path (``kind="image"``:
    ``images.path``, ``quarantine.original_path``) is also a file in a class folder,
    as ursa writes them: two parts or more, none hidden, so a row cannot name the
    manifest, the lock or the quarantine. A quarantine path lies inside the quarantine
    folder.
    """
    if kind == "quarantine":
        return inside_root(root, value, what=what, within=quarantine_folder(root))
    path = inside_root(root, value, what=what)
    parts = PurePosixPath(str(value)).parts
    if len(parts) < 2 or any(part.startswith(".") for part in parts):
        raise DataError(
            f"{what} {value!r} is not a file in a class folder (a hidden or top-level file); "
            f"ursa only moves or deletes images. The manifest ({MANIFEST_NAME}) may come from "
            f"someone else: check that row, or move the manifest aside and run `ursa verify "
            f"{root}` to rebuild it"
        )
    return path


def quarantine_folder(root: Path) -> Path:
    """``root``'s quarantine folder; a :class:`DataError` when it is a symlink (ursa makes
    that folder itself, and a link could send rejected files, or take restored ones,
    anywhere)."""
    folder = root / QUARANTINE_DIR
    if folder.is_symlink():
        raise DataError(
            f"{folder} is a symlink; ursa makes the quarantine folder itself and does not "
            f"move files through a link: remove the link (the files it points to stay) and "
            f"run again"
        )
    return folder


def folder_writable(root: Path) -> bool:
    """Whether this process may create files in ``root`` (false on a read-only mount,
    even for root)."""
    return os.access(root, os.W_OK | os.X_OK)


_held: dict[str, list[Any]] = {}
"""Folder locks this process holds: resolved folder → [lock file descriptor or None, depth]."""
_thread_locks: dict[str, threading.RLock] = {}
"""One thread lock per folder: the process's threads take turns, as processes do."""
_held_guard = threading.Lock()


@contextlib.contextmanager
def folder_lock(root: Path, *, on_wait: Callable[[], object] | None = None) -> Iterator[None]:
    """Hold ``root``'s lock (``flock`` on :data:`LOCK_NAME`) while changing its files.

    Exclusive between processes and between the threads of one process (a per-folder
    thread lock, taken first); re-entrant within a thread (the outermost hold takes the
    ``flock``, the last one out releases it). A second holder waits until the first is
    done (``on_wait`` is called once when it has to wait); the lock goes with a process
    that dies. A folder that cannot be written is not ``flock``-ed: nothing can change
    it through ursa. A lock file that is a symlink is refused.
    """
    key = str(Path(root).resolve())
    with _held_guard:
        thread_lock = _thread_locks.setdefault(key, threading.RLock())
    waited = False
    if not thread_lock.acquire(blocking=False):
        waited = True
        if on_wait is not None:
            on_wait()
        thread_lock.acquire()
    try:
        with _held_guard:
            entry = _held.get(key)
        if entry is None:  # the outermost hold in this process
            entry = [_flock(Path(root), None if waited else on_wait), 0]
            with _held_guard:
                _held[key] = entry
        entry[1] += 1
        try:
            yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                with _held_guard:
                    del _held[key]
                if entry[0] is not None:
                    fcntl.flock(entry[0], fcntl.LOCK_UN)
                    os.close(entry[0])
    finally:
        thread_lock.release()


def _flock(root: Path, on_wait: Callable[[], object] | None) -> int | None:
    """The lock file's descriptor, ``flock``-ed (waiting for another process, if need
    be); None where there is nothing to lock."""
    handle = _open_lock(root)
    if handle is None:
        return None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(handle, fcntl.LOCK_EX)
    except BaseException:  # interrupted while waiting: nothing held
        os.close(handle)
        raise
    return handle


def _open_lock(root: Path) -> int | None:
    """The lock file's descriptor; None where there is nothing to lock (no ``flock``, or
    a folder that cannot be written).

    A lock file this user may not write (another user made it) is opened read-only:
    ``flock`` works on any descriptor, so the two users still take turns. One it cannot
    even read is a :class:`DataError`, not a run without the lock.
    """
    if fcntl is None or not root.is_dir() or not folder_writable(root):
        return None
    path = root / LOCK_NAME
    extra = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | extra, 0o644)
        except PermissionError:
            return os.open(path, os.O_RDONLY | extra)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise DataError(
                f"{path} is a symlink; ursa makes its lock file itself: remove the link and "
                f"run again"
            ) from None
        if error.errno == errno.EROFS:
            return None
        if error.errno in (errno.EACCES, errno.EPERM):
            raise DataError(
                f"cannot open the lock file {path} ({error.strerror}), so ursa cannot keep "
                f"another ursa from changing {root} at the same time: let this user read it "
                f"(`chmod a+r {path}`), or, when no other ursa is using the folder, remove it "
                f"(ursa makes it again)"
            ) from None
        raise DataError(f"cannot open the lock file {path} ({error.strerror})") from None
