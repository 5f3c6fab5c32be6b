"""Hostile dataset folders (issue 14, items 1, 6, 13, 14 and 15): a shared ``ursa.sqlite``
whose rows lead out of the folder, symlinks inside the folder, file and class names made to
drive a terminal or split a table, two ``verify --fix`` at once, and a read-only folder.

Everything runs on real files, a real SQLite manifest and the real CLI: typer's runner,
or a subprocess where a second process or a real terminal (a pty) is the point.
"""

from __future__ import annotations

import contextlib
import io
import os
import pty
import queue
import re
import select
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from tests.gather.fakeweb import encode, structured_image
from ursa.cli import app
from ursa.cli.support import plain, print_rows, shown, tsv_field
from ursa.core.errors import DataError
from ursa.core.items import items_from_class_folders
from ursa.core.manifest import (
    LOCK_NAME,
    MANIFEST_NAME,
    PART_PREFIX,
    QUARANTINE_DIR,
    ImageRecord,
    Manifest,
    iter_image_paths,
)
from ursa.data.cache import build_cache, cache_dir
from ursa.verify.checks import verify_folder

runner = CliRunner()


def picture(seed: int) -> bytes:
    return encode(structured_image(np.random.default_rng(seed)), "PNG")


def make_dataset(root: Path, *, duplicates: int = 1) -> Path:
    """``root/cat`` and ``root/dog``, three different images each, plus ``duplicates``
    exact copies in ``cat`` (what ``verify --fix`` quarantines)."""
    for offset, label in enumerate(("cat", "dog")):
        (root / label).mkdir(parents=True)
        for index in range(3):
            (root / label / f"{index}.png").write_bytes(picture(10 * offset + index))
    for index in range(duplicates):
        (root / "cat" / f"copy-{index}.png").write_bytes(picture(index % 3))
    return root


def files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (the manifest and the lock left out): path → bytes."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(MANIFEST_NAME) and p.name != LOCK_NAME
    }


def execute(root: Path, sql: str, parameters: tuple[Any, ...] = ()) -> None:
    """Change the manifest as a shared ``ursa.sqlite`` can: written by someone else."""
    with contextlib.closing(sqlite3.connect(root / MANIFEST_NAME)) as db, db:
        db.execute(sql, parameters)


def no_traceback(output: str) -> None:
    assert "Traceback" not in output


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder next to the dataset, with a file an attack would like to take or delete."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "victim.txt").write_text("keep me")
    return folder


# -- item 1: paths read from ursa.sqlite --------------------------------------------------


@pytest.mark.parametrize("column", ["path", "quarantine_path"])
@pytest.mark.parametrize("where", ["../outside/victim.txt", "absolute"])
def test_forget_with_a_manifest_row_leading_out_leaves_the_victim(
    tmp_path: Path, outside: Path, column: str, where: str
) -> None:
    root = make_dataset(tmp_path / "data")
    value = str(outside / "victim.txt") if where == "absolute" else where
    url = "https://example.org/me.jpg"
    with Manifest(root) as manifest:  # a rejected image whose file is "in quarantine"
        manifest.put(ImageRecord(path="cat/gone.jpg", sha256="ab" * 32, label="cat",
                                 status="rejected", source_url=url,
                                 quarantine_path=f"{QUARANTINE_DIR}/cat/gone.jpg"))  # fmt: skip
    execute(root, f"UPDATE images SET {column} = ? WHERE path = 'cat/gone.jpg'", (value,))
    before = files(root)

    result = runner.invoke(app, ["forget", str(root), url])

    assert (outside / "victim.txt").read_text() == "keep me"
    assert result.exit_code == 1, result.output
    assert repr(value) in result.output and column in result.output
    assert "ursa.sqlite" in result.output  # says where the bad row is and what to do
    assert files(root) == before  # refused before anything was deleted
    no_traceback(result.output)


def quarantined_dataset(root: Path) -> Path:
    """A dataset after a real ``verify --fix``: cat/copy-0.png is in the quarantine."""
    make_dataset(root)
    result = runner.invoke(app, ["verify", str(root), "--fix"])
    assert result.exit_code == 0, result.output
    assert (root / QUARANTINE_DIR / "cat" / "copy-0.png").is_file()
    return root


@pytest.mark.parametrize(
    ("original", "quarantined"),
    [
        ("../outside/pushed.png", ".ursa-quarantine/cat/copy-0.png"),  # push a file out
        ("{outside}/pushed.png", ".ursa-quarantine/cat/copy-0.png"),
        ("cat/pulled.txt", "../outside/victim.txt"),  # pull an outside file in
        ("cat/pulled.txt", "{outside}/victim.txt"),
        ("cat/pulled.txt", "cat/0.png"),  # a dataset file, not in the quarantine
        ("ursa.sqlite", ".ursa-quarantine/cat/copy-0.png"),  # not an image's place
    ],
)
def test_restore_with_hostile_quarantine_rows_moves_nothing_across_the_border(
    tmp_path: Path, outside: Path, original: str, quarantined: str
) -> None:
    root = quarantined_dataset(tmp_path / "data")
    original = original.format(outside=outside)
    quarantined = quarantined.format(outside=outside)
    execute(
        root,
        "INSERT INTO quarantine (original_path, quarantine_path, reason, moved_at) "
        "VALUES (?, ?, 'planted', 'now')",
        (original, quarantined),
    )
    before, outside_before = files(root), files(outside)

    result = runner.invoke(app, ["verify", str(root), "--restore"])

    assert result.exit_code == 1, result.output
    assert "quarantine row 2" in result.output  # the planted row, named
    assert files(outside) == outside_before  # nothing pushed out, nothing pulled in
    assert files(root) == before  # the good row waits too: nothing moved at all
    no_traceback(result.output)


def test_a_manifest_with_a_wrongly_typed_row_is_refused_with_a_message(tmp_path: Path) -> None:
    root = quarantined_dataset(tmp_path / "data")
    execute(root, "UPDATE quarantine SET original_path = x'2e2e2f6f7574' WHERE id = 1")
    result = runner.invoke(app, ["verify", str(root), "--restore"])
    assert result.exit_code == 1 and "not text" in result.output
    no_traceback(result.output)


def test_a_pending_row_leading_out_stops_before_any_file_is_looked_at(
    tmp_path: Path, outside: Path
) -> None:
    root = make_dataset(tmp_path / "data")
    with Manifest(root) as manifest:
        manifest.put(ImageRecord(path="cat/x.png", sha256="ab" * 32, label="cat"))
    execute(root, "UPDATE images SET path = '../outside/victim.txt', status = 'pending'")
    with Manifest(root) as manifest, pytest.raises(DataError, match="pending image row"):
        manifest.settle_pending()
    assert (outside / "victim.txt").read_text() == "keep me"


# -- item 6: symlinks inside a dataset ----------------------------------------------------


def test_verify_fix_does_not_list_or_move_files_behind_a_class_folder_link(
    tmp_path: Path, outside: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_dataset(tmp_path / "data", duplicates=0)
    (outside / "a.png").write_bytes(picture(50))
    (outside / "a-copy.png").write_bytes(picture(50))  # a duplicate --fix would take
    os.symlink(outside, root / "fox")
    outside_before = files(outside)

    result = runner.invoke(app, ["verify", str(root), "--fix"])

    assert result.exit_code == 0, result.output
    assert files(outside) == outside_before
    assert "fox/" not in result.output  # not listed as a finding
    (warning,) = [r.getMessage() for r in caplog.records if "fox" in r.getMessage()]
    assert "skipped" in warning and "symlink" in warning and "\n" not in warning
    with Manifest(root) as manifest:
        assert not [r.path for r in manifest.records() if r.path.startswith("fox")]


def test_an_image_that_links_outside_is_skipped_and_one_that_stays_inside_is_followed(
    tmp_path: Path, outside: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_dataset(tmp_path / "data", duplicates=0)
    (outside / "secret.png").write_bytes(picture(60))
    os.symlink(outside / "secret.png", root / "cat" / "secret.png")
    os.symlink(root / "dog" / "0.png", root / "cat" / "alias.png")  # stays inside
    split = tmp_path / "split"
    (split / "train").mkdir(parents=True)
    os.symlink(outside, split / "valid")  # a whole split folder that links out
    (outside / "cls").mkdir()
    (outside / "cls" / "x.png").write_bytes(picture(62))
    (split / "train" / "cat").mkdir()
    (split / "train" / "cat" / "1.png").write_bytes(picture(61))

    names = {item.path.name for item in items_from_class_folders(root)}
    listed = [relative for relative, *_ in iter_image_paths(split)]

    assert "secret.png" not in names and "alias.png" in names
    assert listed == ["train/cat/1.png"]
    assert "secret.png" in caplog.text and "leads outside" in caplog.text
    report = verify_folder(root)
    assert "cat/secret.png" not in {f.path for f in report.findings}
    assert report.checked == 7  # six images and the alias, never the outside file


def test_verify_fix_refuses_a_quarantine_folder_that_is_a_symlink(
    tmp_path: Path, outside: Path
) -> None:
    root = make_dataset(tmp_path / "data")
    os.symlink(outside, root / QUARANTINE_DIR)
    before = files(root)

    result = runner.invoke(app, ["verify", str(root), "--fix"])

    assert result.exit_code == 1, result.output
    assert "symlink" in result.output and QUARANTINE_DIR in result.output
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]  # nothing pushed out
    assert files(root) == before
    no_traceback(result.output)


def test_settling_a_download_deletes_no_part_file_behind_a_class_folder_link(
    tmp_path: Path, outside: Path
) -> None:
    root = make_dataset(tmp_path / "data", duplicates=0)
    (outside / f"{PART_PREFIX}theirs.tmp").write_bytes(b"someone else's file")
    (root / "cat" / f"{PART_PREFIX}ours.tmp").write_bytes(b"half a download")
    os.symlink(outside, root / "fox")
    with Manifest(root) as manifest:
        manifest.settle_pending()
    assert (outside / f"{PART_PREFIX}theirs.tmp").is_file()
    assert not (root / "cat" / f"{PART_PREFIX}ours.tmp").exists()


def cache_images(folder: Path, count: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"{index}.png"
        Image.new("RGB", (8, 8), (index, 0, 0)).save(path)
        paths.append(path)
    return paths


def test_the_decode_cache_writes_nothing_through_a_linked_group_folder(
    tmp_path: Path, outside: Path, caplog: pytest.LogCaptureFixture
) -> None:
    paths = cache_images(tmp_path / "images")
    decode = lambda i: Image.open(paths[i]).convert("RGB")  # noqa: E731
    assert build_cache(paths, decode, {}, name="linked") is not None
    (group,) = [p for p in cache_dir().iterdir() if p.is_dir()]
    shutil.rmtree(group)
    os.symlink(outside, group)  # planted where the group folder was
    Image.new("RGB", (8, 8), (9, 9, 9)).save(paths[0])  # a new entry is needed
    os.utime(paths[0], ns=(0, 5 * 10**9))

    assert build_cache(paths, decode, {}, name="linked") is None
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]
    assert "symlink" in caplog.text and "decode cache off" in caplog.text


def test_the_decode_cache_lock_does_not_create_a_file_through_a_link(
    tmp_path: Path, outside: Path
) -> None:
    paths = cache_images(tmp_path / "images")
    decode = lambda i: Image.open(paths[i]).convert("RGB")  # noqa: E731
    assert build_cache(paths, decode, {}, name="lock") is not None
    (group,) = [p for p in cache_dir().iterdir() if p.is_dir()]
    (group / ".lock").unlink()
    os.symlink(outside / "created-by-ursa", group / ".lock")
    os.utime(paths[1], ns=(0, 7 * 10**9))  # a new entry: the lock is taken

    build_cache(paths, decode, {}, name="lock")  # off with a warning, or built: not through
    assert not (outside / "created-by-ursa").exists()


# -- item 13: untrusted names on the terminal ---------------------------------------------

SGR = re.compile(rb"\x1b\[[0-9;]*m")  # rich's own colours, taken out before comparing


def run_on_terminal(args: list[str], timeout: float = 120.0) -> tuple[int, bytes]:
    """``python -m ursa ARGS`` with a real pseudo-terminal as its stdout and stderr."""
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "300", "LINES": "60"}
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(name, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "ursa", *args], stdin=slave, stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    return process.wait(timeout=30), b"".join(chunks)


def test_markup_and_escape_sequences_in_names_do_not_reach_the_terminal(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for label in ("[", "cat", "dog\x1b[2J"):  # "[" / "nope].png" is the path "[/nope].png"
        (root / label).mkdir(parents=True)
    (root / "[" / "nope].png").write_bytes(picture(1))
    (root / "[" / "a.png").write_bytes(picture(1))  # a duplicate: both names in the table
    (root / "cat" / "b.png").write_bytes(picture(2))
    (root / "cat" / "\x1b]0;pwned\x07.png").write_bytes(picture(2))
    (root / "dog\x1b[2J" / "0.png").write_bytes(picture(3))
    (root / "dog\x1b[2J" / "1.png").write_bytes(picture(3))

    code, output = run_on_terminal(["verify", str(root)])

    text = SGR.sub(b"", output)
    assert code == 0, output.decode(errors="replace")
    assert b"[/nope].png" in text
    assert b"\x1b]0;pwned" not in output and b"\x1b[2J" not in output  # nothing raw
    assert b"\\x1b]0;pwned\\x07.png" in text and b"dog\\x1b[2J" in text  # shown escaped
    assert b"Traceback" not in output


def test_an_error_naming_a_file_with_markup_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "[/nope]" / "[bold]data"
    result = runner.invoke(app, ["verify", str(missing)])
    assert result.exit_code == 1, result.output
    assert "[/nope]" in result.output and "[bold]data" in result.output
    assert "is not a folder" in result.output
    no_traceback(result.output)


def test_a_newline_or_tab_in_a_file_name_cannot_split_the_tsv(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "cat").mkdir(parents=True)
    (root / "cat" / "0.png").write_bytes(picture(1))
    (root / "cat" / "two\nlines.png").write_bytes(picture(1))
    (root / "cat" / "tab\there.png").write_bytes(picture(1))
    (root / "cat" / "back\\slash.png").write_bytes(picture(1))

    result = runner.invoke(app, ["verify", str(root)])  # not a terminal: TSV

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    table = lines[: next(i for i, line in enumerate(lines) if line.startswith("checked"))]
    assert table[0].split("\t") == ["kind", "file", "copy of", "detail", "action"]
    assert len(table) == 4 and all(len(line.split("\t")) == 5 for line in table)
    files_listed = {line.split("\t")[1] for line in table[1:]}
    assert files_listed == {"cat/two\\nlines.png", "cat/tab\\there.png", "cat/back\\\\slash.png"}


def test_shown_names_are_inert_in_any_rich_output() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=200, emoji=False)
    names = ["[/nope]", "[bold red]x", "\x1b]0;t\x07", "\u202eevil", "bad\udcffbyte", "a\nb"]
    print_rows(console, ["file"], [[name] for name in names])
    console.print(f"removed {shown(names[1])} and {shown(names[2])}")
    written = SGR.sub(b"", buffer.getvalue().encode("utf-8", "surrogateescape"))
    for expected in (b"[/nope]", b"[bold red]x", b"\\x1b]0;t\\x07", b"\\u202eevil",
                     b"bad\\udcffbyte", b"a\\nb"):  # fmt: skip
        assert expected in written
    assert b"\x1b]0;t" not in written and "\u202e".encode() not in written
    assert plain("line one\nline two", keep_newlines=True) == "line one\nline two"
    assert tsv_field("a\tb\\c\r\n") == "a\\tb\\\\c\\r\\n"


# -- item 14: two `ursa verify --fix` at once ----------------------------------------------

HOLD_LOCK = """
import sys
from pathlib import Path
from ursa.core.manifest import folder_lock
with folder_lock(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.readline()
"""


def lines_of(stream: Any) -> queue.Queue[str | None]:
    """Each line ``stream`` gives, then None at its end (read in a thread)."""
    found: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in stream:
            found.put(line)
        found.put(None)

    threading.Thread(target=read, daemon=True).start()
    return found


def wait_for(lines: queue.Queue[str | None], text: str, seconds: float = 60.0) -> str:
    """The first line holding ``text``; fails at the stream's end or after ``seconds``."""
    deadline = time.monotonic() + seconds
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1.0)
        except queue.Empty:
            continue
        if line is None:
            break
        seen.append(line)
        if text in line:
            return line
    raise AssertionError(f"no line with {text!r}; got {seen!r}")


def test_a_second_verify_fix_waits_for_the_first_and_says_so(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", duplicates=2)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(root)], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    fixer = None
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        fixer = subprocess.Popen(
            [sys.executable, "-m", "ursa", "verify", str(root), "--fix"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        line = wait_for(lines_of(fixer.stderr), "waiting")
        assert "another ursa" in line
        assert (root / "cat" / "copy-0.png").is_file()  # nothing moved while it waits
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert fixer.wait(timeout=120) == 0
        assert fixer.stdout is not None and "moved 2 file(s)" in fixer.stdout.read()
    finally:
        for process in (holder, fixer):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    assert not (root / "cat" / "copy-0.png").exists()
    assert (root / QUARANTINE_DIR / "cat" / "copy-0.png").is_file()


def test_two_verify_fix_started_together_both_finish_and_lose_nothing(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", duplicates=6)
    before = files(root)
    command = [sys.executable, "-m", "ursa", "verify", str(root), "--fix"]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True) for _ in "ab"]  # fmt: skip
    outputs = [run.communicate(timeout=180)[0] for run in runs]

    assert [run.returncode for run in runs] == [0, 0], outputs
    for output in outputs:
        assert "Traceback" not in output
    assert sum("moved 6 file(s)" in output for output in outputs) == 1  # once, not twice
    after = files(root)
    assert sorted(after.values()) == sorted(before.values())  # every file, exactly once
    with Manifest(root) as manifest:
        assert len(manifest.quarantined()) == 6
    result = runner.invoke(app, ["verify", str(root), "--restore"])
    assert result.exit_code == 0 and files(root) == before


# -- item 15: a read-only dataset -------------------------------------------------------


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """``folder`` made impossible to write into: chmod for a user, ``chattr +i`` for root
    (whom permission bits do not stop); skips when neither is available."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False)
    if made.returncode != 0 or os.access(folder, os.W_OK):
        pytest.skip("running as root where `chattr +i` is unavailable: cannot make a folder "
                    "read-only for root")  # fmt: skip
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.mark.parametrize("with_manifest", [False, True])
def test_report_only_verify_works_on_a_read_only_folder(
    tmp_path: Path, with_manifest: bool
) -> None:
    root = make_dataset(tmp_path / "data")
    if with_manifest:
        assert runner.invoke(app, ["verify", str(root)]).exit_code == 0
    before = sorted(p.name for p in root.iterdir())
    manifest_bytes = (root / MANIFEST_NAME).read_bytes() if with_manifest else None

    with read_only(root):
        result = runner.invoke(app, ["verify", str(root)])
        fixed = runner.invoke(app, ["verify", str(root), "--fix"])
        sources = runner.invoke(app, ["sources", str(root), "--format", "json"])

    assert result.exit_code == 0, result.output
    assert "duplicate" in result.output and "cat/copy-0.png" in result.output
    assert "nothing was recorded" in result.output and "read-only" in result.output
    assert sorted(p.name for p in root.iterdir()) == before  # no manifest, lock or journal
    if with_manifest:
        assert (root / MANIFEST_NAME).read_bytes() == manifest_bytes
        assert sources.exit_code == 0 and '"cat/0.png"' in sources.output
    assert fixed.exit_code == 1 and "read-only" in fixed.output
    assert (root / "cat" / "copy-0.png").is_file()  # --fix moved nothing
    no_traceback(result.output + fixed.output)


# -- a labels table naming files outside its image folder, a split folder linking out ------


def test_a_labels_table_naming_files_outside_the_image_folder_is_refused(tmp_path: Path) -> None:
    from ursa.data.core import ImageData

    data = make_dataset(tmp_path / "data")
    outside = tmp_path / "secret.png"
    outside.write_bytes(picture(99))
    rows = [f"{p.relative_to(data).as_posix()},{p.parent.name}" for p in data.glob("*/*.png")]
    rows += ["../secret.png,cat", f"{outside},dog"]
    table = data / "labels.csv"
    table.write_text("fname,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"2 row\(s\) name files outside the image folder"):
        ImageData.from_csv(table, size=32)


def test_training_reads_through_links_that_verify_fix_leaves_alone(tmp_path: Path) -> None:
    """Reading follows links (datasets are often assembled from them); the commands that
    move, write or serve (verify --fix, the cleaner) skip links that lead out."""
    from ursa.data.core import ImageData

    elsewhere = make_dataset(tmp_path / "elsewhere")
    root = tmp_path / "data"
    (root / "valid").mkdir(parents=True)
    make_dataset(root / "valid")
    (root / "train").symlink_to(elsewhere, target_is_directory=True)
    data = ImageData.from_folder(root, size=32)
    assert len(data.train_items) == 7 and all(i.path.is_relative_to(root) for i in data.train_items)
    listed = [relative for relative, *_ in iter_image_paths(root)]  # what verify walks
    assert listed and not any(relative.startswith("train/") for relative in listed)
