"""The cleaning journal: relabel, delete and keep decisions, each undoable, in ``ursa.sqlite``.

Every decision is one row of ``clean_journal`` and goes through three steps:

1. the intent is committed with state ``pending`` (which file moves where,
   old and new label), in one transaction that also checks the image's
   version, so a decision taken on a stale view is refused;
2. the file is moved with one ``os.replace`` (a rename inside the dataset
   folder: atomic on one filesystem), and both folders are flushed;
3. the row becomes ``done`` in the same transaction that updates the image's
   row (``clean_images``) and its manifest row (``images``).

A crash between the steps leaves a ``pending`` row; :meth:`Journal.recover`
(run whenever a journal is opened) looks at the disk and either finishes the
decision (the file is at its new place) or rolls it back (it is still at the
old one), so the journal and the folder always agree.

Relabel moves the file to the other class folder (``name-1.jpg`` when the
name is taken), delete moves it into the hidden quarantine folder (training
skips it; nothing is lost), keep only marks it reviewed. An undo is a
decision of its own that moves the file back.

Nothing read from ``ursa.sqlite`` is trusted (a dataset can come with its manifest
from someone else): every path a row names is checked as the manifest's are
(:func:`ursa.core.manifest.row_path`) before a file moves: relative, no ``..``, no
symlink on the way that leads out of the dataset folder, an image's path a file in a
class folder with no hidden part and a deleted image's inside the quarantine, so a
row cannot move a file to ``.git/hooks`` or over ``ursa.sqlite``. The cleaner's
tables must have the columns it reads and every value read has the type it
should. A class name must be one a folder can have, and the walk
that lists images skips links that lead outside. A row that fails is refused with
a message naming it; nothing outside the dataset folder is ever moved or created.

Whoever changes the folder holds its lock (:func:`ursa.core.manifest.folder_lock`:
an exclusive ``flock`` on ``.ursa-clean.lock``, and a thread lock among one process's
threads) for the whole three steps, so a second server, a second journal or an
``ursa clean --undo`` on the same folder waits its turn, and a ``pending`` row seen
while holding the lock can only come from a process that died.

Torch-free and FastAPI-free: the CLI's ``--history`` and ``--undo`` use it alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any, Literal, get_args

from ursa.core.errors import DataError, UrsaError
from ursa.core.hashing import sha256_file
from ursa.core.items import VALID_DIR_NAMES, find_split_folders
from ursa.core.manifest import (
    MANIFEST_NAME,
    QUARANTINE_DIR,
    ColumnKind,
    ImageRecord,
    Manifest,
    RowKind,
    Status,
    folder_lock,
    foreign_manifest,
    image_row,
    iter_image_paths,
    missing_columns,
    now,
    place_image_row,
    row_path,
    sql_values,
    typed_row,
    unreadable_manifest,
)
from ursa.core.safepaths import class_name_problem, is_within, outside_link, relative_problem

log = logging.getLogger(__name__)

FAULT_POINTS = ("before-move", "after-move")
"""Where a fault-injection hook can kill the process (for crash tests)."""

Action = Literal["relabel", "delete", "keep", "undo"]
ImageState = Literal["active", "deleted", "gone"]
EntryState = Literal["pending", "done", "rolled_back"]
_ACTIONS: tuple[Action, ...] = get_args(Action)
_IMAGE_STATES: tuple[ImageState, ...] = get_args(ImageState)
_ENTRY_STATES: tuple[EntryState, ...] = get_args(EntryState)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS clean_images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ({sql_values(_IMAGE_STATES)})),
    reviewed INTEGER NOT NULL DEFAULT 0,
    version INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS clean_journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id INTEGER NOT NULL,
    action TEXT NOT NULL CHECK (action IN ({sql_values(_ACTIONS)})),
    state TEXT NOT NULL CHECK (state IN ({sql_values(_ENTRY_STATES)})),
    old_path TEXT NOT NULL,
    new_path TEXT NOT NULL,
    old_label TEXT NOT NULL,
    new_label TEXT NOT NULL,
    old_state TEXT NOT NULL,
    new_state TEXT NOT NULL,
    old_reviewed INTEGER NOT NULL,
    new_reviewed INTEGER NOT NULL,
    version_after INTEGER NOT NULL,
    undoes INTEGER,
    undone_by INTEGER,
    at TEXT NOT NULL,
    finished_at TEXT NOT NULL DEFAULT '',
    note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS clean_journal_image ON clean_journal (image_id);
CREATE INDEX IF NOT EXISTS clean_journal_state ON clean_journal (state);
"""

_COLUMNS: dict[str, dict[str, ColumnKind]] = {
    "clean_images": {
        "id": "int", "path": "text", "label": "text", "sha256": "text", "size_bytes": "int",
        "mtime_ns": "int", "state": _IMAGE_STATES, "reviewed": "int", "version": "int",
    },
    "clean_journal": {
        "id": "int", "image_id": "int", "action": _ACTIONS, "state": _ENTRY_STATES,
        "old_path": "text", "new_path": "text", "old_label": "text", "new_label": "text",
        "old_state": _IMAGE_STATES, "new_state": _IMAGE_STATES, "old_reviewed": "int",
        "new_reviewed": "int", "version_after": "int", "undoes": "int?", "undone_by": "int?",
        "at": "text", "finished_at": "text", "note": "text",
    },
}  # fmt: skip
"""What the cleaner reads from each of its tables: a column's type, or the values it may
hold (a table planted in a shared ``ursa.sqlite`` may lack columns or hold anything)."""


class UnknownImageError(UrsaError):
    """An image id (or decision number) this dataset's journal never issued."""


class ConflictError(UrsaError):
    """A decision taken on a stale view: the image changed since the page showed it."""


@dataclass(frozen=True)
class CleanImage:
    """One image the cleaner knows, where it is now."""

    id: int
    """Stable id, issued by the journal; the only way the page names an image."""
    path: str
    """Where the file is, relative to the dataset folder (in the quarantine when deleted)."""
    label: str
    """Its class (for a deleted image: the class it had)."""
    sha256: str
    state: ImageState
    """active (in a class folder), deleted (in the quarantine) or gone (removed by hand)."""
    reviewed: bool
    """A person has decided about it (kept, relabeled or deleted)."""
    version: int
    """Bumped on every change; a decision names the version it was taken on."""

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name


@dataclass(frozen=True)
class Entry:
    """One decision in the journal."""

    id: int
    image_id: int
    action: Action
    state: EntryState
    old_path: str
    new_path: str
    old_label: str
    new_label: str
    old_state: ImageState
    new_state: ImageState
    old_reviewed: bool
    new_reviewed: bool
    version_after: int
    undoes: int | None
    """For an undo: the decision it reverts."""
    undone_by: int | None
    """The undo that reverted this decision."""
    at: str
    """When the decision was taken (UTC, ISO 8601)."""
    finished_at: str
    note: str
    """Why a decision was rolled back, when it was."""

    def describe(self) -> str:
        """One line for ``--history``: what happened to which file."""
        if self.action == "relabel":
            return f"relabel {self.old_path}: {self.old_label} → {self.new_label} ({self.new_path})"
        if self.action == "delete":
            return f"delete {self.old_path} ({self.old_label}), kept as {self.new_path}"
        if self.action == "keep":
            return f"keep {self.old_path} ({self.old_label})"
        if self.old_path == self.new_path:
            return f"undo #{self.undoes}: {self.new_path} is unreviewed again"
        return f"undo #{self.undoes}: {self.old_path} → {self.new_path} ({self.new_label})"


@dataclass(frozen=True)
class Summary:
    """Decisions in effect (done and not undone)."""

    relabeled: int = 0
    deleted: int = 0
    kept: int = 0
    undone: int = 0
    """Decisions reverted by an undo."""

    def line(self) -> str:
        return (
            f"{self.relabeled} relabeled, {self.deleted} deleted, {self.kept} kept "
            f"({self.undone} undone)"
        )


@dataclass(frozen=True)
class _Change:
    """Where a decision takes the image."""

    new_path: str
    new_label: str
    new_state: ImageState
    new_reviewed: bool


class _FolderLock:
    """Exclusive access to the dataset folder: the dataset's folder lock
    (:func:`ursa.core.manifest.folder_lock`, the one ``ursa verify --fix`` and ``ursa
    forget`` take too; exclusive across processes and threads), then this journal's
    thread lock, which guards its SQLite connection (``_query`` takes it alone).

    Always in that order, as everyone else takes the folder lock first: a thread that
    holds the folder lock and then uses the journal cannot deadlock against one in
    :meth:`hold`, and a thread waiting for another process's ``flock`` does not keep
    the journal's readers waiting."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.thread_lock = threading.RLock()

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        with folder_lock(self.root), self.thread_lock:
            yield


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the platform allows opening folders)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


class Journal:
    """The cleaning journal of one dataset folder; use as a context manager.

    Opening it creates ``ursa.sqlite`` if missing and settles any decision a
    crash left half done (:meth:`recover`). ``class_names`` are the classes a
    relabel may move to (default: the class folders there are). ``fault``
    names a point (:data:`FAULT_POINTS`) where the process kills itself, for
    crash tests; never set it otherwise.

    One journal may be shared by threads: every method takes its lock.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        class_names: Sequence[str] | None = None,
        fault: str | None = None,
    ) -> None:
        folder = Path(root).expanduser()
        if not folder.is_dir():
            raise DataError(
                f"{root} is not a folder; give the dataset folder (one folder per class)"
            )
        if fault is not None and fault not in FAULT_POINTS:
            raise DataError(f"fault={fault!r}: use one of {', '.join(FAULT_POINTS)}")
        self.root = folder.resolve()
        self.fault = fault
        self._class_names = list(class_names) if class_names is not None else None
        #: With train/ and valid/ folders, class folders are one level down.
        self.split_folders = find_split_folders(self.root) is not None
        Manifest(self.root).close()  # creates ursa.sqlite (and its tables) if missing
        self._lock = _FolderLock(self.root)
        try:
            self.connection = sqlite3.connect(
                self.root / MANIFEST_NAME, timeout=30.0, isolation_level=None,
                check_same_thread=False,
            )  # fmt: skip
            self.connection.row_factory = sqlite3.Row
            # FULL: the pending row is on disk before the file moves, even on power loss.
            self.connection.execute("PRAGMA synchronous=FULL")
            self._check_columns()
            self.connection.executescript(_SCHEMA)
        except sqlite3.DatabaseError as error:
            self.connection.close()
            raise unreadable_manifest(self.root, error) from None
        except BaseException:
            self.connection.close()
            raise
        try:
            self.recover()
        except BaseException:
            self.connection.close()
            raise

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        # The threads only: waiting for another process's folder lock to close SQLite
        # would hang `ursa clean`'s exit behind a `verify --fix`.
        with self._lock.thread_lock:
            self.connection.close()

    # -- plumbing ------------------------------------------------------------------------

    def _check_columns(self) -> None:
        """A :class:`DataError` when a cleaner table already there lacks a column it reads
        (``CREATE TABLE IF NOT EXISTS`` leaves a planted or older table as it is)."""
        lacking = missing_columns(self.connection, _COLUMNS, present_only=True)
        if lacking:
            raise foreign_manifest(self.root, lacking)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self.connection.execute("BEGIN IMMEDIATE")
        try:
            yield self.connection
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")

    def _query(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        with self._lock.thread_lock:
            return self.connection.execute(sql, parameters).fetchall()

    def _kill_at(self, point: str) -> None:
        if self.fault == point:
            log.warning("fault injection: killing this process at %s", point)
            os.kill(os.getpid(), signal.SIGKILL)

    # -- reading -------------------------------------------------------------------------

    def class_names(self) -> list[str]:
        """Classes a relabel may move an image to."""
        if self._class_names is not None:
            return list(self._class_names)
        base = self.root
        split = find_split_folders(self.root)
        if split is not None:
            base = split[0]
        return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))

    def image(self, image_id: int) -> CleanImage:
        """The image with this id; :class:`UnknownImageError` when there is none."""
        rows = self._query("SELECT * FROM clean_images WHERE id = ?", (image_id,))
        if not rows:
            raise UnknownImageError(
                f"no image has id {image_id} in {self.root.name}: ids come from the page's "
                f"listing; reload the page"
            )
        return _image(rows[0])

    def file(self, image: CleanImage) -> Path:
        """Where ``image``'s file is, checked to be inside the dataset folder.

        Raises :class:`~ursa.core.errors.DataError` naming the row when its path is absolute,
        climbs out with ``..``, leads out through a symlink, or is not where an image in
        its state lies (a class folder, or the quarantine for a deleted one).
        """
        return self._checked(image.path, f"image #{image.id}'s path", image.state)

    def images(self, *, states: Sequence[ImageState] = ("active", "deleted")) -> list[CleanImage]:
        marks = ", ".join("?" for _ in states)
        rows = self._query(
            f"SELECT * FROM clean_images WHERE state IN ({marks}) ORDER BY id", tuple(states)
        )
        return [_image(row) for row in rows]

    def entry(self, entry_id: int) -> Entry:
        rows = self._query("SELECT * FROM clean_journal WHERE id = ?", (entry_id,))
        if not rows:
            raise UnknownImageError(
                f"there is no decision #{entry_id}: `ursa clean {self.root} --history` lists them"
            )
        return _entry(rows[0])

    def history(self) -> list[Entry]:
        """Every decision, oldest first (rolled-back ones included)."""
        return [_entry(r) for r in self._query("SELECT * FROM clean_journal ORDER BY id")]

    def summary(self) -> Summary:
        rows = self._query(
            "SELECT action, undone_by IS NOT NULL AS undone, COUNT(*) AS n FROM clean_journal "
            "WHERE state = 'done' AND action != 'undo' GROUP BY action, undone"
        )
        counts = {"relabel": 0, "delete": 0, "keep": 0}
        undone = 0
        for row in rows:
            if row["undone"]:
                undone += row["n"]
            else:
                counts[row["action"]] = row["n"]
        return Summary(counts["relabel"], counts["delete"], counts["keep"], undone)

    def decisions(self, image_id: int | None = None) -> dict[int, Action]:
        """``{image id: its latest decision in effect}`` (relabel, delete or keep)."""
        sql = (
            "SELECT image_id, action FROM clean_journal WHERE state = 'done' AND action != 'undo' "
            "AND undone_by IS NULL"
        )
        rows = (
            self._query(sql + " ORDER BY id")
            if image_id is None
            else self._query(sql + " AND image_id = ? ORDER BY id", (image_id,))
        )
        typed = (_typed(row, "clean_journal", ("image_id", "action")) for row in rows)
        return {row["image_id"]: row["action"] for row in typed}

    def undoable(self) -> list[Entry]:
        """Decisions in effect, newest first: what ``--undo-all`` reverts, in that order."""
        rows = self._query(
            "SELECT * FROM clean_journal WHERE state = 'done' AND action != 'undo' "
            "AND undone_by IS NULL ORDER BY id DESC"
        )
        return [_entry(r) for r in rows]

    # -- bringing the journal up to date with the folder ----------------------------------

    def sync(self) -> int:
        """Give every image file an id; notice files added, changed or removed by hand.

        Returns the number of rows added or changed. A file's sha256 is computed
        once and reused while its size and modification time stay the same.
        """
        with self._lock.hold():
            files = self._walk()
            rows = self._query("SELECT * FROM clean_images")
            known = {row["path"]: row for row in (_typed(r, "clean_images") for r in rows)}
            updates: list[tuple[str, str, str, int, int]] = []
            for relative, (label, path, stat) in files.items():
                row = known.get(relative)
                sha = ""
                if row is not None and (row["size_bytes"], row["mtime_ns"]) == (
                    stat.st_size, stat.st_mtime_ns,
                ):  # fmt: skip
                    if row["state"] == "active" and row["label"] == label:
                        continue
                    sha = row["sha256"]
                sha = sha or sha256_file(path)
                updates.append((relative, label, sha, stat.st_size, stat.st_mtime_ns))
            vanished = [
                row["id"] for row in known.values()
                if (row["state"] == "active" and row["path"] not in files)
                or (row["state"] == "deleted" and not self._in_quarantine(row["path"]))
            ]  # fmt: skip
            with self._transaction() as db:
                for relative, label, sha, size, mtime in updates:
                    db.execute(
                        "INSERT INTO clean_images (path, label, sha256, size_bytes, mtime_ns, "
                        "state) VALUES (?, ?, ?, ?, ?, 'active') ON CONFLICT (path) DO UPDATE SET "
                        "label = excluded.label, sha256 = excluded.sha256, "
                        "size_bytes = excluded.size_bytes, mtime_ns = excluded.mtime_ns, "
                        "state = 'active', version = version + 1",
                        (relative, label, sha, size, mtime),
                    )
                db.executemany(
                    "UPDATE clean_images SET state = 'gone', version = version + 1 WHERE id = ?",
                    [(image_id,) for image_id in vanished],
                )
            return len(updates) + len(vanished)

    def _walk(self) -> dict[str, tuple[str, Path, os.stat_result]]:
        """``{relative path: (label, path, stat)}`` of the image files training would see,
        less those that lead outside the folder through a symlink (logged, not listed)."""
        files: dict[str, tuple[str, Path, os.stat_result]] = {}
        outside: list[str] = []
        folders_inside: dict[Path, bool] = {}  # one resolve per folder, not per file
        for relative, label, _, path in iter_image_paths(self.root):
            inside = folders_inside.get(path.parent)
            if inside is None:
                inside = folders_inside[path.parent] = is_within(path.parent, self.root)
            if not inside or (path.is_symlink() and outside_link(path, self.root)):
                outside.append(relative)
                continue
            try:
                files[relative] = (label, path, path.stat())
            except OSError as error:  # e.g. a link to nothing
                log.warning("%s is not readable (%s); not listed", relative, error.strerror)
        if outside:
            shown = ", ".join(outside[:5]) + (
                f" and {len(outside) - 5} more" if outside[5:] else ""
            )
            log.warning(
                "%d file(s) in %s lead outside it through a symlink, so ursa clean does not "
                "list them: %s; replace the link with what it points to, to clean those",
                len(outside), self.root, shown,
            )  # fmt: skip
        return files

    def _in_quarantine(self, relative: str) -> bool:
        """A deleted image's file is there, inside the quarantine folder (no link out)."""
        try:
            path = self._checked(relative, "deleted image", "deleted")
        except DataError as error:
            log.warning("%s; not listed", error)
            return False
        return path.is_file()

    def recover(self) -> list[Entry]:
        """Finish or roll back every decision a crash left pending; return them, settled.

        The file decides: at its new place, the move happened and the decision
        is finished; still at its old place, the move did not happen and the
        decision is rolled back.
        """
        settled: list[Entry] = []
        with self._lock.hold():
            pending = self._query("SELECT * FROM clean_journal WHERE state = 'pending'")
            for entry in (_entry(row) for row in pending):
                try:  # a row naming a place outside is never finished (nor looked at there)
                    self._check_entry(entry)
                except DataError as error:
                    log.warning("decision #%d refused: %s", entry.id, error)
                    settled.append(self._roll_back(entry, f"refused: {error}"))
                    continue
                old = (self.root / entry.old_path).is_file()
                new = (self.root / entry.new_path).is_file()
                if entry.old_path == entry.new_path or (new and not old):
                    log.warning("finishing decision #%d left pending by a crash", entry.id)
                    settled.append(self._finish(entry))
                else:
                    where = "at its old place" if old else "at neither place"
                    if old and new:
                        where = "at both places"
                    note = f"rolled back after a crash: the file was {where}"
                    log.warning("decision #%d: %s", entry.id, note)
                    settled.append(self._roll_back(entry, note))
        return settled

    # -- decisions -----------------------------------------------------------------------

    def relabel(self, image_id: int, label: str, *, version: int | None = None) -> Entry:
        """Move the image to the class folder ``label``."""

        def plan(image: CleanImage) -> _Change:
            self._require_active(image, "relabel")
            classes = self.class_names()
            if label not in classes:
                raise DataError(
                    f"there is no class {label!r}: choose one of {', '.join(classes)} "
                    f"(ursa clean does not make new classes; make the folder and train again)"
                )
            problem = class_name_problem(label)
            if problem is not None:
                raise DataError(
                    f"cannot relabel to class {label!r}: the name {problem}, and a class name "
                    f"becomes a folder name; give the model's classes plain names (retrain or "
                    f"re-export it) to clean with it"
                )
            if label == image.label:
                raise DataError(f"{image.name} is already in {label}; nothing to do")
            target = self._free_path(self._class_path(image.path, label))
            self._checked(target, f"moving {image.name} to", "active")
            return _Change(target, label, "active", True)

        return self._decide(image_id, "relabel", version, plan)

    def delete(self, image_id: int, *, version: int | None = None) -> Entry:
        """Move the image into the quarantine folder."""

        def plan(image: CleanImage) -> _Change:
            self._require_active(image, "delete")
            target = self._free_path(f"{QUARANTINE_DIR}/{image.path}")
            self._checked(target, f"moving {image.name} to", "deleted")
            return _Change(target, image.label, "deleted", True)

        return self._decide(image_id, "delete", version, plan)

    def keep(self, image_id: int, *, version: int | None = None) -> Entry:
        """Mark the image reviewed; the file stays where it is."""

        def plan(image: CleanImage) -> _Change:
            self._require_active(image, "keep")
            return _Change(image.path, image.label, "active", True)

        return self._decide(image_id, "keep", version, plan)

    def undo(self, entry_id: int) -> Entry:
        """Revert decision ``entry_id``: the file goes back (under a free name if its old one
        is taken) and the image is as it was before."""
        with self._lock.hold():
            with self._transaction():
                target = self.entry(entry_id)
                if target.action == "undo":
                    raise DataError(
                        f"#{entry_id} is itself an undo; to do #{target.undoes} again, decide "
                        f"again on the page"
                    )
                if target.state != "done":
                    raise DataError(f"#{entry_id} was rolled back ({target.note}); nothing to undo")
                if target.undone_by is not None:
                    raise ConflictError(f"#{entry_id} was already undone by #{target.undone_by}")
                image = self.image(target.image_id)
                later = [
                    e.id for e in self.undoable() if e.image_id == image.id and e.id > entry_id
                ]
                if later:
                    raise ConflictError(
                        f"{image.name} changed after #{entry_id}: undo "
                        f"{', '.join(f'#{n}' for n in sorted(later, reverse=True))} first"
                    )
                if (image.state, image.label) != (target.new_state, target.new_label):
                    raise ConflictError(
                        f"{image.name} is no longer as #{entry_id} left it (it is {_where(image)}"
                        f"); it changed outside the cleaner, so #{entry_id} cannot be undone"
                    )
                self._require_not_pending(image)
                self.file(image)
                self._checked(target.old_path, f"decision #{entry_id}'s old_path", target.old_state)
                new_path = image.path
                if target.old_path != target.new_path:
                    new_path = self._free_path(target.old_path)
                    self._checked(new_path, f"moving {image.name} back to", target.old_state)
                change = _Change(new_path, target.old_label, target.old_state,
                                 target.old_reviewed)  # fmt: skip
                pending = self._insert(image, "undo", change, undoes=entry_id)
            return self._carry_out(pending)

    def undo_all(self) -> list[Entry]:
        """Revert every decision in effect, newest first; return the undos made.

        Decisions that cannot be reverted are listed in one :class:`DataError`
        after the rest are done.
        """
        done: list[Entry] = []
        failed: list[str] = []
        for entry in self.undoable():
            try:
                done.append(self.undo(entry.id))
            except UrsaError as error:
                failed.append(f"#{entry.id} ({error})")
        if failed:
            raise DataError(f"undid {len(done)} decision(s) but not: {'; '.join(failed)}")
        return done

    # -- the three steps -----------------------------------------------------------------

    def _decide(
        self,
        image_id: int,
        action: Action,
        version: int | None,
        plan: Callable[[CleanImage], _Change],
    ) -> Entry:
        with self._lock.hold():
            with self._transaction():
                image = self.image(image_id)
                if version is not None and version != image.version:
                    raise ConflictError(
                        f"{image.name} changed since this page showed it (it is now "
                        f"{_where(image)}): reload to see it as it is, then decide again"
                    )
                self._require_not_pending(image)
                self.file(image)
                pending = self._insert(image, action, plan(image))
            return self._carry_out(pending)

    def _insert(
        self, image: CleanImage, action: Action, change: _Change, *, undoes: int | None = None
    ) -> Entry:
        cursor = self.connection.execute(
            "INSERT INTO clean_journal (image_id, action, state, old_path, new_path, old_label, "
            "new_label, old_state, new_state, old_reviewed, new_reviewed, version_after, undoes, "
            "at) VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                image.id, action, image.path, change.new_path, image.label, change.new_label,
                image.state, change.new_state, int(image.reviewed), int(change.new_reviewed),
                image.version + 1, undoes, now(),
            ),
        )  # fmt: skip
        assert cursor.lastrowid is not None  # an INSERT always sets it
        return self.entry(cursor.lastrowid)

    def _carry_out(self, entry: Entry) -> Entry:
        """Steps 2 and 3: move the file, then mark the decision done."""
        self._kill_at("before-move")
        if entry.old_path != entry.new_path:
            try:  # the last look before the move: nothing leaves or enters the folder
                source, target = self._check_entry(entry)
            except DataError as error:
                self._roll_back(entry, f"refused: {error}")
                raise
            if not source.is_file():
                self._roll_back(entry, "the file was no longer there")
                raise ConflictError(
                    f"{entry.old_path} is no longer there (moved or removed outside the "
                    f"cleaner); reload the page"
                )
            if target.exists():
                self._roll_back(entry, f"{entry.new_path} appeared meanwhile")
                raise ConflictError(f"{entry.new_path} appeared meanwhile; try again")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, target)
            except OSError as error:
                self._roll_back(entry, f"the move failed: {error}")
                raise DataError(
                    f"could not move {entry.old_path} to {entry.new_path} ({error}); check the "
                    f"folder's permissions and free space"
                ) from None
            _fsync_folder(target.parent)
            _fsync_folder(source.parent)
            self._kill_at("after-move")
            self._tidy_quarantine(source.parent)
        return self._finish(entry)

    def _finish(self, entry: Entry) -> Entry:
        with self._transaction() as db:
            db.execute(
                "UPDATE clean_journal SET state = 'done', finished_at = ? WHERE id = ?",
                (now(), entry.id),
            )
            if entry.undoes is not None:
                db.execute(
                    "UPDATE clean_journal SET undone_by = ? WHERE id = ?", (entry.id, entry.undoes)
                )
            db.execute(
                "DELETE FROM clean_images WHERE path = ? AND id != ?",
                (entry.new_path, entry.image_id),
            )  # only a 'gone' row can hold the path (the plan checked it was free)
            size, mtime = _stat(self.root / entry.new_path)
            db.execute(
                "UPDATE clean_images SET path = ?, label = ?, state = ?, reviewed = ?, "
                "version = ?, size_bytes = ?, mtime_ns = ? WHERE id = ?",
                (
                    entry.new_path, entry.new_label, entry.new_state, int(entry.new_reviewed),
                    entry.version_after, size, mtime, entry.image_id,
                ),
            )  # fmt: skip
            self._update_manifest_row(db, entry)
        return self.entry(entry.id)

    def _roll_back(self, entry: Entry, note: str) -> Entry:
        with self._transaction() as db:
            db.execute(
                "UPDATE clean_journal SET state = 'rolled_back', finished_at = ?, note = ? "
                "WHERE id = ?",
                (now(), note, entry.id),
            )
        return self.entry(entry.id)

    def _update_manifest_row(self, db: sqlite3.Connection, entry: Entry) -> None:
        """Keep the manifest's ``images`` row (path, label, status) in step with the file."""
        if entry.old_path == entry.new_path:
            return  # keep: the file and its manifest row stay as they are
        found = image_row(db, entry.old_path, quarantined=entry.old_state == "deleted")
        if entry.new_state == "deleted":
            record = ImageRecord(
                path=entry.old_path, sha256="", label=entry.old_label, status="deleted",
                reason="deleted with ursa clean", quarantine_path=entry.new_path,
            )  # fmt: skip
        else:
            # Relabeled means "not the label it had before any cleaning": an undo of a
            # delete keeps a relabel, an undo of the relabel (or a move back) clears it.
            first = db.execute(
                "SELECT old_label FROM clean_journal WHERE image_id = ? ORDER BY id LIMIT 1",
                (entry.image_id,),
            ).fetchone()
            original = entry.old_label if first is None else first["old_label"]
            status: Status = "relabeled" if entry.new_label != original else "ok"
            record = ImageRecord(path=entry.new_path, sha256="", label=entry.new_label,
                                 status=status)  # fmt: skip
        if found is None:  # a file the manifest did not list: it gets its row now
            sha = db.execute(
                "SELECT sha256 FROM clean_images WHERE id = ?", (entry.image_id,)
            ).fetchone()
            split = ""
            if self.split_folders:
                valid = record.path.split("/")[0].lower() in VALID_DIR_NAMES
                split = "valid" if valid else "train"
            record = replace(record, sha256=sha["sha256"] if sha else "", split=split)
        place_image_row(db, found, record)

    # -- helpers -------------------------------------------------------------------------

    def _require_active(self, image: CleanImage, action: str) -> None:
        if image.state != "active":
            raise ConflictError(
                f"cannot {action} {image.name}: it is {_where(image)}; reload the page"
            )

    def _require_not_pending(self, image: CleanImage) -> None:
        busy = self.connection.execute(
            "SELECT id FROM clean_journal WHERE image_id = ? AND state = 'pending'", (image.id,)
        ).fetchone()
        if busy is not None:
            raise ConflictError(
                f"{image.name} is being changed right now (#{busy['id']}); try again in a moment"
            )

    def _checked(self, relative: str, what: str, state: ImageState) -> Path:
        """``root / relative`` for the path of an image in ``state`` (read from a row or
        about to be written to one), checked before a file moves by it; else a
        :class:`DataError` saying ``what`` it was and why not.

        Every path the cleaner touches goes through here, checked as the manifest's are
        (:func:`ursa.core.manifest.row_path`): relative, no ``..``, no symlink on the way
        out of the folder; an active image's path a file in a class folder with no hidden
        part (not ``.git/hooks/…``, ``ursa.sqlite`` or a top-level file), a deleted one's
        inside the quarantine.
        """
        if relative_problem(relative) is None and outside_link(self.root / relative, self.root):
            raise DataError(
                f"{what} {relative!r} leads outside {self.root} through the symlink "
                f"{self._link_on_the_way(relative)!r}; ursa clean only moves files inside the "
                f"dataset folder: replace the link with the folder it points to"
            )
        return row_path(self.root, relative, what=what, kind=_kind(state, relative))

    def _check_entry(self, entry: Entry) -> tuple[Path, Path]:
        """Both places a decision names, checked: ``(old, new)``."""
        return (
            self._checked(entry.old_path, f"decision #{entry.id}'s old_path", entry.old_state),
            self._checked(entry.new_path, f"decision #{entry.id}'s new_path", entry.new_state),
        )

    def _link_on_the_way(self, relative: str) -> str:
        """The first symlink on the way from the root to ``relative`` (for messages)."""
        path = self.root
        for part in PurePosixPath(relative).parts:
            path = path / part
            if path.is_symlink():
                return path.relative_to(self.root).as_posix()
        return relative

    def _class_path(self, path: str, label: str) -> str:
        parts = path.split("/")
        prefix = f"{parts[0]}/" if self.split_folders else ""
        return f"{prefix}{label}/{parts[-1]}"

    def _free_path(self, wanted: str) -> str:
        """``wanted``, or ``stem-N.ext`` beside it when a file or a journal row has that name."""
        pure = PurePosixPath(wanted)
        candidate, serial = wanted, 0
        while self._taken(candidate):
            serial += 1
            candidate = str(pure.with_name(f"{pure.stem}-{serial}{pure.suffix}"))
        return candidate

    def _taken(self, relative: str) -> bool:
        if os.path.lexists(self.root / relative):
            return True
        row = self.connection.execute(
            "SELECT 1 FROM clean_images WHERE path = ? AND state != 'gone' UNION ALL "
            "SELECT 1 FROM clean_journal WHERE new_path = ? AND state = 'pending'",
            (relative, relative),
        ).fetchone()
        return row is not None

    def _tidy_quarantine(self, folder: Path) -> None:
        """Remove folders inside the quarantine that a move back has left empty."""
        quarantine = self.root / QUARANTINE_DIR
        while folder != quarantine and quarantine in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent


def _kind(state: ImageState, path: str) -> RowKind:
    """Where the path of an image in ``state`` lies: a class folder, or the quarantine
    for a deleted image (a gone one may have been either; its path says which)."""
    if state == "deleted" or (state == "gone" and path.startswith(f"{QUARANTINE_DIR}/")):
        return "quarantine"
    return "image"


def _where(image: CleanImage) -> str:
    if image.state == "deleted":
        return "deleted"
    if image.state == "gone":
        return "gone from the folder"
    return f"in {image.label}"


def _stat(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except OSError:
        return 0, 0
    return stat.st_size, stat.st_mtime_ns


def _typed(row: sqlite3.Row, table: str, names: Sequence[str] | None = None) -> dict[str, Any]:
    """The row's columns that the cleaner reads (or ``names`` of them), each of the type
    :data:`_COLUMNS` gives; else a :class:`DataError` naming the row and the column."""
    return typed_row(row, table, _COLUMNS[table], names)


def _image(row: sqlite3.Row) -> CleanImage:
    values = _typed(row, "clean_images")
    return CleanImage(
        id=values["id"], path=values["path"], label=values["label"], sha256=values["sha256"],
        state=values["state"], reviewed=bool(values["reviewed"]), version=values["version"],
    )  # fmt: skip


def _entry(row: sqlite3.Row) -> Entry:
    values = _typed(row, "clean_journal")
    values["old_reviewed"] = bool(values["old_reviewed"])
    values["new_reviewed"] = bool(values["new_reviewed"])
    return Entry(**values)
