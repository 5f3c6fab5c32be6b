"""Write a file so that no reader ever sees half of it. Torch-free.

Everything ursa writes for a person to keep (bundles, checkpoints, manifests,
CSVs, plots, reports) goes through :func:`atomic_file`: the bytes go to a
temporary file beside the target, are flushed to disk, and the temporary file
is renamed over the target only when complete. On any error the temporary
file is removed and the target is left as it was.

The file ends with the permissions a plain ``open(path, "w")`` would leave: a
new file ``0o666`` less the umask (``tempfile.mkstemp`` would make it ``0o600``,
private to its owner), a replaced file the mode it had.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_file(
    path: str | os.PathLike[str],
    *,
    prefix: str | None = None,
    suffix: str = ".tmp",
    text: bool = False,
) -> Iterator[IO[Any]]:
    """A stream to write ``path``'s new content to; it replaces ``path`` on a clean exit.

    ``prefix`` names the temporary file (default ``.<name>.``, hidden); ``text``
    opens it for UTF-8 text with universal newlines left alone (as ``csv`` wants).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = _create_beside(
        target, prefix if prefix is not None else f".{target.name}.", suffix
    )
    try:
        mode = "w" if text else "wb"
        encoding = "utf-8" if text else None
        with os.fdopen(handle, mode, encoding=encoding, newline="" if text else None) as stream:
            yield stream
            stream.flush()
            _keep_mode(temporary, target)
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _create_beside(target: Path, prefix: str, suffix: str) -> tuple[int, str]:
    """A new, empty file in ``target``'s folder: (descriptor, path).

    Created as ``open()`` creates files, mode ``0o666`` filtered by the umask (which
    the kernel applies; reading the umask would mean setting it, for every thread),
    and exclusively (``O_EXCL``), under a random name, as ``mkstemp`` does."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        name = target.parent / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            return os.open(name, flags, 0o666), str(name)
        except FileExistsError:  # a name already taken: draw another
            continue
    raise FileExistsError(f"no free temporary name beside {target}")


def _keep_mode(temporary: str, target: Path) -> None:
    """Give the new content the mode of the file it replaces, as a rewrite in place would."""
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:  # a new file: the mode it was created with stands
        return
    os.chmod(temporary, mode)


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes, *, prefix: str | None = None
) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_file(path, prefix=prefix) as stream:
        stream.write(data)
    return Path(path)
