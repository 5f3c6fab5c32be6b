"""``ImageData``: labelled images, split, ready to become data loaders."""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from ursa.core.errors import ConfigError, DataError, ImageError
from ursa.core.imageio import MAX_PIXELS
from ursa.core.items import (
    Item,
    class_counts,
    existing_folder,
    find_split_folders,
    fingerprint,
    items_from_class_folders,
    random_split,
    scan_images,
    split_by_folder,
)
from ursa.core.preprocess import (
    PadMode,
    PreprocessConfig,
    ResizeMethod,
    decode_size,
    resize_problems,
)
from ursa.core.safepaths import class_name_problem
from ursa.core.sources import IMAGE_INPUT, InputSource
from ursa.data.augment import AUGMENT_PRESETS
from ursa.data.labels import (
    DataSpec,
    items_from_name_regex,
    items_from_table,
    list_splitter,
    recorded_path,
    resolve_recorded,
    split_by_paths,
)

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure
    from PIL import Image
    from torch.utils.data import DataLoader

    from ursa.data.loaders import ImageDataset

log = logging.getLogger(__name__)


AugmentPipeline = Callable[[Any], Any]
"""Your own training augmentation (e.g. a torchvision.transforms.v2 pipeline): the resized
RGB PIL image in, an image of the same size out (PIL or uint8 tensor, not normalised)."""

DEFAULT_MIN_SCALE = 0.75
"""The smallest area a training crop keeps by default. fastai's bears use 0.5 and ursa
used 0.35; with the head fitted on whole images first, crops that small move the
fine-tune's inputs away from what the head learnt: on Fashion-MNIST at 100 images a
class the first unfrozen epoch's training loss was 0.77 at 0.35 and 0.46 at 0.75, and
three epochs ended at 13.2 % against 10.4 % validation error (docs/benchmarks.md)."""


@dataclass(frozen=True)
class DataConfig:
    """How a folder of images becomes training and validation batches."""

    size: int = 224
    """Side of the square model input, in pixels."""
    resize: ResizeMethod = "crop"
    """crop, pad or squish (see :class:`~ursa.core.preprocess.PreprocessConfig`)."""
    pad_mode: PadMode = "zeros"
    """How resize="pad" fills the margin: zeros, border or reflection."""
    valid_pct: float = 0.2
    """Fraction held out for validation when the data has no split of its own."""
    seed: int = 42
    """Seed for the split and the shuffling."""
    stratify: bool = True
    """Hold out the same fraction of every class."""
    batch_size: int | None = None
    """Images per batch; None: chosen from the number of training images
    (:func:`auto_batch_size`: at least 16 steps an epoch, at most 64 images a batch)."""
    augment: str | AugmentPipeline = "default"
    """Training augmentation: default, no_flip, none, or your own transforms.v2 pipeline
    (run after the resize, before normalisation; recorded in a bundle as "custom")."""
    batch_augment: bool | None = None
    """Apply the preset's flip / rotate / zoom / warp / lighting to whole batches in the
    training loop (on the GPU) instead of per image in the loader; None: when on CUDA."""
    min_scale: float = DEFAULT_MIN_SCALE
    """Smallest fraction of the image area a training random crop keeps (resize="crop")."""
    num_workers: int | None = None
    """Loader processes; None picks one per spare core (at most 4)."""
    max_pixels: int = MAX_PIXELS
    """Images with more pixels than this are refused (decompression bombs)."""
    input: InputSource = field(default=IMAGE_INPUT)
    """What the files are and how one becomes a picture (images, audio, bytes)."""
    cache: bool = True
    """Decode and resize every file once, into an on-disk cache the loaders read from
    (:mod:`ursa.data.cache`); False decodes every file every epoch."""

    def __post_init__(self) -> None:
        problems = resize_problems(self.size, self.resize, self.pad_mode)
        if not 0.0 <= self.valid_pct < 1.0:
            problems.append(
                f"valid_pct={self.valid_pct}: use a fraction from 0 up to 1 (exclusive)"
            )
        if self.batch_size is not None and self.batch_size < 1:
            problems.append(f"batch_size={self.batch_size}: use 1 or more")
        if isinstance(self.augment, str) and self.augment not in AUGMENT_PRESETS:
            problems.append(
                f"augment={self.augment!r}: use one of {', '.join(AUGMENT_PRESETS)} "
                f"or a transforms.v2 pipeline"
            )
        elif not isinstance(self.augment, str) and not callable(self.augment):
            problems.append(f"augment={self.augment!r}: use a preset name or a callable pipeline")
        if not 0.0 < self.min_scale <= 1.0:
            problems.append(f"min_scale={self.min_scale}: use a fraction above 0, at most 1")
        if self.num_workers is not None and self.num_workers < 0:
            problems.append(f"num_workers={self.num_workers}: use 0 or more, or None for automatic")
        if not isinstance(self.cache, bool):
            problems.append(f"cache={self.cache!r}: use True or False")
        if problems:
            raise ConfigError("invalid data settings:\n  " + "\n  ".join(problems))

    @property
    def augment_name(self) -> str:
        """The augmentation as recorded in bundles and reports: the preset, or "custom"."""
        return self.augment if isinstance(self.augment, str) else "custom"


class DataSettings(TypedDict, total=False):
    """Keyword settings every ``ImageData.from_*`` constructor takes (see :class:`DataConfig`)."""

    size: int
    resize: ResizeMethod
    pad_mode: PadMode
    valid_pct: float
    seed: int
    stratify: bool
    batch_size: int | None
    augment: str | AugmentPipeline
    batch_augment: bool | None
    min_scale: float
    num_workers: int | None
    max_pixels: int
    input: InputSource
    cache: bool


def with_source(
    source: InputSource, settings: DataSettings, method: str | None = None
) -> DataSettings:
    """``settings`` reading files through ``source``, with the source's
    :attr:`~ursa.core.sources.InputSource.data_defaults` where ``settings`` are silent.
    ``method``: the constructor that makes ``source`` itself, so ``input`` may not be given."""
    if method is not None and "input" in settings:
        raise ConfigError(f"{method} makes the input from its own settings: drop input")
    return {**source.data_defaults, **settings, "input": source}  # type: ignore[typeddict-item]


MAX_AUTO_BATCH = 64
MIN_STEPS = 16


def _check_class_names(root: Path, items: Sequence[Item]) -> None:
    """Refuse labels that cannot be class names, before any file is decoded.

    A class name becomes a folder name (the cleaner moves images into it) and is
    written into the bundle, whose loader refuses the same names.
    """
    bad = {}
    for label in sorted({item.label for item in items}):
        problem = class_name_problem(label)
        if problem is not None:
            bad[label] = problem
    if bad:
        listed = "; ".join(f"{label!r} {problem}" for label, problem in list(bad.items())[:5])
        raise DataError(
            f"{root}: {len(bad)} label(s) cannot be class names ({listed}); a class name "
            f"becomes a folder name: rename those folders or fix those labels"
        )


def auto_batch_size(train_images: int) -> int:
    """The batch size for ``train_images``: small enough that an epoch has at least
    :data:`MIN_STEPS` optimizer steps (a few hundred images at 64 a batch give only a
    handful), at least 2 (batch norm needs two), at most :data:`MAX_AUTO_BATCH`."""
    return max(2, min(MAX_AUTO_BATCH, train_images // MIN_STEPS))


Splitter = Callable[[list[Item]], tuple[list[Item], list[Item]]]
"""Divides labelled items into (train, valid)."""

REPR_CLASSES = 12
"""Classes the repr of an :class:`ImageData` lists one by one (the rest are counted)."""
REPR_ITEMS = 3
"""Files the repr of an :class:`ImageData` names, of each split."""


def text_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Rows as aligned plain text (first column left, the others right), for reprs."""
    cells = [[str(v) for v in header], *([str(v) for v in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            value.ljust(width) if i == 0 else value.rjust(width)
            for i, (value, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in cells
    )


def html_table(
    header: Sequence[str] | None, rows: Sequence[Sequence[object]], *, row_headers: bool = False
) -> str:
    """Rows as an HTML table for a notebook's ``_repr_html_``; every cell is escaped (class
    names and paths come from files). ``row_headers``: the first cell of a row is a ``th``."""

    def row_html(values: Sequence[object], tag: str) -> str:
        first = "th" if row_headers else tag
        return "<tr>" + "".join(
            f"<{first if i == 0 else tag}>{html.escape(str(v))}</{first if i == 0 else tag}>"
            for i, v in enumerate(values)
        ) + "</tr>"  # fmt: skip

    head = "" if header is None else f"<thead>{row_html(header, 'th')}</thead>"
    body = "".join(row_html(row, "td") for row in rows)
    return f"<table>{head}<tbody>{body}</tbody></table>"


@dataclass(repr=False)  # the repr is written out below: short, never every path
class ImageData:
    """Images with labels, split into training and validation sets.

    Build it with :meth:`from_folder` (or another ``from_*``); a
    :class:`~ursa.train.Learner` turns it into data loaders with the backbone's
    normalisation.
    """

    root: Path
    class_names: list[str]
    train_items: list[Item]
    valid_items: list[Item]
    config: DataConfig
    skipped: list[ImageError] = field(default_factory=list)
    fingerprint: str = ""
    spec: DataSpec = field(default_factory=DataSpec)
    """How the labels and the split were made (recorded in bundles; see :meth:`from_spec`)."""

    @classmethod
    def from_folder(
        cls,
        path: str | Path,
        *,
        valid_list: str | Path | Sequence[str] | None = None,
        **settings: Unpack[DataSettings],
    ) -> ImageData:
        """Labels from folder names: ``path/<class>/*.jpg``, or ``path/train/<class>/`` and
        ``path/valid/<class>/`` for a split made beforehand (then ``valid_pct`` is unused).
        ``valid_list`` (a text file of names, or a list of them) picks the validation files.

        Every file is decoded once here; files that are not readable are skipped
        and listed in :attr:`skipped` (and logged), never fatal.
        """
        config = DataConfig(**settings)
        root = existing_folder(path)
        split = find_split_folders(root)
        if split is None:
            items = items_from_class_folders(root, config.input, follow_links=True)
            if valid_list is not None:
                spec = DataSpec()
                return cls._split_items(root, items, config, spec, valid_list=valid_list)
            return cls.from_items(root, items, config)
        if valid_list is not None:
            raise ConfigError(
                f"{root} has train/ and valid/ folders, which are its split: drop the validation "
                f"list (valid_list=, --valid-list) or merge the folders"
            )
        train_dir, valid_dir = split
        # Reading follows links (verify and the cleaner, which move and serve, do not).
        items = items_from_class_folders(
            train_dir, config.input, follow_links=True
        ) + items_from_class_folders(valid_dir, config.input, follow_links=True)
        return cls.from_items(
            root, items, config, splitter=split_by_folder(valid_dir), spec=DataSpec(split="folder")
        )

    @classmethod
    def from_audio_folder(
        cls,
        path: str | Path,
        *,
        sample_rate: int = 16_000,
        duration: float = 1.0,
        n_mels: int = 64,
        n_fft: int = 512,
        hop_length: int = 160,
        f_min: float = 0.0,
        f_max: float | None = None,
        top_db: float = 80.0,
        max_seconds: float = 600.0,
        **settings: Unpack[DataSettings],
    ) -> ImageData:
        """Sound clips as pictures: ``path/<class>/*.wav`` (FLAC, OGG, AIFF too), or
        ``train/`` and ``valid/`` folders, each clip drawn as a log-mel spectrogram
        (:class:`~ursa.core.audio.AudioInput` documents the audio settings).

        Two defaults differ from :meth:`from_folder`: ``resize="squish"`` (rows are
        frequencies and columns time: a crop would drop some of both) and
        ``augment="none"`` (a flip plays the clip backwards, a rotation mixes time with
        frequency). Needs ``soundfile`` (``pip install "ursa[audio]"``).
        """
        from ursa.core.audio import AudioInput

        source = AudioInput(
            sample_rate=sample_rate, duration=duration, n_mels=n_mels, n_fft=n_fft,
            hop_length=hop_length, f_min=f_min, f_max=f_max, top_db=top_db, max_seconds=max_seconds,
        )  # fmt: skip
        return cls.from_folder(path, **with_source(source, settings, "from_audio_folder"))

    @classmethod
    def from_bytes_folder(
        cls,
        path: str | Path,
        *,
        width: int = 256,
        max_bytes: int = 8 * 1024 * 1024,
        suffixes: Sequence[str] | None = None,
        **settings: Unpack[DataSettings],
    ) -> ImageData:
        """Any files as pictures: each file under ``path/<class>/`` (or ``train/`` and
        ``valid/`` folders) drawn byte by byte, ``width`` bytes a row
        (:class:`~ursa.core.bytesimage.BytesInput`). ``suffixes`` (``[".exe"]``) limits
        the files taken; None takes every file that is not hidden.

        Defaults differ from :meth:`from_folder`: ``resize="squish"`` (the picture's
        height follows the file's size; the whole file is stretched to the square
        input) and ``augment="none"`` (flips and rotations move bytes to meaningless
        places).
        """
        from ursa.core.bytesimage import BytesInput

        source = BytesInput(
            width=width,
            max_bytes=max_bytes,
            suffixes=None if suffixes is None else frozenset(s.lower() for s in suffixes),
        )
        return cls.from_folder(path, **with_source(source, settings, "from_bytes_folder"))

    @classmethod
    def from_name_regex(
        cls,
        path: str | Path,
        pattern: str = r"^(.+)_\d+\.\w+$",
        *,
        valid_list: str | Path | Sequence[str] | None = None,
        **settings: Unpack[DataSettings],
    ) -> ImageData:
        """Labels from a regex on each file name (Oxford-IIIT Pets style: the default
        ``^(.+)_\\d+\\.\\w+$`` labels ``great_pyrenees_12.jpg`` as ``great_pyrenees``).

        The label is group 1, or the group named ``label``. Every file under ``path``
        (recursively) must match; the error names those that do not, with a count.
        Split: ``valid_list`` (a text file of names, or a list of them), else
        ``train/`` and ``valid/`` folders when present, else random.
        """
        config = DataConfig(**settings)
        root = existing_folder(path)
        items = items_from_name_regex(root, pattern, config.input)
        spec = DataSpec(labels="regex", pattern=pattern)
        return cls._split_items(root, items, config, spec, valid_list=valid_list)

    @classmethod
    def from_csv(
        cls,
        csv: str | Path,
        image_dir: str | Path | None = None,
        *,
        label_col: str = "label",
        path_col: str | None = None,
        split_col: str | None = None,
        delimiter: str | None = None,
        valid_list: str | Path | Sequence[str] | None = None,
        **settings: Unpack[DataSettings],
    ) -> ImageData:
        """Labels from a CSV or TSV: one row per file, columns chosen by name.

        ``path_col`` holds file paths relative to ``image_dir`` (default: the
        table's folder); None picks the first column that is neither the label nor
        the split column. ``delimiter`` defaults to tab for ``.tsv``, else it is
        sniffed. Split: ``split_col`` (true/false, 1/0, yes/no, train/valid), or
        ``valid_list``, else random. Missing files, missing columns and bad split
        values are errors that list them.
        """
        if split_col is not None and valid_list is not None:
            raise ConfigError("give split_col or valid_list, not both: they are two splits")
        config = DataConfig(**settings)
        table = Path(csv).expanduser().resolve()
        root = existing_folder(table.parent if image_dir is None else image_dir)
        found = items_from_table(
            table, root, label_col=label_col, path_col=path_col, split_col=split_col,
            delimiter=delimiter,
        )  # fmt: skip
        spec = DataSpec(
            labels="csv", csv=recorded_path(table, root), label_col=label_col, path_col=path_col,
            split_col=split_col, delimiter=delimiter,
        )  # fmt: skip
        if found.valid_paths is not None:
            spec = replace(spec, split="column")
            splitter = split_by_paths(found.valid_paths)
            return cls.from_items(root, found.items, config, splitter=splitter, spec=spec)
        return cls._split_items(
            root, found.items, config, spec, valid_list=valid_list, folders=False
        )

    @classmethod
    def from_spec(
        cls,
        spec: DataSpec | Mapping[str, Any] | None,
        path: str | Path,
        **settings: Unpack[DataSettings],
    ) -> ImageData:
        """Rebuild labels and split as ``spec`` records them (``ImageData.spec``, or a
        bundle's ``training["data"]``; None: folder labels) from the data in ``path``.

        ``path`` is the folder ``from_folder``/``from_name_regex`` took, or the image
        folder of ``from_csv``; recorded relative paths (the table, a validation list)
        are relative to it.
        """
        if not isinstance(spec, DataSpec):
            spec = DataSpec.from_dict(spec)
        root = existing_folder(path)
        recorded = spec.valid_list
        valid_list = resolve_recorded(recorded, root) if isinstance(recorded, str) else recorded
        if spec.labels == "regex":
            assert spec.pattern is not None  # DataSpec checks it
            return cls.from_name_regex(root, spec.pattern, valid_list=valid_list, **settings)
        if spec.labels == "csv":
            assert spec.csv is not None  # DataSpec checks it
            return cls.from_csv(
                resolve_recorded(spec.csv, root), root, label_col=spec.label_col,
                path_col=spec.path_col, split_col=spec.split_col, delimiter=spec.delimiter,
                valid_list=valid_list, **settings,
            )  # fmt: skip
        return cls.from_folder(root, valid_list=valid_list, **settings)

    @classmethod
    def _split_items(
        cls,
        root: Path,
        items: list[Item],
        config: DataConfig,
        spec: DataSpec,
        *,
        valid_list: str | Path | Sequence[str] | None,
        folders: bool = True,
    ) -> ImageData:
        """``from_items`` with the split a labeller asked for: ``valid_list``, else
        ``train/``+``valid/`` folders (when ``folders``), else random."""
        if valid_list is not None:
            splitter, recorded = list_splitter(valid_list, items, root)
            spec = replace(spec, split="list", valid_list=recorded)
            return cls.from_items(root, items, config, splitter=splitter, spec=spec)
        split = find_split_folders(root) if folders else None
        if split is not None:
            spec, splitter = replace(spec, split="folder"), split_by_folder(split[1])
            return cls.from_items(root, items, config, splitter=splitter, spec=spec)
        return cls.from_items(root, items, config, spec=replace(spec, split="random"))

    @classmethod
    def from_items(
        cls,
        root: Path,
        items: Sequence[Item],
        config: DataConfig,
        *,
        splitter: Splitter | None = None,
        spec: DataSpec | None = None,
    ) -> ImageData:
        """Check labelled ``items`` (decoding each once), split them and build the data.

        ``splitter`` divides the readable items into (train, valid); the default
        is the seeded random split of ``config``. ``spec`` records how the labels and
        split were made (default: folder labels, random split). Every ``from_*`` ends here.
        """
        _check_class_names(root, items)
        scan = scan_images(items, max_pixels=config.max_pixels, source=config.input)
        if splitter is None:
            train, valid = random_split(
                scan.items, config.valid_pct, config.seed, stratify=config.stratify
            )
        else:
            train, valid = splitter(scan.items)
        class_names = sorted({item.label for item in train})
        if len(class_names) < 2:
            raise DataError(
                f"{root} has {len(class_names)} class with usable training files "
                f"({', '.join(class_names) or 'none'}); a classifier needs at least 2 classes"
            )
        unknown = sorted({i.label for i in valid} - set(class_names))
        if unknown:
            raise DataError(
                f"the validation set has classes the training set lacks: {', '.join(unknown)}; "
                f"every validation class needs training files"
            )
        counts = class_counts(train + valid)
        small = [name for name, n in counts.items() if n < 2]
        if small:
            log.warning("classes with fewer than 2 images: %s", ", ".join(small))
        if not valid:
            log.warning("no validation images: metrics will not be computed")
        return cls(
            root=root,
            class_names=class_names,
            train_items=train,
            valid_items=valid,
            config=config,
            skipped=scan.skipped,
            fingerprint=fingerprint(train + valid, scan.sha256, root),
            spec=spec or DataSpec(),
        )

    @property
    def batch_size(self) -> int:
        """Images per training batch: ``config.batch_size``, or when None the automatic
        choice for this many training images (:func:`auto_batch_size`)."""
        if self.config.batch_size is not None:
            return self.config.batch_size
        return auto_batch_size(len(self.train_items))

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per class in each split: ``{"train": {...}, "valid": {...}}``."""
        return {"train": class_counts(self.train_items), "valid": class_counts(self.valid_items)}

    def small_classes(self) -> dict[str, int]:
        """Classes with fewer than 2 images (train and valid together), with their count."""
        counts = class_counts(self.train_items + self.valid_items)
        return {name: n for name, n in counts.items() if n < 2}

    def summary(self) -> str:
        """One line: classes and images per split (plus skipped files and classes with
        fewer than 2 images)."""
        text = (
            f"{len(self.class_names)} classes, {len(self.train_items)} training and "
            f"{len(self.valid_items)} validation images"
        )
        if self.skipped:
            text += f", {len(self.skipped)} unreadable files skipped"
        small = self.small_classes()
        if small:
            listed = ", ".join(f"{name} ({n})" for name, n in small.items())
            text += f"; classes with fewer than 2 images: {listed}"
        return text

    # -- what a notebook shows ------------------------------------------------------------

    def _facts(self) -> list[tuple[str, str]]:
        """(name, value) lines of the repr: folder, labels, split, input and the first files."""
        config, spec = self.config, self.spec
        labels = {
            "folder": "folder names",
            "regex": f"file names matching {spec.pattern!r}",
            "csv": f"the table {spec.csv} (column {spec.label_col!r})",
        }.get(spec.labels, spec.labels)
        split = {
            "random": f"random, valid_pct={config.valid_pct:g}, seed={config.seed}",
            "folder": "the train/ and valid/ folders",
            "column": f"the table's column {spec.split_col!r}",
            "list": "a list of validation files",
        }.get(spec.split, spec.split)
        batch = f"{self.batch_size}" + (" (automatic)" if config.batch_size is None else "")
        source = f"{config.input.kind} files, " if config.input.kind != "image" else ""
        facts = [
            ("folder", str(self.root)),
            ("labels", labels),
            ("split", split),
            ("input", f"{source}{config.size} px, resize={config.resize}, "
                      f"augment={config.augment_name}, batch {batch}"),
        ]  # fmt: skip
        for name, items in (("train", self.train_items), ("valid", self.valid_items)):
            if items:
                shown = ", ".join(self._item_name(i) for i in items[:REPR_ITEMS])
                more = f", … {len(items) - REPR_ITEMS} more" if len(items) > REPR_ITEMS else ""
                facts.append((f"{name} files", shown + more))
        return facts

    def _item_name(self, item: Item) -> str:
        try:
            name = item.path.relative_to(self.root).as_posix()
        except ValueError:  # a table may name files beside the folder
            name = item.path.name
        return name if name.startswith(f"{item.label}/") else f"{name} ({item.label})"

    def _class_rows(self) -> list[tuple[str, object, object]]:
        """(class, training images, validation images) of the first :data:`REPR_CLASSES`
        classes, then one row counting the rest."""
        counts = self.counts()
        rows: list[tuple[str, object, object]] = [
            (name, counts["train"].get(name, 0), counts["valid"].get(name, 0))
            for name in self.class_names[:REPR_CLASSES]
        ]
        hidden = self.class_names[REPR_CLASSES:]
        if hidden:
            train = sum(counts["train"].get(name, 0) for name in hidden)
            valid = sum(counts["valid"].get(name, 0) for name in hidden)
            rows.append((f"… {len(hidden)} more classes", train, valid))
        return rows

    def __repr__(self) -> str:
        """A few lines: classes, images per class and split, the settings, the first files
        (never every path: a dataset holds thousands)."""
        width = max(len(name) for name, _ in self._facts())
        lines = [f"ImageData: {self.summary()}"]
        lines += [f"  {name.ljust(width)}  {value}" for name, value in self._facts()]
        table = text_table(("class", "train", "valid"), self._class_rows())
        lines += [""] + ["  " + line for line in table.splitlines()]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        """The repr as HTML for a notebook: the summary, the settings, a table of classes."""
        return (
            f"<div><strong>ImageData</strong>: {html.escape(self.summary())}"
            + html_table(None, self._facts(), row_headers=True)
            + html_table(("class", "train", "valid"), self._class_rows())
            + "</div>"
        )

    def dataloaders(
        self, preprocess: PreprocessConfig, *, batch_augment: bool = False
    ) -> tuple[DataLoader[tuple[torch.Tensor, int]], DataLoader[tuple[torch.Tensor, int]]]:
        """(train, valid) loaders: training augmented and shuffled, validation neither.

        ``batch_augment``: the training loader only crops (or resizes); the rest of the
        preset's augmentation is left to :meth:`batch_augmenter` in the training loop.

        With ``config.cache`` every file is decoded and resized here, once (or found
        in the decode cache, :mod:`ursa.data.cache`); the loaders then read pixels only.
        """
        from ursa.data.cache import cache_dataset
        from ursa.data.loaders import default_num_workers, make_loader

        workers = self.config.num_workers
        if workers is None:
            workers = default_num_workers()
        train_set = self.dataset(
            self.train_items, preprocess, training=True, batch_augment=batch_augment
        )
        valid_set = self.dataset(self.valid_items, preprocess, training=False)
        if self.config.cache:
            train_set.cache = cache_dataset(train_set, name=f"{self.root} train")
            valid_set.cache = cache_dataset(valid_set, name=f"{self.root} valid")
        batch = self.batch_size
        # Validation has no batch norm to feed: an automatic training batch of a few images
        # would only make it slow, so it runs MAX_AUTO_BATCH at a time.
        valid_batch = max(batch, MAX_AUTO_BATCH) if self.config.batch_size is None else batch
        seed = self.config.seed
        return (
            make_loader(train_set, batch_size=batch, shuffle=True, seed=seed, num_workers=workers),
            make_loader(
                valid_set, batch_size=valid_batch, shuffle=False, seed=seed, num_workers=workers
            ),
        )

    def dataset(
        self,
        items: Sequence[Item],
        preprocess: PreprocessConfig,
        *,
        training: bool,
        batch_augment: bool = False,
        class_names: Sequence[str] | None = None,
    ) -> ImageDataset:
        """``items`` as the training (augmented) or validation loader reads them: opened
        at the size they need, prepared as the decode cache stores them, transformed.
        No cache is attached; :meth:`dataloaders` attaches one. ``class_names`` numbers
        the labels (default: this data's classes; a model's own, to evaluate it)."""
        from ursa.data.cache import stored_form
        from ursa.data.loaders import ImageDataset
        from ursa.data.transforms import ValidationTransform, train_decode_size, train_transform

        config = self.config
        names = self.class_names if class_names is None else class_names
        if not training:
            return ImageDataset(
                items, names, ValidationTransform(preprocess),
                source=preprocess.input, max_pixels=config.max_pixels,
                min_size=decode_size(preprocess), prepare=stored_form(preprocess, training=False),
            )  # fmt: skip
        transform = train_transform(
            preprocess, config.augment, min_scale=config.min_scale, batch_augment=batch_augment
        )
        return ImageDataset(
            items, names, transform,
            source=preprocess.input, max_pixels=config.max_pixels,
            min_size=train_decode_size(preprocess, config.min_scale, augment=config.augment),
            prepare=stored_form(
                preprocess, training=True, augment=config.augment, min_scale=config.min_scale
            ),
        )  # fmt: skip

    def batch_augmenter(
        self, preprocess: PreprocessConfig, device: torch.device
    ) -> torch.nn.Module | None:
        """The preset's augmentation as a batch module for the training loop on ``device``,
        or None where the loader augments each image (``batch_augment`` False, or None and
        not CUDA; ``augment`` none or your own pipeline). Pass ``batch_augment=True`` to
        :meth:`dataloaders` exactly when this is not None."""
        from ursa.data.batch_augment import BatchAugment, batch_settings

        settings = batch_settings(self.config.augment, self.config.batch_augment, device.type)
        if settings is None:
            return None
        return BatchAugment(settings, preprocess.mean, preprocess.std).to(device)

    def show_batch(
        self,
        n: int = 16,
        split: str = "train",
        path: str | Path | None = None,
        *,
        seed: int | None = None,
    ) -> Figure:
        """A labelled grid of ``n`` images as the model sees them (training images augmented,
        validation images through the validation transform), shown un-normalised.

        Training images are a new random draw on every call; ``seed`` repeats one (its
        title says its seed). Returns a matplotlib Figure, which a notebook shows as an
        image; ``path``: also write it as PNG.
        """
        from ursa.data.show import show_batch

        return show_batch(self, n=n, split=split, path=path, seed=seed)

    def show_augmentations(
        self,
        image: str | Path | Image.Image | None = None,
        n: int = 8,
        path: str | Path | None = None,
    ) -> Figure:
        """One image (a file, a PIL image, or the first training image when None) under
        ``n`` draws of the training augmentation. ``path``: also write it as PNG."""
        from ursa.data.show import show_augmentations

        return show_augmentations(self, image=image, n=n, path=path)
