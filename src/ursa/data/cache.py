"""The decode cache: every file decoded and resized once, then read from one memory-mapped file.

Decoding a JPEG costs far more than anything done to it afterwards, and a
training run decodes every file once an epoch. With the cache, files are
decoded once, before the first epoch, into what the loader needs (the
:class:`StoredForm`), and every later epoch reads those pixels back:

* **validation** items are stored at their exact deterministic resize
  (:func:`~ursa.core.preprocess.resize_for_model`, size × size), so a tensor
  read from the cache equals :func:`~ursa.core.preprocess.prepare_input` of the
  file (resizing an image to its own size is a copy);
* **training** items are stored a little larger, aspect kept (short side
  ``size / sqrt(min_scale)``, at most ``2 × size``, never enlarged): a random
  crop of ``min_scale`` of the area then still holds ``size`` pixels a side,
  so the crop is never upsampled. With ``resize="pad"`` or ``"squish"`` or no
  augmentation, training starts with the fixed resize, which is stored instead.

The loader applies the stored form whether or not the cache is on, so the
cache changes how fast batches come, never what is in them.

On disk, one (dataset, role, settings) is a *group* folder; each version of
its file list is an *entry*: ``<entry>.pixels`` (every image's uint8 (H, W, 3)
pixels, back to back) and ``<entry>.json`` (the files with their size and
mtime, and each image's shape). Both are written to temporary files and
renamed, the index last, so a cache that was not finished is never read. A
lock file serialises builders of one group: a second process waits, then
uses what the first built. Loader workers read the pixels with
``np.memmap``: memory stays flat, the operating system pages images in and
out as needed.

A changed setting gives another group; a changed, added or removed file gives
a new entry, which copies the unchanged images from the group's previous
entry and decodes only the rest. Each group keeps its three most recently
used entries. Torch-free.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from ursa.core.errors import DataError, ImageError
from ursa.core.items import Item
from ursa.core.preprocess import PreprocessConfig, resize_for_model

try:  # POSIX; elsewhere builders rely on write-then-rename alone.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
"""Version of the on-disk layout; part of every key, so a new layout never reads an old one."""

_PIXEL_CODE = (
    "ursa.core.imageio",
    "ursa.core.preprocess",
    "ursa.core.sources",
    "ursa.core.audio",
    "ursa.core.bytesimage",
    "ursa.data.cache",
)
"""ursa's modules that decide what a stored pixel is (opening, resizing, drawing), by
import name: a module that moves or is renamed fails loudly here instead of being skipped."""


def _pixel_code_versions() -> dict[str, str]:
    """What the stored pixels depend on besides the settings: Pillow's version and the
    text of ursa's decoding and resizing code. Any change to either gives a new cache,
    so a cached image always equals what ``prepare_input`` makes now."""
    import importlib
    import inspect

    import PIL

    hasher = hashlib.sha256()
    for name in _PIXEL_CODE:
        module = importlib.import_module(name)  # ImportError: update _PIXEL_CODE
        hasher.update(name.encode() + inspect.getsource(module).encode())
    return {"pillow": PIL.__version__, "ursa_pixel_code": hasher.hexdigest()[:16]}


KEEP_ENTRIES = 3
"""Entries (file-list versions) kept per group; older ones are deleted after a build."""

MAX_TRAIN_FACTOR = 2.0
"""The training short side is at most this times ``size`` (a small ``min_scale`` asks more)."""

MAX_ASPECT = 4
"""A stored training image's long side is at most this times its short side's target."""

_IN_FLIGHT_PER_THREAD = 8


def cache_dir() -> Path:
    """Where decoded images go: ``$URSA_CACHE_DIR``, else ``$XDG_CACHE_HOME/ursa``, else
    ``~/.cache/ursa``; the cache itself is the ``decoded`` folder inside."""
    explicit = os.environ.get("URSA_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser() / "decoded"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "ursa" / "decoded"


def clear_cache(directory: Path | None = None) -> int:
    """Delete every cached image under ``directory`` (default :func:`cache_dir`); returns
    the bytes freed. Safe at any time: the next loader simply decodes again."""
    folder = cache_dir() if directory is None else Path(directory)
    if not folder.exists():
        return 0
    freed = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    shutil.rmtree(folder, ignore_errors=True)
    return freed


@dataclass(frozen=True)
class StoredForm:
    """What the loader keeps of a decoded image, before any random augmentation.

    Picklable, so loader workers can apply it when the cache is off.
    """

    preprocess: PreprocessConfig
    """The model input's resize settings."""
    short_side: int | None = None
    """None: the exact deterministic resize (size × size). A number: scale so the short
    side is this many pixels, aspect kept (never enlarged), for random crops to cut from."""

    def __call__(self, image: Image.Image) -> Image.Image:
        if self.short_side is None:
            return resize_for_model(image, self.preprocess)
        width, height = image.size
        # The long side is capped too, so a sliver-shaped file stays a bounded size.
        short, long = min(width, height), max(width, height)
        scale = min(1.0, self.short_side / short, MAX_ASPECT * self.short_side / long)
        if scale >= 1.0:
            return image
        new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
        return image.resize(new_size, Image.Resampling[self.preprocess.interpolation.upper()])

    def to_dict(self) -> dict[str, Any]:
        return {"preprocess": self.preprocess.to_dict(), "short_side": self.short_side}


def stored_form(
    preprocess: PreprocessConfig,
    *,
    training: bool,
    augment: object = "default",
    min_scale: float = 1.0,
) -> StoredForm:
    """The stored form for validation (``training=False``) or training items.

    Training with random resized crops (``resize="crop"`` and an augmentation)
    keeps a short side of ``size / sqrt(min_scale)`` (at most ``2 × size``): a
    crop of ``min_scale`` of the area is then about ``size`` pixels a side, so
    it is cut from real pixels, not upsampled ones. Everything else starts with
    the deterministic resize, which is stored instead.
    """
    side = training_side(preprocess, augment=augment, min_scale=min_scale) if training else None
    return StoredForm(preprocess, short_side=side)


def training_side(
    preprocess: PreprocessConfig, *, augment: object = "default", min_scale: float = 1.0
) -> int | None:
    """The short side a training image keeps for its random crop: ``size /
    sqrt(min_scale)``, at most ``2 × size``; None when training starts with the
    deterministic resize instead (``resize`` pad or squish, or ``augment="none"``).
    The decode cache stores training images at this size and the loader decodes
    them no smaller (:func:`ursa.data.transforms.train_decode_size`)."""
    if augment == "none" or preprocess.resize != "crop":
        return None
    side = min(MAX_TRAIN_FACTOR * preprocess.size, preprocess.size / math.sqrt(min_scale))
    return math.ceil(side)


class CachedDataset(Protocol):
    """What :func:`cache_dataset` needs of a dataset (``ursa.data.loaders.ImageDataset``)."""

    @property
    def items(self) -> Sequence[Item]: ...
    @property
    def prepare(self) -> Callable[[Image.Image], Image.Image] | None: ...
    @property
    def min_size(self) -> int | None: ...
    @property
    def max_pixels(self) -> int: ...

    def decode(self, index: int) -> Image.Image: ...


def cache_dataset(dataset: CachedDataset, *, name: str) -> DecodeCache | None:
    """The cache of ``dataset.decode`` for every item (see :func:`build_cache`); ``name``
    says which dataset and role (e.g. its folder and "train")."""
    prepare = dataset.prepare
    settings = {
        "prepare": prepare.to_dict() if isinstance(prepare, StoredForm) else repr(prepare),
        "min_size": dataset.min_size,
        "max_pixels": dataset.max_pixels,
    }
    paths = [item.path for item in dataset.items]
    return build_cache(paths, dataset.decode, settings, name=name)


class DecodeCache:
    """A finished cache entry, read-only: image ``i`` of the list it was built for."""

    def __init__(self, pixels: Path, shapes: np.ndarray) -> None:
        self.path = pixels
        self.shapes = shapes.astype(np.int64)  # (N, 2): height, width
        sizes = self.shapes[:, 0] * self.shapes[:, 1] * 3
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)  # (N + 1,)
        self._pixels: np.ndarray | None = self._map()

    def _map(self) -> np.ndarray:
        return np.memmap(self.path, dtype=np.uint8, mode="r")

    def __len__(self) -> int:
        return len(self.shapes)

    def array(self, index: int) -> np.ndarray:
        """Image ``index`` as a fresh (H, W, 3) uint8 array (a copy, safe to change)."""
        if self._pixels is None:  # a worker started by spawn: map the file again
            self._pixels = self._map()
        start, end = self.offsets[index], self.offsets[index + 1]
        height, width = self.shapes[index]
        return np.array(self._pixels[start:end]).reshape(height, width, 3)

    def image(self, index: int) -> Image.Image:
        """Image ``index`` as an RGB PIL image."""
        return Image.fromarray(self.array(index), mode="RGB")

    def __getstate__(self) -> dict[str, Any]:
        # Pickling a memmap copies the whole array; a worker maps the file itself instead.
        state = self.__dict__.copy()
        state["_pixels"] = None
        return state


def build_cache(
    paths: Sequence[Path],
    decode: Callable[[int], Image.Image],
    settings: dict[str, Any],
    *,
    name: str,
    directory: Path | None = None,
    threads: int | None = None,
) -> DecodeCache | None:
    """The cache for ``paths`` under ``settings``: found, extended, or built now.

    ``decode(i)`` returns the stored form of ``paths[i]``; it runs in ``threads``
    threads (default: one per core; Pillow decodes and resizes without the GIL).
    ``settings`` is everything that shapes the pixels (JSON-ready); ``name``
    names the dataset and role (e.g. its folder and "train"). Returns None, with
    a warning, when the cache folder cannot be written (read-only, disk full):
    the loader then decodes every epoch as without a cache.
    """
    if not paths:
        return None
    group_key = _digest({"format": CACHE_FORMAT, "name": name, "settings": settings,
                         "code": _pixel_code_versions()})  # fmt: skip
    group = (cache_dir() if directory is None else Path(directory)) / group_key[:32]
    files = [_identity(path) for path in paths]
    entry = _digest({"group": group_key, "files": files})[:32]
    if group.is_symlink():
        log.warning(
            "decode cache off for %s: %s is a symlink; ursa makes its cache folders itself and "
            "writes through no link. Remove the link (or clear the cache) to cache again.",
            name, group,
        )  # fmt: skip
        return None
    try:
        found = _load_entry(group, entry, files)
        if found is not None:
            return found
        group.mkdir(parents=True, exist_ok=True)
        with _group_lock(group):
            found = _load_entry(group, entry, files)  # another process may have built it
            if found is None:
                start = time.perf_counter()
                found, decoded = _build_entry(group, entry, files, decode, threads)
                log.info(
                    "decode cache for %s: %d images decoded, %d reused, %.1f s, %s",
                    name, decoded, len(files) - decoded, time.perf_counter() - start, group,
                )  # fmt: skip
            _prune(group, keep=entry)
            return found
    except OSError as error:
        log.warning(
            "decode cache off for %s: cannot write %s (%s); images are decoded every epoch. "
            "Free space, set URSA_CACHE_DIR to a writable folder, or pass cache=False.",
            name, group, error,
        )  # fmt: skip
        return None


# -- the entry on disk ---------------------------------------------------------------------

FileIdentity = tuple[str, int, int]


def _identity(path: Path) -> FileIdentity:
    try:
        stat = path.stat()
    except OSError as error:
        raise DataError(
            f"{path} is gone ({error}); the folder changed after it was scanned: "
            f"build the ImageData again"
        ) from None
    return (str(path), stat.st_size, stat.st_mtime_ns)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _read_index(index: Path) -> dict[str, Any] | None:
    try:
        values = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(values, dict) or values.get("format") != CACHE_FORMAT:
        return None
    return values


def _load_entry(group: Path, entry: str, files: list[FileIdentity]) -> DecodeCache | None:
    """The finished entry, or None when it is missing, unfinished or damaged (or either
    file is a symlink: only what a build wrote there is read)."""
    index, pixels = group / f"{entry}.json", group / f"{entry}.pixels"
    if index.is_symlink() or pixels.is_symlink():
        return None
    values = _read_index(index)
    if values is None or [tuple(f) for f in values.get("files", [])] != files:
        return None
    shapes = np.asarray(values["shapes"], dtype=np.int64).reshape(-1, 2)
    try:
        if pixels.stat().st_size != int((shapes[:, 0] * shapes[:, 1]).sum() * 3):
            return None
        found = DecodeCache(pixels, shapes)
    except (OSError, ValueError):
        return None
    with contextlib.suppress(OSError):  # most recently used: pruning keeps it (read-only is fine)
        os.utime(group / f"{entry}.json")
    return found


def _previous_entry(group: Path) -> tuple[DecodeCache, list[FileIdentity]] | None:
    """The group's most recently used finished entry, to copy unchanged images from."""
    for index in sorted(group.glob("*.json"), key=_mtime, reverse=True):
        values = _read_index(index)
        if values is None:
            continue
        files = [(str(f[0]), int(f[1]), int(f[2])) for f in values.get("files", [])]
        found = _load_entry(group, index.stem, files)
        if found is not None:
            return found, files
    return None


def _build_entry(
    group: Path,
    entry: str,
    files: list[FileIdentity],
    decode: Callable[[int], Image.Image],
    threads: int | None,
) -> tuple[DecodeCache, int]:
    previous = _previous_entry(group)
    reusable: dict[FileIdentity, int] = {}
    if previous is not None:
        reusable = {identity: i for i, identity in enumerate(previous[1])}
    shapes = np.zeros((len(files), 2), dtype=np.int64)
    pixels_tmp = _temporary(group, f".{entry}.pixels.")
    decoded = 0
    try:
        todo = [i for i, identity in enumerate(files) if identity not in reusable]
        arrays = _decoded_arrays(todo, decode, files, threads)
        with open(pixels_tmp, "wb") as stream, contextlib.closing(arrays):
            for i, identity in enumerate(files):
                if identity in reusable and previous is not None:
                    array = previous[0].array(reusable[identity])
                else:
                    array = next(arrays)
                    decoded += 1
                shapes[i] = array.shape[:2]
                stream.write(np.ascontiguousarray(array, dtype=np.uint8).tobytes())
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(pixels_tmp, group / f"{entry}.pixels")
        index = {"format": CACHE_FORMAT, "files": files, "shapes": shapes.tolist()}
        index_tmp = _temporary(group, f".{entry}.json.")
        try:
            with open(index_tmp, "w", encoding="utf-8") as stream:
                json.dump(index, stream)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(index_tmp, group / f"{entry}.json")  # the entry exists from here on
        finally:
            index_tmp.unlink(missing_ok=True)
    finally:
        pixels_tmp.unlink(missing_ok=True)
    _fsync_folder(group)
    return DecodeCache(group / f"{entry}.pixels", shapes), decoded


def _decoded_arrays(
    todo: list[int],
    decode: Callable[[int], Image.Image],
    files: list[FileIdentity],
    threads: int | None,
) -> Generator[np.ndarray]:
    """``decode(i)`` for each of ``todo``, in order, as uint8 (H, W, 3) arrays.

    A bounded number run ahead of the writer, so memory stays flat however many
    files there are.
    """

    def one(i: int) -> np.ndarray:
        try:
            image = decode(i)
        except ImageError as error:
            raise DataError(
                f"{files[i][0]} could not be decoded for the decode cache ({error.reason}); "
                f"the folder changed after it was scanned: build the ImageData again"
            ) from None
        array = np.asarray(image.convert("RGB"), dtype=np.uint8)
        return array  # (H, W, 3)

    workers = max(1, threads if threads is not None else (os.cpu_count() or 1))
    queue = iter(todo)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[Future[np.ndarray]] = deque(
            pool.submit(one, i) for i in islice(queue, workers * _IN_FLIGHT_PER_THREAD)
        )
        try:
            while pending:
                array = pending.popleft().result()
                following = next(queue, None)
                if following is not None:
                    pending.append(pool.submit(one, following))
                yield array
        finally:
            for future in pending:
                future.cancel()


def _temporary(group: Path, prefix: str) -> Path:
    handle, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=group)
    os.close(handle)
    return Path(name)


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError, AttributeError):
        handle = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


@contextlib.contextmanager
def _group_lock(group: Path) -> Iterator[None]:
    """Hold the group's lock: one builder at a time, released if the process dies."""
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    # O_NOFOLLOW: a planted link cannot make the lock create a file elsewhere.
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    handle = os.open(group / ".lock", flags, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        os.close(handle)


def _prune(group: Path, *, keep: str) -> None:
    """Keep ``keep`` and the group's most recently used entries; delete the rest and any
    leftovers of an interrupted build (called under the group lock)."""
    indexes = sorted(group.glob("*.json"), key=_mtime, reverse=True)
    newest_first = [keep] + [index.stem for index in indexes if index.stem != keep]
    kept = set(newest_first[:KEEP_ENTRIES])
    for path in group.iterdir():
        if path.name == ".lock":
            continue
        # Hidden files are temporary files of an interrupted build (no builder runs now).
        if path.name.startswith(".") or path.name.split(".")[0] not in kept:
            with contextlib.suppress(OSError):
                path.unlink()
