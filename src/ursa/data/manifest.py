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
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TextIO

from ursa.atomic import atomic_write_bytes
from ursa.errors import DataError

MANIFEST_NAME = "ursa.sqlite"
"""File name of the manifest inside a dataset folder."""
QUARANTINE_DIR = ".ursa-quarantine"
"""Folder (inside the dataset folder, hidden so training skips it) for rejected files."""
PART_PREFIX = ".ursa-part-"
"""Prefix of the temporary files a download writes before renaming them into place."""
SCHEMA_VERSION = 1

Status = Literal["pending", "ok", "rejected", "deleted", "relabeled"]
STATUSES: tuple[Status, ...] = ("pending", "ok", "rejected", "deleted", "relabeled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    path TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    phash TEXT NOT NULL DEFAULT '',
    label TEXT NOT NULL,
    split TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'ok'
        CHECK (status IN ('pending', 'ok', 'rejected', 'deleted', 'relabeled')),
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
    """Perceptual hash, 16 hex digits (see :mod:`ursa.data.hashing`)."""
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


class Manifest:
    """``ursa.sqlite`` in a dataset folder; use as a context manager.

    Every write is committed at once, so a crash loses nothing already
    recorded and another process can read the file at any time.
    """

    def __init__(self, root: str | Path, *, create: bool = True) -> None:
        self.root = Path(root)
        self.path = self.root / MANIFEST_NAME
        if not create and not self.path.is_file():
            raise DataError(
                f"{self.root} has no manifest ({MANIFEST_NAME}); run `ursa gather` or "
                f"`ursa verify {self.root}` to make one"
            )
        if not self.root.is_dir():
            raise DataError(f"{self.root} is not a folder; give the dataset folder")
        try:
            self.connection = sqlite3.connect(self.path, timeout=30.0)
            self.connection.row_factory = sqlite3.Row
            self.connection.execute("PRAGMA journal_mode=WAL")
            self.connection.execute("PRAGMA synchronous=NORMAL")
            version = self.connection.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise DataError(
                    f"{self.path} was written by a newer ursa (schema {version}); upgrade ursa"
                )
            with self.connection:
                self.connection.executescript(_SCHEMA)
                self.connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as error:
            raise DataError(
                f"{self.path} is not a readable ursa manifest ({error}); move it aside and run "
                f"`ursa verify {self.root}` to rebuild it from the files"
            ) from None

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.connection.close()

    # images -----------------------------------------------------------------

    def put(self, record: ImageRecord) -> None:
        """Insert ``record``, or replace the row with the same path."""
        values = asdict(record)
        columns = ", ".join(RECORD_FIELDS)
        marks = ", ".join(f":{name}" for name in RECORD_FIELDS)
        with self.connection:
            self.connection.execute(
                f"INSERT OR REPLACE INTO images ({columns}) VALUES ({marks})", values
            )

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
        for record in self.records(status="pending"):
            if (self.root / record.path).is_file():
                self.update(record.path, status="ok")
                kept += 1
            else:
                self.remove([record.path])
                dropped += 1
        for part in self.root.glob(f"*/{PART_PREFIX}*"):
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
        return [QuarantineEntry(**dict(row)) for row in rows]

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


def _record(row: sqlite3.Row) -> ImageRecord:
    return ImageRecord(**{name: row[name] for name in RECORD_FIELDS})


def export_to_file(root: Path, output: Path, fmt: Literal["csv", "json"]) -> int:
    """Export the manifest of ``root`` to ``output`` (written atomically); return the row count."""
    buffer = io.StringIO()
    with Manifest(root, create=False) as manifest:
        count = manifest.export(buffer, fmt)
    atomic_write(output, buffer.getvalue().encode())
    return count


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, rename it over."""
    atomic_write_bytes(path, data, prefix=PART_PREFIX)


def iter_image_paths(root: Path) -> Iterator[tuple[str, str, str, Path]]:
    """``(relative path, label, split, absolute path)`` of every image file in a dataset folder.

    Uses the same walk as training (hidden folders, hence the quarantine, are skipped).
    """
    from ursa.data.items import find_split_folders, items_from_class_folders

    split = find_split_folders(root)
    parts = [(split[0], "train"), (split[1], "valid")] if split else [(root, "")]
    for folder, split_name in parts:
        try:
            items = items_from_class_folders(folder)
        except DataError:
            continue  # an empty folder: nothing to list
        for item in items:
            yield item.path.relative_to(root).as_posix(), item.label, split_name, item.path
