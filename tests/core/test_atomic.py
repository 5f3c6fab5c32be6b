from __future__ import annotations

from pathlib import Path

import pytest

from ursa.core.atomic import atomic_file, atomic_write_bytes


def test_replaces_the_target_only_when_complete(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError), atomic_file(target) as stream:
        stream.write(b"half of the new")
        raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]  # no temporary left behind


def test_text_mode_and_new_folders(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "rows.csv"
    with atomic_file(target, text=True) as stream:
        stream.write("x,y\r\n1,2\r\n")
    assert target.read_bytes() == b"x,y\r\n1,2\r\n"
