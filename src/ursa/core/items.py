"""Find labelled images in a folder and split them into training and validation sets.

Torch-free: plain paths, labels and seeded numpy shuffles.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ursa.core.errors import DataError, ImageError
from ursa.core.imageio import MAX_PIXELS
from ursa.core.safepaths import outside_link
from ursa.core.sources import IMAGE_INPUT, InputSource

log = logging.getLogger(__name__)

TRAIN_DIR_NAMES = ("train",)
VALID_DIR_NAMES = ("valid", "val", "validation")


@dataclass(frozen=True)
class Item:
    """One labelled image file."""

    path: Path
    """Absolute path of the file."""
    label: str
    """Class name."""


@dataclass(frozen=True)
class ScanResult:
    """Images that decoded, and the files that did not (with the reason)."""

    items: list[Item]
    skipped: list[ImageError]
    sha256: dict[Path, str]


def _skip_links(paths: Sequence[Path], root: Path) -> None:
    """One warning line for the links a walk left out."""
    if paths:
        shown = ", ".join(repr(str(p)) for p in paths[:3]) + (", …" if len(paths) > 3 else "")
        log.warning(
            "skipped %d symlink(s) leading outside %s (%s): ursa changes and serves only "
            "files inside the dataset",
            len(paths), root, shown,
        )  # fmt: skip


def _class_dirs(folder: Path, root: Path, *, follow_links: bool) -> list[Path]:
    """Class folders: visible sub-folders of ``folder``. Unless ``follow_links``, one that
    leads outside ``root`` through a symlink is skipped with a warning (one that stays
    inside is followed)."""
    found, skipped = [], []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_dir():
            continue
        if not follow_links and outside_link(path, root):  # a link, or under one
            skipped.append(path)
            continue
        found.append(path)
    _skip_links(skipped, root)
    return found


def files_in(
    folder: Path,
    source: InputSource = IMAGE_INPUT,
    *,
    root: Path | None = None,
    follow_links: bool = True,
) -> Iterable[Path]:
    """Files ``source`` reads under ``folder``, recursively, in sorted order; hidden
    files and folders (the quarantine, caches) are skipped. Linked sub-folders are not
    entered (as :func:`os.walk` does not).

    Unless ``follow_links``, a file that is a symlink leading outside ``root`` (default
    ``folder``) is skipped, with one warning line for the walk; one that stays inside is
    followed.
    """
    fence = folder if root is None else root
    skipped: list[Path] = []
    pending = [folder]  # depth first, each folder's files before its sub-folders
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError:
            continue  # unreadable or gone: as os.walk, nothing to list
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            linked = entry.is_symlink()
            if entry.is_dir():
                if not linked:
                    subfolders.append(Path(entry.path))
                continue
            if not source.matches(entry.name):
                continue
            path = Path(entry.path)
            if linked and not follow_links and outside_link(path, fence):
                skipped.append(path)
                continue
            yield path
        pending.extend(reversed(subfolders))
    _skip_links(skipped, fence)


def items_from_class_folders(
    folder: Path,
    source: InputSource = IMAGE_INPUT,
    *,
    root: Path | None = None,
    follow_links: bool = False,
) -> list[Item]:
    """One item per file under ``folder/<class>/`` (nested folders included).

    Unless ``follow_links``, a class folder or file that is a symlink leading outside
    ``root`` (the dataset folder; default ``folder``) is skipped with a warning. Reading
    for training follows links (datasets are often assembled from links); the walks of
    commands that move, write or serve files (verify, the cleaner) do not.
    """
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder; give a folder with one sub-folder per class")
    fence = folder if root is None else root
    if not follow_links and outside_link(folder, fence):
        raise DataError(
            f"{folder} is a symlink leading outside {fence}; ursa reads only files inside the "
            f"dataset folder: copy or move the images in instead of linking them"
        )
    items: list[Item] = []
    for class_dir in _class_dirs(folder, fence, follow_links=follow_links):
        files = files_in(class_dir, source, root=fence, follow_links=follow_links)
        items.extend(Item(path, class_dir.name) for path in files)
    if not items:
        loose = [p.name for p in folder.iterdir() if p.is_file() and source.matches(p)]
        hint = (
            f" It holds {len(loose)} loose images: move them into one sub-folder per class."
            if loose
            else ""
        )
        raise DataError(
            f"no {source.kind} files found in class folders under {folder}: expected "
            f"{folder}/<class>/<file> (e.g. {folder}/grizzly/001.jpg).{hint}"
        )
    return items


def existing_folder(path: str | Path) -> Path:
    """``path`` made absolute; a clear error when it is missing or not a folder."""
    root = Path(path).expanduser().resolve()
    if not root.exists():
        raise DataError(f"{path} does not exist")
    if not root.is_dir():
        raise DataError(f"{path} is a file; give the folder that holds the data")
    return root


def split_by_folder(valid_dir: Path) -> Callable[[list[Item]], tuple[list[Item], list[Item]]]:
    """A splitter: items under ``valid_dir`` validate, the rest train."""

    def split(items: list[Item]) -> tuple[list[Item], list[Item]]:
        valid = [item for item in items if item.path.is_relative_to(valid_dir)]
        chosen = {item.path for item in valid}
        return [item for item in items if item.path not in chosen], valid

    return split


def find_split_folders(folder: Path) -> tuple[Path, Path] | None:
    """``(train, valid)`` when ``folder`` already holds a split, else None."""
    names = {p.name.lower(): p for p in folder.iterdir() if p.is_dir()} if folder.is_dir() else {}
    train = next((names[n] for n in TRAIN_DIR_NAMES if n in names), None)
    valid = next((names[n] for n in VALID_DIR_NAMES if n in names), None)
    if train is not None and valid is not None:
        return train, valid
    return None


def scan_images(
    items: Sequence[Item],
    *,
    max_pixels: int = MAX_PIXELS,
    workers: int = 4,
    source: InputSource = IMAGE_INPUT,
) -> ScanResult:
    """Decode every file once; keep those that decode, report those that do not.

    Images check through :meth:`InputSource.check`: JPEGs decode in draft mode
    (reduced scale, every byte still read), so a folder of large photos is
    checked quickly. Decoding runs in a thread pool (Pillow releases the GIL
    while it decodes).
    The sha256 of each good file is kept for the dataset fingerprint.
    """

    def check(item: Item) -> tuple[Item, str | None, ImageError | None]:
        try:
            data = item.path.read_bytes()
        except OSError as error:
            return item, None, ImageError(str(item.path), f"cannot read the file ({error})")
        try:
            source.check(data, max_pixels=max_pixels)
        except ImageError as error:
            return item, None, ImageError(str(item.path), error.reason)
        return item, hashlib.sha256(data).hexdigest(), None

    good: list[Item] = []
    skipped: list[ImageError] = []
    digests: dict[Path, str] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for item, digest, error in pool.map(check, items):
            if error is not None:
                skipped.append(error)
            else:
                good.append(item)
                digests[item.path] = digest or ""
    for error in skipped:
        log.warning("skipped %s", error)
    return ScanResult(good, skipped, digests)


def random_split(
    items: Sequence[Item], valid_pct: float, seed: int, *, stratify: bool = True
) -> tuple[list[Item], list[Item]]:
    """Split ``items`` into (train, valid), the same way for the same seed on any machine.

    Items are ordered by path first, so the split depends only on the file names
    and the seed. ``stratify`` takes ``valid_pct`` of every class (at least one
    image from a class of two or more when ``valid_pct`` > 0).
    """
    if not 0.0 <= valid_pct < 1.0:
        raise DataError(f"valid_pct={valid_pct}: use a fraction from 0 up to (not including) 1")
    rng = np.random.default_rng(seed)
    ordered = sorted(items, key=lambda item: (item.label, str(item.path)))
    groups: list[list[Item]] = []
    if stratify:
        by_label: dict[str, list[Item]] = {}
        for item in ordered:
            by_label.setdefault(item.label, []).append(item)
        groups = [by_label[label] for label in sorted(by_label)]
    else:
        groups = [ordered]
    train: list[Item] = []
    valid: list[Item] = []
    for group in groups:
        order = rng.permutation(len(group))
        n_valid = round(len(group) * valid_pct)
        if stratify and valid_pct > 0 and n_valid == 0 and len(group) >= 2:
            n_valid = 1
        valid_idx = set(order[:n_valid].tolist())
        for i, item in enumerate(group):
            (valid if i in valid_idx else train).append(item)
    return train, valid


def class_counts(items: Iterable[Item]) -> dict[str, int]:
    """Images per class, by class name."""
    return dict(sorted(Counter(item.label for item in items).items()))


def fingerprint(items: Iterable[Item], digests: dict[Path, str], root: Path) -> str:
    """A sha256 over (label, relative path, content hash) of every item: the dataset's identity."""
    hasher = hashlib.sha256()
    lines = sorted(
        f"{item.label}\t{_relative(item.path, root)}\t{digests.get(item.path, '')}"
        for item in items
    )
    for line in lines:
        hasher.update(line.encode() + b"\n")
    return hasher.hexdigest()


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()
