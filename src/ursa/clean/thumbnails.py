"""Thumbnails for the cleaning page: made on the server once, cached on disk by content hash."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from ursa.core.atomic import atomic_write_bytes
from ursa.core.imageio import open_image

CACHE_DIR = ".ursa-cache"
"""Hidden folder (inside the dataset folder, so training skips it) for the cleaner's caches."""


class Thumbnails:
    """JPEG thumbnails no larger than ``side`` pixels, kept in ``folder``.

    The cache key is the file's sha256, so a thumbnail survives a relabel (the
    file moves, its bytes do not) and a changed file gets a new one.
    """

    def __init__(self, folder: Path, side: int = 256) -> None:
        self.folder = folder
        self.side = side

    def path_for(self, sha256: str) -> Path:
        return self.folder / sha256[:2] / f"{sha256}-{self.side}.jpg"

    def get(self, source: Path, sha256: str, *, cache: bool = True) -> bytes:
        """The thumbnail of ``source`` (whose content hash is ``sha256``); made if missing.

        With ``cache=False`` the cache folder is neither read nor written (the caller found
        that it leads somewhere it must not). Raises :class:`~ursa.core.errors.ImageError` when
        ``source`` is not a readable image.
        """
        cached = self.path_for(sha256)
        if cache:
            try:
                return cached.read_bytes()
            except FileNotFoundError:
                pass
        image = open_image(source, draft=self.side)
        image.thumbnail((self.side, self.side), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=85)
        data = buffer.getvalue()
        if cache:
            atomic_write_bytes(cached, data)  # two requests racing both write whole files
        return data
