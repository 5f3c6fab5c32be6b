"""Property tests over the path rules every manifest row and class name goes through
(ursa.core.safepaths, issue 14): no value read from a file leads outside the dataset root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ursa.core.errors import DataError
from ursa.core.safepaths import class_name_problem, inside_root, is_within

# Path-ish text: the pieces attacks are made of, and some ordinary letters.
pieces = st.sampled_from(
    ["..", ".", "/", "\\", "\x00", "a", "b.jpg", "link", "inner", "C:", "~", " ", "//", "%2e"]
)
paths = st.lists(pieces, min_size=0, max_size=8).map("".join) | st.text(max_size=20)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """root/ with a file, a folder, a symlink leading out (link) and one staying in (inner)."""
    base = tmp_path_factory.mktemp("paths")
    outside = base / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("keep me")
    root = base / "root"
    (root / "a").mkdir(parents=True)
    (root / "b.jpg").write_bytes(b"x")
    os.symlink(outside, root / "link")
    os.symlink(root / "a", root / "inner")
    return root


SETTINGS = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(value=paths)
@example(value="../outside/victim.txt")
@example(value="/etc/passwd")
@example(value="link/victim.txt")
@example(value="a/../../outside/victim.txt")
@example(value="C:\\Windows")
def test_a_path_from_a_manifest_never_leads_outside_the_root(dataset: Path, value: str) -> None:
    try:
        path = inside_root(dataset, value, what="images row 1's path")
    except DataError as error:
        assert "row 1" in str(error) and repr(value) in str(error)
        return
    assert is_within(path, dataset)
    assert ".." not in Path(value).parts and not Path(value).is_absolute()
    assert os.path.realpath(path).startswith(os.path.realpath(dataset) + os.sep)


@SETTINGS
@given(value=paths)
def test_within_a_fence_means_inside_the_fence(dataset: Path, value: str) -> None:
    fence = dataset / "a"
    try:
        path = inside_root(dataset, value, what="quarantine path", within=fence)
    except DataError:
        return
    assert is_within(path, fence)


def test_a_symlink_that_stays_inside_is_allowed(dataset: Path) -> None:
    assert is_within(inside_root(dataset, "inner/x.jpg", what="path"), dataset)
    with pytest.raises(DataError, match="symlink"):
        inside_root(dataset, "link/victim.txt", what="path")


@settings(max_examples=500, deadline=None)
@given(name=st.text(max_size=12) | pieces)
def test_an_accepted_class_name_is_one_folder_directly_under_the_root(name: str) -> None:
    if class_name_problem(name) is not None:
        return
    root = Path("/data/set")
    target = root / name
    assert target.parent == root and target.name == name
    assert name not in (".", "..") and not name.startswith(".")
    assert not any(ord(char) < 32 or ord(char) == 127 for char in name)
