"""Labels from file names and tables, splits by column and by list, and the record of both.

A labeller turns a folder (or a CSV and a folder) into :class:`~ursa.core.items.Item`
objects; a splitter divides items into (train, valid). :class:`DataSpec` records
which of each was used, so a bundle can rebuild the same labels and split later
(``ImageData.from_spec``). Torch-free.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from ursa.core.errors import ConfigError, DataError
from ursa.core.items import Item, files_in
from ursa.core.safepaths import relative_problem
from ursa.core.sources import IMAGE_INPUT, InputSource

log = logging.getLogger(__name__)

LabelMethod = Literal["folder", "regex", "csv"]
SplitMethod = Literal["random", "folder", "column", "list"]
LABEL_METHODS: tuple[str, ...] = get_args(LabelMethod)
SPLIT_METHODS: tuple[str, ...] = get_args(SplitMethod)

#: Values a split column may hold, lower-cased: True means validation.
SPLIT_VALUES = {
    "true": True, "1": True, "yes": True, "valid": True, "validation": True, "val": True,
    "false": False, "0": False, "no": False, "train": False, "training": False,
}  # fmt: skip

#: How many names an error message lists before "and N more".
_SHOWN = 5

Splitter = Callable[[list[Item]], tuple[list[Item], list[Item]]]


def _some(names: Sequence[str]) -> str:
    """The first few of ``names``, then how many more."""
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


@dataclass(frozen=True)
class DataSpec:
    """How a dataset was labelled and split: enough to rebuild both from the same files."""

    labels: LabelMethod = "folder"
    """folder (parent folder name), regex (on the file name) or csv (a table)."""
    split: SplitMethod = "random"
    """random (seeded), folder (train/ and valid/), column (a CSV column) or list."""
    pattern: str | None = None
    """The file-name regex (labels="regex")."""
    csv: str | None = None
    """The table (labels="csv"): relative to the image folder when inside it."""
    label_col: str = "label"
    """The table's label column."""
    path_col: str | None = None
    """The table's file column; None: the first column that is neither label nor split."""
    split_col: str | None = None
    """The table's split column (split="column")."""
    delimiter: str | None = None
    """The table's delimiter; None: tab for .tsv, else sniffed."""
    valid_list: str | list[str] | None = None
    """Validation files (split="list"): a text file (relative to the image folder when
    inside it) or the names themselves."""

    def __post_init__(self) -> None:
        problems = []
        if self.labels not in LABEL_METHODS:
            problems.append(f"labels={self.labels!r}: use one of {', '.join(LABEL_METHODS)}")
        if self.split not in SPLIT_METHODS:
            problems.append(f"split={self.split!r}: use one of {', '.join(SPLIT_METHODS)}")
        if self.labels == "regex" and not self.pattern:
            problems.append("labels='regex' needs a pattern, e.g. r'^(.+)_\\d+\\.jpg$'")
        if self.labels == "csv" and not self.csv:
            problems.append("labels='csv' needs the table's path (csv=)")
        if self.split == "column" and not self.split_col:
            problems.append("split='column' needs split_col=")
        if self.split == "list" and self.valid_list is None:
            problems.append("split='list' needs valid_list=")
        if problems:
            raise ConfigError("invalid labelling settings:\n  " + "\n  ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, unset fields left out; :meth:`from_dict` reverses it."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> DataSpec:
        """A spec from :meth:`to_dict`'s output; None or {} (older bundles) is folder labels."""
        if not values:
            return cls()
        if not isinstance(values, Mapping):
            raise ConfigError(f"labelling settings must be a mapping, not {values!r}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown labelling settings: {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        return cls(**dict(values))


def recorded_path(path: Path, root: Path) -> str:
    """``path`` as a spec records it: relative to ``root`` when inside it, else absolute."""
    resolved = path.expanduser().resolve()
    try:
        return resolved.relative_to(root).as_posix()
    except ValueError:
        return str(resolved)


# --- labellers -------------------------------------------------------------------------


def compile_label_pattern(pattern: str) -> re.Pattern[str]:
    """``pattern`` compiled; it must capture the label as group 1 or a group named ``label``."""
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise ConfigError(
            f"pattern {pattern!r} is not a valid regular expression: {error}"
        ) from None
    if regex.groups == 0:
        raise ConfigError(
            f"pattern {pattern!r} captures nothing: put the label in parentheses, "
            f"e.g. r'^(.+)_\\d+\\.jpg$', or name it (?P<label>...)"
        )
    return regex


def label_from_name(regex: re.Pattern[str], name: str) -> str | None:
    """The label ``regex`` finds in the file name ``name`` (named group ``label``, else
    group 1), or None when it does not match or captures nothing."""
    match = regex.search(name)
    if match is None:
        return None
    group = "label" if "label" in regex.groupindex else 1
    label = match.group(group)
    return label or None


def items_from_name_regex(
    folder: Path, pattern: str, source: InputSource = IMAGE_INPUT
) -> list[Item]:
    """One item per file under ``folder`` (recursively), labelled by ``pattern`` on its name.

    Every file must match: the error names the first few that do not, with the count.
    """
    regex = compile_label_pattern(pattern)
    items: list[Item] = []
    unmatched: list[str] = []
    for path in files_in(folder, source):
        label = label_from_name(regex, path.name)
        if label is None:
            unmatched.append(path.relative_to(folder).as_posix())
        else:
            items.append(Item(path, label))
    if unmatched:
        raise DataError(
            f"{len(unmatched)} of {len(unmatched) + len(items)} {source.kind} files under "
            f"{folder} do not match the pattern {pattern!r}: {_some(unmatched)}. Fix the pattern "
            f"(the label is group 1 or a group named 'label') or move those files out"
        )
    if not items:
        raise DataError(
            f"no {source.kind} files found under {folder} "
            f"(looked for {', '.join(sorted(source.extensions))})"
        )
    return items


@dataclass(frozen=True)
class Table:
    """What a label table gives: labelled items, and the validation files when it has a
    split column."""

    items: list[Item]
    valid_paths: frozenset[Path] | None = None
    duplicates: list[str] = field(default_factory=list)
    """Files listed more than once with the same label (each kept once)."""


def _delimiter(path: Path, sample: str, delimiter: str | None) -> str:
    if delimiter is not None:
        if len(delimiter) != 1:
            raise ConfigError(f"delimiter={delimiter!r}: use one character, e.g. ',' or '\\t'")
        return delimiter
    if path.suffix.lower() == ".tsv":
        return "\t"
    try:
        return csv.Sniffer().sniff(sample, delimiters=",\t;|").delimiter
    except csv.Error:
        return ","


def _column(header: list[str], name: str, option: str, table: Path) -> int:
    if name not in header:
        raise DataError(
            f"{table} has no column {name!r}; its columns are: {', '.join(header)}. "
            f"Choose one with {option}="
        )
    return header.index(name)


def parse_split_value(value: str) -> bool | None:
    """True for validation, False for training, None when ``value`` is neither."""
    return SPLIT_VALUES.get(value.strip().lower())


def items_from_table(
    table: Path,
    image_dir: Path,
    *,
    label_col: str = "label",
    path_col: str | None = None,
    split_col: str | None = None,
    delimiter: str | None = None,
) -> Table:
    """Labelled items from a CSV/TSV: a file column (relative to ``image_dir``), a label
    column and optionally a split column, chosen by name.

    Labels are kept as written (strings, stripped). Every listed file must exist;
    the error lists the missing ones with a count.
    """
    if not table.is_file():
        raise DataError(f"{table} does not exist; give the CSV or TSV file that lists the images")
    try:
        text = table.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read {table} as UTF-8 text ({error})") from None
    rows = list(csv.reader(text.splitlines(), delimiter=_delimiter(table, text[:65536], delimiter)))
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if len(rows) < 2:
        raise DataError(f"{table} has no rows under its header; it should list one image a row")
    header = [cell.strip() for cell in rows[0]]
    label_at = _column(header, label_col, "label_col", table)
    split_at = None if split_col is None else _column(header, split_col, "split_col", table)
    if path_col is None:
        others = [i for i in range(len(header)) if i not in (label_at, split_at)]
        if not others:
            raise DataError(f"{table} has no column left for the file names; add one")
        path_at = others[0]
    else:
        path_at = _column(header, path_col, "path_col", table)

    labels: dict[Path, str] = {}
    valid: set[Path] = set()
    missing: list[str] = []
    empty: list[int] = []
    bad_split: dict[str, int] = {}
    conflicts: list[str] = []
    duplicates: list[str] = []
    outside: list[str] = []
    for line, row in enumerate(rows[1:], start=2):
        cells = [cell.strip() for cell in row] + [""] * (len(header) - len(row))
        name, label = cells[path_at], cells[label_at]
        if not name or not label:
            empty.append(line)
            continue
        if relative_problem(name) is not None:  # a table is data: ../ or /etc/... is refused
            outside.append(name)
            continue
        path = (image_dir / name).resolve()  # a link inside the folder is followed, as in folders
        if split_at is not None:
            is_valid = parse_split_value(cells[split_at])
            if is_valid is None:
                bad_split[cells[split_at]] = bad_split.get(cells[split_at], 0) + 1
            elif is_valid:
                valid.add(path)
        if path in labels:
            (duplicates if labels[path] == label else conflicts).append(name)
            continue
        labels[path] = label
        if not path.is_file():
            missing.append(name)
    if outside:
        raise DataError(
            f"{table}: {len(outside)} row(s) name files outside the image folder {image_dir} "
            f"(absolute, or with '..': {_some([repr(n) for n in outside])}); file names are "
            f"relative to that folder "
            f"(the data folder, or image_dir=): give the folder that holds them or fix the rows"
        )
    if empty:
        raise DataError(
            f"{table}: {len(empty)} row(s) lack a file name or a label (lines "
            f"{_some([str(n) for n in empty])}); fill them in or delete them"
        )
    if bad_split:
        values = [f"{v!r} ({n} rows)" for v, n in bad_split.items()]
        raise DataError(
            f"{table}: column {split_col!r} has values that are not a split: {_some(values)}; "
            f"use true/false, 1/0, yes/no or train/valid"
        )
    if conflicts:
        raise DataError(
            f"{table} gives {len(conflicts)} file(s) two different labels: {_some(conflicts)}; "
            f"keep one row per file"
        )
    if missing:
        raise DataError(
            f"{len(missing)} of {len(labels)} files listed in {table} are missing under "
            f"{image_dir}: {_some(missing)}. Check the image folder (paths in the table are "
            f"relative to it) or remove those rows"
        )
    if duplicates:
        log.warning("%s lists %d file(s) twice: %s", table, len(duplicates), _some(duplicates))
    items = [Item(path, label) for path, label in labels.items()]
    return Table(items, frozenset(valid) if split_at is not None else None, duplicates)


# --- splitters -------------------------------------------------------------------------


def split_by_paths(valid_paths: Iterable[Path]) -> Splitter:
    """A splitter: items whose path is in ``valid_paths`` validate, the rest train."""
    chosen = frozenset(valid_paths)

    def split(items: list[Item]) -> tuple[list[Item], list[Item]]:
        return [i for i in items if i.path not in chosen], [i for i in items if i.path in chosen]

    return split


def read_name_list(path: Path) -> list[str]:
    """Names in a text file, one a line; blank lines and ``#`` comments ignored."""
    if not path.is_file():
        raise DataError(f"{path} does not exist; give a text file with one validation file a line")
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    return [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]


def valid_paths_from_names(names: Sequence[str], items: Sequence[Item], root: Path) -> set[Path]:
    """The paths of ``items`` that ``names`` pick: a name with a ``/`` is a path relative to
    ``root`` (or absolute), a bare name is a file name (every file of that name).

    A name that picks nothing is an error (listing them, with a count).
    """
    if not names:
        raise DataError("the validation list is empty; list at least one file, or drop it")
    by_name: dict[str, list[Path]] = {}
    by_relative: dict[str, Path] = {}
    for item in items:
        by_name.setdefault(item.path.name, []).append(item.path)
        by_relative[item.path.as_posix()] = item.path
        if item.path.is_relative_to(root):
            by_relative[item.path.relative_to(root).as_posix()] = item.path
    chosen: set[Path] = set()
    unknown: list[str] = []
    for name in names:
        key = name.replace("\\", "/")
        if "/" in key:
            found = by_relative.get(key.removeprefix("./")) or by_relative.get(
                Path(key).expanduser().resolve().as_posix()
            )
            paths = [found] if found is not None else []
        else:
            paths = by_name.get(key, [])
        if paths:
            chosen.update(paths)
        else:
            unknown.append(name)
    if unknown:
        raise DataError(
            f"{len(unknown)} of {len(names)} names in the validation list match no file under "
            f"{root}: {_some(unknown)}. Give file names or paths relative to {root}"
        )
    return chosen


def list_splitter(
    valid_list: str | Path | Sequence[str], items: Sequence[Item], root: Path
) -> tuple[Splitter, str | list[str]]:
    """A splitter validating the files ``valid_list`` names (a text file, or the names),
    checked against ``items``; and how a spec records the list."""
    if isinstance(valid_list, str | Path):
        file = Path(valid_list).expanduser()
        if not file.is_absolute() and not file.exists() and (root / file).is_file():
            file = root / file  # as recorded: relative to the data folder
        names = read_name_list(file)
        recorded: str | list[str] = recorded_path(file, root)
    else:
        names = [str(name) for name in valid_list]
        recorded = list(names)
    return split_by_paths(valid_paths_from_names(names, items, root)), recorded


def resolve_recorded(value: str, root: Path) -> Path:
    """A path a spec recorded: relative ones are relative to the data folder ``root``,
    unless they exist as given."""
    path = Path(value).expanduser()
    if path.is_absolute() or path.exists():
        return path
    return root / path
