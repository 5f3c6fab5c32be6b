"""Paths and names that come from files ursa did not write. Torch-free.

A dataset folder, its ``ursa.sqlite`` manifest, a bundle's class names and a
search result are data, and data can be hostile: a manifest row can say
``../outside/victim.txt``, a class can be called ``../../escaped``, a folder
inside the dataset can be a symlink to somewhere else. Everything that turns
such a value into a path on disk goes through this module:

* :func:`inside_root` turns a relative path read from a file into a path that
  is certainly under the root (no ``..``, not absolute, no symlink on the way
  that leads out), or raises :class:`~ursa.core.errors.DataError` naming the value;
* :func:`class_name_problem` says what is wrong with a class name that would
  become a folder name (empty, ``.``/``..``, hidden, a separator, NUL, a
  control character), or ``None`` for a good one;
* :func:`is_within` and :func:`outside_link` are the checks the walkers use to
  skip what leads out of the dataset.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path, PurePosixPath, PureWindowsPath

from ursa.core.errors import DataError

#: Longest class name accepted: folder names on common file systems stop at 255 bytes.
MAX_CLASS_NAME_BYTES = 255


def relative_problem(value: object) -> str | None:
    """What is wrong with ``value`` as a relative path inside a folder, or ``None``."""
    if not isinstance(value, str):
        return f"is not a text path ({type(value).__name__})"
    if not value:
        return "is empty"
    if "\x00" in value:
        return "contains a NUL character"
    if "\\" in value:
        return "contains a backslash"
    if PurePosixPath(value).is_absolute() or PureWindowsPath(value).is_absolute():
        return "is absolute"
    if PureWindowsPath(value).drive:
        return "names a drive"
    parts = PurePosixPath(value).parts
    if any(part == ".." for part in parts):
        return "contains '..'"
    if not parts or parts == (".",):
        return "names the folder itself"
    return None


def is_within(path: Path, root: Path) -> bool:
    """Whether ``path``, with every symlink resolved, lies inside ``root`` (resolved too)."""
    try:
        resolved = path.resolve(strict=False)
        base = root.resolve(strict=False)
    except (OSError, RuntimeError):  # a symlink loop
        return False
    return resolved == base or base in resolved.parents


def inside_root(root: Path, value: object, *, what: str, within: Path | None = None) -> Path:
    """``root / value``, checked: ``value`` relative, without ``..``, and the result
    (symlinks resolved) inside ``within`` (default ``root``).

    ``what`` names where the value came from (``"quarantine row 12's quarantine_path"``);
    the :class:`DataError` says it and what to do.
    """
    problem = relative_problem(value)
    if problem is None:
        assert isinstance(value, str)
        candidate = root / value
        fence = root if within is None else within
        if not is_within(candidate, fence):
            problem = f"leads outside {fence} (through a symlink)"
        else:
            return candidate
    raise DataError(
        f"{what} {value!r} {problem}; ursa only touches files inside {root}. The "
        f"manifest (ursa.sqlite) may come from someone else: check that row, or move the "
        f"manifest aside and run `ursa verify` to rebuild it"
    )


def outside_link(path: Path, root: Path) -> bool:
    """Whether ``path`` is a symlink, or lies under one, that leads outside ``root``."""
    return not is_within(path, root)


def class_name_problem(name: object) -> str | None:
    """What is wrong with ``name`` as a class name (it becomes a folder name), or ``None``."""
    if not isinstance(name, str):
        return f"is not text ({type(name).__name__})"
    if not name or not name.strip():
        return "is empty"
    if name in (".", ".."):
        return "is '.' or '..'"
    for bad in ("/", "\\", "\x00"):
        if bad in name:
            return f"contains {bad!r}"
    if name.startswith("."):
        return "starts with '.' (a hidden folder)"
    if any(unicodedata.category(char) == "Cc" for char in name):
        return "contains a control character"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_CLASS_NAME_BYTES:
        return f"is longer than {MAX_CLASS_NAME_BYTES} bytes"
    if os.sep != "/" and os.sep in name:  # pragma: no cover - Windows
        return f"contains {os.sep!r}"
    return None
