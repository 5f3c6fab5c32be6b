"""Write a file so that no reader ever sees half of it. Torch-free.

Everything ursa writes for a person to keep (bundles, checkpoints, manifests,
CSVs, plots, reports) goes through :func:`atomic_file`: the bytes go to a
temporary file beside the target, are flushed to disk, and the temporary file
is renamed over the target only when complete. On any error the temporary
file is removed and the target is left as it was.
"""

from __future__ import annotations

import os
import tempfile
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
    handle, temporary = tempfile.mkstemp(
        prefix=prefix if prefix is not None else f".{target.name}.",
        suffix=suffix,
        dir=target.parent,
    )
    try:
        mode = "w" if text else "wb"
        encoding = "utf-8" if text else None
        with os.fdopen(handle, mode, encoding=encoding, newline="" if text else None) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes, *, prefix: str | None = None
) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_file(path, prefix=prefix) as stream:
        stream.write(data)
    return Path(path)
