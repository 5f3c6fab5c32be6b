"""Files written atomically get the permissions a plain write would give them."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ursa.core.atomic import atomic_file, atomic_write_bytes


@contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_a_new_file_gets_0666_less_the_umask_as_open_gives(tmp_path: Path, mask: int) -> None:
    with umask(mask):
        atomic_write_bytes(tmp_path / "grid.png", b"png")
        with atomic_file(tmp_path / "rows.csv", text=True) as stream:
            stream.write("a,b\n")
        (tmp_path / "plain.txt").write_text("plain open()")
    expected = 0o666 & ~mask
    assert mode(tmp_path / "plain.txt") == expected  # what a normal write gives
    assert mode(tmp_path / "grid.png") == expected
    assert mode(tmp_path / "rows.csv") == expected


def test_a_replaced_file_keeps_its_mode_and_the_write_stays_atomic(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    target.write_bytes(b"old")
    target.chmod(0o640)
    with umask(0o022):
        atomic_write_bytes(target, b"new")
        assert mode(target) == 0o640 and target.read_bytes() == b"new"
        with pytest.raises(RuntimeError), atomic_file(target) as stream:
            stream.write(b"half")
            raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"new" and mode(target) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temporary left
