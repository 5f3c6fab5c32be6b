"""Check a dataset folder: broken images, duplicates, near-duplicates, train/valid leaks.

Every image is decoded in full with :func:`~ursa.core.imageio.open_image`, the
opener training uses, and hashed twice: sha256 for exact copies and a
perceptual hash (:mod:`ursa.core.hashing`) for resized or re-encoded copies.

What is reported, and what ``fix`` does with it:

=============================  =============================================  ==========
kind                           meaning                                        fix
=============================  =============================================  ==========
unreadable                     corrupt, truncated, empty, not an image,       quarantine
                               over the pixel limit
too-small                      shorter side under ``min_side``                quarantine
duplicate / near-duplicate     a copy in the same class and split             quarantine
leak                           a copy of a training image in validation       quarantine
cross-class (near-)duplicate   the same image in two classes: probably        flag only
                               mislabeled or ambiguous; a person decides
=============================  =============================================  ==========

Quarantine moves the file to ``.ursa-quarantine/<same relative path>`` inside
the dataset folder (hidden, so training skips it) and records why in the
manifest; :func:`restore` moves every file back, byte for byte. Nothing is deleted.

The manifest may come from someone else: every path read from it is checked
(:func:`~ursa.core.manifest.row_path`) before a file is moved or deleted by it,
and a bad row stops the command before it touches anything. Whatever changes the
folder's files holds its lock (:func:`~ursa.core.manifest.folder_lock`), so two
``verify --fix`` at once run one after the other. A folder that cannot be written
is still verified: the report is made, nothing is recorded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ursa.core import hashing
from ursa.core.errors import ConfigError, DataError, ImageError
from ursa.core.imageio import MAX_PIXELS, open_image
from ursa.core.manifest import (
    QUARANTINE_DIR,
    ImageRecord,
    Manifest,
    folder_lock,
    iter_image_paths,
    manifest_writable,
    quarantine_folder,
    row_path,
    url_key,
)
from ursa.core.safepaths import relative_problem

Action = Literal["quarantine", "flag"]
Kind = Literal[
    "unreadable", "too-small", "duplicate", "near-duplicate", "leak",
    "cross-class duplicate", "cross-class near-duplicate",
]  # fmt: skip
"""What a finding is (the table of the module docstring)."""
COPY_KINDS: tuple[Kind, ...] = ("duplicate", "near-duplicate")
"""A copy within one class and split."""
CROSS_CLASS_KINDS: tuple[Kind, ...] = ("cross-class duplicate", "cross-class near-duplicate")
"""The same picture in two classes."""


@dataclass(frozen=True)
class VerifyConfig:
    """What counts as a bad or duplicate image."""

    min_side: int = 32
    """Images whose shorter side is below this many pixels are too small."""
    max_pixels: int = MAX_PIXELS
    """Images with more pixels are refused (decompression bombs)."""
    near_threshold: int = 6
    """Perceptual-hash distance (of 64 bits) at or below which two images are near-duplicates."""
    workers: int = 0
    """Decoding threads; 0 means one per CPU core."""

    def __post_init__(self) -> None:
        problems = []
        if self.min_side < 1:
            problems.append(f"min_side={self.min_side}: use 1 or more pixels")
        if self.max_pixels < 1:
            problems.append(f"max_pixels={self.max_pixels}: use a positive number")
        if not 0 <= self.near_threshold <= 32:
            problems.append(f"near_threshold={self.near_threshold}: use 0 (exact) to 32 bits")
        if self.workers < 0:
            problems.append(f"workers={self.workers}: use 0 (automatic) or more")
        if problems:
            raise ConfigError("invalid verify settings:\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class FileFacts:
    """What one pass over a file found."""

    path: str
    label: str
    split: str
    sha256: str
    phash: int | None
    """None when the image did not decode."""
    width: int
    height: int
    size_bytes: int
    problem: str
    """Why the file is unusable; empty when it is fine."""
    kind: Literal["", "unreadable", "too-small"] = ""
    """unreadable or too-small when ``problem`` is set."""


@dataclass(frozen=True)
class Finding:
    """One thing wrong with one file."""

    kind: Kind
    path: str
    """The file concerned (relative to the dataset folder)."""
    other: str
    """The file it copies (kept), for duplicates and leaks."""
    detail: str
    action: Action


@dataclass
class VerifyReport:
    """Everything :func:`verify_folder` found."""

    root: Path
    checked: int
    findings: list[Finding] = field(default_factory=list)
    recorded: bool = True
    """False when the folder could not be written: the manifest was left as it was."""

    def counts(self) -> dict[str, int]:
        """Findings per kind."""
        return dict(sorted(Counter(f.kind for f in self.findings).items()))

    @property
    def to_quarantine(self) -> list[Finding]:
        return [f for f in self.findings if f.action == "quarantine"]


def inspect_file(
    path: Path, relative: str, label: str, split: str, config: VerifyConfig
) -> FileFacts:
    """Read, hash and fully decode one file."""
    try:
        data = path.read_bytes()
    except OSError as error:
        return FileFacts(
            relative, label, split, "", None, 0, 0, 0, f"cannot read ({error})", "unreadable"
        )
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        image = open_image(data, max_pixels=config.max_pixels)
    except ImageError as error:
        return FileFacts(
            relative, label, split, sha256, None, 0, 0, len(data), error.reason, "unreadable"
        )
    width, height = image.size
    if min(width, height) < config.min_side:
        problem = f"{width}×{height}, shorter side under {config.min_side} px"
        return FileFacts(
            relative, label, split, sha256, None, width, height, len(data), problem, "too-small"
        )
    perceptual = hashing.phash(image)
    return FileFacts(relative, label, split, sha256, perceptual, width, height, len(data), "")


def scan_folder(
    root: Path,
    config: VerifyConfig,
    manifest: Manifest | None,
    *,
    reuse: bool = False,
    on_file: Callable[[], None] | None = None,
) -> list[FileFacts]:
    """Inspect every image file in ``root`` and bring the manifest up to date.

    ``reuse`` trusts a manifest row whose size matches the file (no decode): for
    look-ups such as ``forget``; verification always decodes. Without a manifest
    (``None``: a folder that cannot be written) nothing is recorded.
    """
    known = {r.path: r for r in manifest.records()} if manifest is not None and reuse else {}
    facts = inspect_folder(root, config, known, on_file=on_file)
    if manifest is not None:
        record_facts(manifest, facts)
    return facts


def inspect_folder(
    root: Path,
    config: VerifyConfig,
    known: dict[str, ImageRecord] | None = None,
    *,
    on_file: Callable[[], None] | None = None,
) -> list[FileFacts]:
    """Read, hash and decode every image file in ``root`` (in threads); a row of ``known``
    whose size matches its file is trusted instead of decoding it."""
    files = list(iter_image_paths(root))
    known = known or {}

    def one(entry: tuple[str, str, str, Path]) -> FileFacts:
        relative, label, split, path = entry
        row = known.get(relative)
        if (row is not None and _is_hex(row.sha256, 64)
                and (not row.phash or _is_hex(row.phash, 16))
                and row.size_bytes == _size(path)):  # fmt: skip
            phash = hashing.from_hex(row.phash) if row.phash else None
            facts = FileFacts(relative, label, split, row.sha256, phash, row.width, row.height,
                              row.size_bytes, row.reason if phash is None else "")  # fmt: skip
        else:
            facts = inspect_file(path, relative, label, split, config)
        if on_file is not None:
            on_file()
        return facts

    workers = config.workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, files))


def record_facts(manifest: Manifest, facts: list[FileFacts]) -> None:
    """Bring the manifest up to date with ``facts`` (call it holding the folder's lock).

    A file that went away after it was inspected (another process quarantined it)
    keeps its row as that process left it; a row whose file is missing from
    ``facts`` but is there now (put back meanwhile) is not marked deleted.
    """
    root = manifest.root
    known = {r.path: r for r in manifest.records()}
    for fact in facts:
        row = known.get(fact.path)
        if not (root / fact.path).is_file():
            continue
        base = row if row is not None else ImageRecord(path=fact.path, sha256="", label=fact.label)
        record = dataclasses.replace(
            base,
            sha256=fact.sha256, label=fact.label, split=fact.split,
            phash=hashing.to_hex(fact.phash) if fact.phash is not None else "",
            width=fact.width, height=fact.height, size_bytes=fact.size_bytes,
            status="rejected" if fact.problem else "ok", reason=fact.problem, quarantine_path="",
        )  # fmt: skip
        if record != row:
            manifest.put(record)
    present = {fact.path for fact in facts}
    for row in known.values():
        if row.path not in present and row.status in ("ok", "pending") and not row.quarantine_path:
            if relative_problem(row.path) is None and (root / row.path).exists():
                continue  # came back after the scan listed the folder
            manifest.update(row.path, status="deleted", reason="the file is gone (removed by hand)")


def _is_hex(text: str, digits: int) -> bool:
    """Whether a hash read from the manifest is ``digits`` hex digits (rows may come from
    elsewhere)."""
    return len(text) == digits and all(c in "0123456789abcdef" for c in text.lower())


def _phash_of(record: ImageRecord) -> int | None:
    return hashing.from_hex(record.phash) if _is_hex(record.phash, 16) else None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def _keeper_order(fact: FileFacts) -> tuple[int, int, int, str]:
    """Which copy to keep: training before validation, then most pixels, then bytes, then name."""
    return (
        0 if fact.split != "valid" else 1,
        -fact.width * fact.height,
        -fact.size_bytes,
        fact.path,
    )


def find_duplicates(facts: list[FileFacts], near_threshold: int) -> list[Finding]:
    """Exact and near copies among decodable files, grouped; one copy of each group is kept."""
    good = [f for f in facts if f.phash is not None]
    parent = list(range(len(good)))

    def root_of(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        parent[root_of(i)] = root_of(j)

    first_by_sha: dict[str, int] = {}
    for index, fact in enumerate(good):
        if fact.sha256 in first_by_sha:
            union(index, first_by_sha[fact.sha256])
        else:
            first_by_sha[fact.sha256] = index
    hashes = [f.phash for f in good if f.phash is not None]
    for i, j, _ in hashing.near_pairs(hashes, near_threshold):
        union(i, j)
    groups: dict[int, list[FileFacts]] = {}
    for index, fact in enumerate(good):
        groups.setdefault(root_of(index), []).append(fact)

    findings: list[Finding] = []
    for members in groups.values():
        if len(members) < 2:
            continue
        by_label: dict[str, list[FileFacts]] = {}
        for fact in members:
            by_label.setdefault(fact.label, []).append(fact)
        keepers = []
        for label_members in by_label.values():
            label_members.sort(key=_keeper_order)
            keeper = label_members[0]
            keepers.append(keeper)
            for copy in label_members[1:]:
                findings.append(_relation(copy, keeper, "quarantine"))
        keepers.sort(key=_keeper_order)
        for other in keepers[1:]:
            findings.append(_relation(other, keepers[0], "flag"))
    return sorted(findings, key=lambda f: (f.kind, f.path))


def _relation(copy: FileFacts, keeper: FileFacts, action: Action) -> Finding:
    exact = copy.sha256 == keeper.sha256
    assert copy.phash is not None and keeper.phash is not None  # only decodable files get here
    distance = hashing.hamming(copy.phash, keeper.phash)
    detail = "identical bytes" if exact else f"perceptual distance {distance}/64"
    crosses_split = bool(copy.split and keeper.split and copy.split != keeper.split)
    if copy.label != keeper.label:
        kind: Kind = CROSS_CLASS_KINDS[0] if exact else CROSS_CLASS_KINDS[1]
        detail += f"; labelled {copy.label} here and {keeper.label} there"
        if crosses_split:
            detail += "; also across train/valid"
    elif crosses_split:
        kind = "leak"
        detail += f"; a {keeper.split} image repeated in {copy.split}"
    else:
        kind = COPY_KINDS[0] if exact else COPY_KINDS[1]
    return Finding(kind, copy.path, keeper.path, detail, action)


def verify_folder(
    root: str | Path,
    config: VerifyConfig | None = None,
    *,
    on_file: Callable[[], None] | None = None,
) -> VerifyReport:
    """Decode and hash every image under ``root``; report what is broken, copied or leaked.

    Writes what it learns to the manifest ``root/ursa.sqlite``; moves nothing
    (see :func:`fix`). A folder that cannot be written is verified all the same,
    the manifest left as it is (the report's ``recorded`` is False).
    """
    config = config or VerifyConfig()
    folder = Path(root)
    if not folder.is_dir():
        raise DataError(
            f"{root} is not a folder; give the dataset folder (one sub-folder per class)"
        )
    recorded = manifest_writable(folder)
    if recorded:
        Manifest(folder).close()  # a bad manifest is reported now, not after decoding
    facts = inspect_folder(folder, config, on_file=on_file)  # the long part: no lock
    if recorded:
        with folder_lock(folder), Manifest(folder) as manifest:
            record_facts(manifest, facts)
    report = VerifyReport(folder, len(facts), recorded=recorded)
    report.findings.extend(
        Finding(f.kind or "unreadable", f.path, "", f.problem, "quarantine")
        for f in facts
        if f.problem
    )
    report.findings.extend(find_duplicates(facts, config.near_threshold))
    return report


def fix(report: VerifyReport) -> list[tuple[str, str]]:
    """Move every finding marked ``quarantine`` into the quarantine folder; return the moves.

    Holds the folder's lock; a file already gone (another process fixed it first) is
    skipped. Raises :class:`DataError` when the folder cannot be written or its
    quarantine folder is a symlink.
    """
    root = report.root
    moves: list[tuple[str, str]] = []
    with folder_lock(root), Manifest(root) as manifest:
        quarantine_folder(root)  # refused at once when it is a symlink
        for finding in report.to_quarantine:
            source = row_path(root, finding.path, what="file")
            if not source.is_file():
                continue
            relative = f"{QUARANTINE_DIR}/{finding.path}"
            target = root / relative
            serial = 1
            while target.exists() or target.is_symlink():
                relative = f"{QUARANTINE_DIR}/{finding.path}.{serial}"
                target = root / relative
                serial += 1
            target = row_path(root, relative, what="quarantine place", kind="quarantine")
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(source, target)
            except FileNotFoundError:
                continue  # removed meanwhile by something that does not take the lock
            reason = f"{finding.kind}: {finding.detail}"
            if finding.other:
                reason += f" (kept {finding.other})"
            manifest.add_quarantine(finding.path, relative, reason)
            moves.append((finding.path, relative))
    return moves


def restore(root: str | Path) -> list[str]:
    """Move every quarantined file back to where it was; return their paths.

    Every journal row is checked first: one whose path is absolute, has ``..`` or
    leads outside the folder (or its quarantine path outside the quarantine folder)
    stops the restore before any file moves, with a :class:`DataError` naming it.
    Raises :class:`DataError` naming the files that could not go back because
    something now stands in their place (the rest are restored).
    """
    folder = Path(root)
    restored: list[str] = []
    blocked: list[str] = []
    with folder_lock(folder), Manifest(folder, create=False) as manifest:
        quarantine = quarantine_folder(folder)
        entries = manifest.quarantined()
        checked = [
            (
                entry,
                row_path(folder, entry.quarantine_path, what=f"quarantine row {entry.id}'s "
                         "quarantine_path", kind="quarantine"),
                row_path(folder, entry.original_path,
                         what=f"quarantine row {entry.id}'s original_path"),
            )
            for entry in entries
        ]  # fmt: skip
        for entry, source, target in checked:
            if target.exists() or target.is_symlink():
                blocked.append(entry.original_path)
                continue
            if not source.is_file():
                blocked.append(f"{entry.original_path} (its quarantined copy is gone)")
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
            manifest.mark_restored(entry)
            restored.append(entry.original_path)
        _remove_empty_dirs(quarantine)
    if blocked:
        raise DataError(
            f"restored {len(restored)} file(s) but not: {', '.join(blocked)}; "
            f"move the file now in its place aside and run `ursa verify {folder} --restore` again"
        )
    return restored


def _remove_empty_dirs(folder: Path) -> None:
    if folder.is_symlink() or not folder.is_dir():
        return
    for dirpath, _dirnames, _filenames in sorted(os.walk(folder), key=lambda w: -len(w[0])):
        if not os.listdir(dirpath):
            os.rmdir(dirpath)


@dataclass(frozen=True)
class ForgetReport:
    """What :func:`forget` took out."""

    removed: list[str]
    """Files deleted (dataset and quarantine), relative to the dataset folder."""
    recorded: int
    """Hashes recorded so a later gather never saves the image again."""


def forget(root: str | Path, target: str, config: VerifyConfig | None = None) -> ForgetReport:
    """Take an image out for good: its file, its row and every copy, by source URL or sha256.

    The image's sha256 and perceptual hash (and the URL's hash) are recorded in
    the manifest, so ``gather`` never downloads it again, from any URL.
    """
    config = config or VerifyConfig()
    folder = Path(root)
    if not folder.is_dir():
        raise DataError(f"{root} is not a folder; give the dataset folder")
    target = target.strip()
    is_url = "://" in target
    text = target.lower()
    if not is_url and (len(text) < 12 or any(c not in "0123456789abcdef" for c in text)):
        raise DataError(
            f"{target!r} is neither a URL nor a sha256: give the image's source URL (see "
            f"`ursa sources {root}`) or its sha256 (at least the first 12 hex digits)"
        )
    with folder_lock(folder), Manifest(folder) as manifest:
        scan_folder(folder, config, manifest, reuse=True)
        records = manifest.records()
        if is_url:
            seeds = [r for r in records if r.source_url == target]
        else:
            seeds = [r for r in records if r.sha256.startswith(text)]
            if len({r.sha256 for r in seeds}) > 1:
                raise DataError(f"{target} matches more than one image; give more of the sha256")
        shas = {r.sha256 for r in seeds}
        if not is_url and not seeds and len(text) == 64:
            shas.add(text)
        phashes = [p for p in map(_phash_of, seeds) if p is not None]
        doomed = [
            r for r in records
            if r.sha256 in shas
            or (phashes and (p := _phash_of(r)) is not None and _within(p, phashes, config))
        ]  # fmt: skip
        files: list[tuple[str, Path]] = []  # every row checked before any file goes
        for record in doomed:
            files.append((record.path, row_path(folder, record.path, what="image row's path")))
            if record.quarantine_path:
                where = row_path(folder, record.quarantine_path, kind="quarantine",
                                 what=f"image row {record.path!r}'s quarantine_path")  # fmt: skip
                files.append((record.quarantine_path, where))
        removed: list[str] = []
        for relative, path in files:
            if path.is_file():
                path.unlink()
                removed.append(relative)
        manifest.remove(r.path for r in doomed)
        keys = [("sha256", s) for s in shas | {r.sha256 for r in doomed}]
        keys += [("phash", hashing.to_hex(p)) for p in phashes]
        urls = {r.source_url for r in doomed if r.source_url} | ({target} if is_url else set())
        keys += [("url", url_key(u)) for u in urls]
        manifest.forget_keys(keys)
    return ForgetReport(sorted(removed), len(keys))


def _within(value: int, hashes: list[int], config: VerifyConfig) -> bool:
    found = hashing.nearest(value, hashes)
    return found is not None and found[1] <= config.near_threshold
