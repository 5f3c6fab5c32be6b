"""The model card: one self-contained ``report.html``, and the files ``ursa interpret`` writes.

The page has no external resource of any kind: figures are PNG data URIs, the
style is inline, and a Content-Security-Policy forbids every other load, so it
opens the same offline, attached to an e-mail or inside a bundle
(``card.html``).
"""

from __future__ import annotations

import base64
import datetime
import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from ursa.core.atomic import atomic_write_bytes
from ursa.core.errors import ConfigError, DataError
from ursa.core.items import Item, find_split_folders
from ursa.core.manifest import MANIFEST_NAME, ImageRecord, Manifest
from ursa.core.version import __version__
from ursa.data.core import ImageData
from ursa.verify.checks import (
    COPY_KINDS,
    CROSS_CLASS_KINDS,
    FileFacts,
    Finding,
    VerifyConfig,
    find_duplicates,
    inspect_file,
)

if TYPE_CHECKING:
    from ursa.interpret.interpretation import Interpretation, TopLoss

#: A class with fewer training images than this is called out under known limits.
FEW_TRAIN_IMAGES = 30
#: A class with fewer validation images than this has a recall too noisy to trust.
FEW_VALID_IMAGES = 10
#: Rows shown in long tables before "and N more".
MAX_ROWS = 50

SECTIONS = (
    ("data", "Data"),
    ("training", "Training"),
    ("metrics", "Metrics"),
    ("confusion", "Confusion matrix"),
    ("most-confused", "Most confused"),
    ("top-losses", "Top losses"),
    ("calibration", "Calibration"),
    ("limits", "Known limits"),
)


# -- what the data folder says ---------------------------------------------------------


@dataclass(frozen=True)
class Sources:
    """Where the images came from, from the dataset manifest (``ursa.sqlite``)."""

    recorded: int
    """Images of the dataset with a manifest row."""
    unrecorded: int
    """Images of the dataset without one (added by hand)."""
    licences: list[tuple[str, int]]
    providers: list[tuple[str, int]]
    credits: list[ImageRecord] = field(default_factory=list)
    """Rows with a source or a creator, for attribution."""
    relabeled: int = 0
    """Images the manifest records as relabeled (``ursa clean``)."""
    deleted: int = 0
    """Images the manifest records as deleted (``ursa clean``'s quarantine, or by hand)."""


def relative_path(item: Item, root: Path) -> str:
    try:
        return item.path.relative_to(root).as_posix()
    except ValueError:
        return item.path.as_posix()


def _manifest_rows(data: ImageData) -> dict[str, ImageRecord] | None:
    if not (data.root / MANIFEST_NAME).is_file():
        return None
    with Manifest(data.root, read_only=True) as manifest:  # the dataset may be read-only
        return {row.path: row for row in manifest.records()}


def source_summary(data: ImageData) -> Sources | None:
    """Licences, providers and credits of the dataset's images; None without a manifest."""
    rows = _manifest_rows(data)
    if rows is None:
        return None
    paths = [relative_path(i, data.root) for i in data.train_items + data.valid_items]
    found = [rows[p] for p in paths if p in rows]
    return Sources(
        recorded=len(found),
        unrecorded=len(paths) - len(found),
        licences=Counter(r.license or "unknown" for r in found).most_common(),
        providers=Counter(r.provider or "added by hand" for r in found).most_common(),
        credits=[r for r in found if r.source_url or r.creator],
        relabeled=sum(r.status == "relabeled" for r in rows.values()),
        deleted=sum(r.status == "deleted" for r in rows.values()),
    )


def leakage_findings(data: ImageData, config: VerifyConfig | None = None) -> list[Finding]:
    """Copies across the split actually used, and the same picture in two classes.

    Uses :mod:`ursa.verify.checks`'s checks on the items as split (a random split
    is invisible to ``ursa verify``, which only sees folders); a manifest row
    whose size matches the file is trusted instead of decoding the file again.
    Nothing is written.
    """
    config = config or VerifyConfig()
    try:
        rows = _manifest_rows(data) or {}
    except DataError:
        rows = {}
    entries = [(item, "train") for item in data.train_items]
    entries += [(item, "valid") for item in data.valid_items]

    def facts(entry: tuple[Item, str]) -> FileFacts:
        item, split = entry
        relative = relative_path(item, data.root)
        row = rows.get(relative)
        if row is not None and row.phash and row.sha256 and row.size_bytes == _size(item.path):
            return FileFacts(
                relative, item.label, split, row.sha256, int(row.phash, 16), row.width,
                row.height, row.size_bytes, "",
            )  # fmt: skip
        return inspect_file(item.path, relative, item.label, split, config)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        scanned = list(pool.map(facts, entries))
    return find_duplicates(scanned, config.near_threshold)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def known_limits(
    interp: Interpretation, findings: Sequence[Finding], sources: Sources | None
) -> list[str]:
    """Plain-text warnings a reader of the card should know before trusting the numbers."""
    data = interp.data
    counts = data.counts()
    limits = []
    if interp.split == "train":
        limits.append(
            "These results are on the training images: they show what the model memorised "
            "and which labels it disagrees with, not how it does on new images."
        )
    # One line per kind of problem, naming the classes it touches (not a line per class).
    few_train = _few(interp.class_names, counts["train"], FEW_TRAIN_IMAGES)
    if few_train:
        limits.append(
            f"{_classes(few_train)} fewer than {FEW_TRAIN_IMAGES} training images "
            f"({_counts(few_train)}): the model has seen little of them; add images."
        )
    few_valid = _few(interp.class_names, counts["valid"], FEW_VALID_IMAGES)
    if interp.split != "train" and few_valid:
        limits.append(
            f"{_classes(few_valid)} fewer than {FEW_VALID_IMAGES} validation images "
            f"({_counts(few_valid)}): precision and recall measured on so few images cannot "
            f"be trusted."
        )
    trained = [counts["train"].get(n, 0) for n in interp.class_names]
    if min(trained) > 0 and max(trained) / min(trained) >= 3:
        limits.append(
            f"The classes are imbalanced ({min(trained)} to {max(trained)} training images): "
            f"the model leans towards the large classes; compare per-class recall."
        )
    count = len(interp.targets)
    accuracy = interp.accuracy
    if count and count < 100 and not math.isnan(accuracy):
        margin = 1.96 * math.sqrt(max(accuracy * (1 - accuracy), 1 / count) / count)
        limits.append(
            f"The accuracy is measured on {count} images: roughly ±{margin:.1%} (95 %) by "
            f"chance alone."
        )
    leaks = [f for f in findings if f.kind == "leak"]
    if leaks:
        limits.append(
            f"{len(leaks)} validation image(s) are copies of training images (leakage): the "
            f"validation metrics are optimistic. Remove the copies (`ursa verify DATA --fix` "
            f"quarantines duplicates) and retrain. E.g. {_pairs(leaks)}."
        )
    crossed = [f for f in findings if f.kind in CROSS_CLASS_KINDS]
    if crossed:
        limits.append(
            f"{len(crossed)} picture(s) appear in two classes: mislabeled or ambiguous, they "
            f"teach the model contradictions. E.g. {_pairs(crossed)}."
        )
    copies = [f for f in findings if f.kind in COPY_KINDS]
    if copies:
        limits.append(
            f"{len(copies)} image(s) are copies of another image in the same class and split: "
            f"they count twice in training or in the metrics."
        )
    if data.skipped:
        limits.append(f"{len(data.skipped)} unreadable file(s) were skipped.")
    fingerprint = interp.summary.dataset_fingerprint
    if fingerprint and data.fingerprint and fingerprint != data.fingerprint:
        limits.append(
            "This data differs from the data the model was trained on (the fingerprints "
            "differ): the validation split may hold images the model trained on, so the "
            "metrics may be optimistic or not comparable with training's."
        )
    ece = interp.calibration().ece
    if ece > 0.1:
        limits.append(
            f"The confidence is poorly calibrated (expected calibration error {ece:.2f}): do "
            f"not read a probability as the chance of being right."
        )
    if sources is None:
        limits.append(
            "No manifest (ursa.sqlite) in the dataset folder: where the images came from and "
            "under which licences is not recorded."
        )
    elif sources.unrecorded or any(name == "unknown" for name, _ in sources.licences):
        unknown = dict(sources.licences).get("unknown", 0) + sources.unrecorded
        limits.append(f"{unknown} image(s) have no recorded licence: check before sharing.")
    return limits


def _few(names: Sequence[str], counts: Mapping[str, int], limit: int) -> list[tuple[str, int]]:
    """(class, images) for the classes with fewer than ``limit`` images, in class order."""
    return [(name, counts.get(name, 0)) for name in names if counts.get(name, 0) < limit]


def _classes(few: Sequence[tuple[str, int]]) -> str:
    return f"Class {few[0][0]!r} has" if len(few) == 1 else f"{len(few)} classes have"


def _counts(few: Sequence[tuple[str, int]], shown: int = 8) -> str:
    """``'cat' 8, 'dog' 9`` (the first ``shown``, then how many more)."""
    text = ", ".join(f"{name!r} {count}" for name, count in few[:shown])
    return text + (f" and {len(few) - shown} more" if len(few) > shown else "")


def _pairs(findings: Sequence[Finding], shown: int = 3) -> str:
    return "; ".join(f"{f.path} ≈ {f.other}" for f in findings[:shown])


# -- figures -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    """The figures as PNG bytes, drawn once for the files and the page."""

    confusion: bytes
    confusion_normalized: bytes
    top_losses: bytes
    calibration: bytes
    history: bytes | None
    top: list[TopLoss]
    heatmap_note: str


def render(interp: Interpretation, *, k: int, heatmap: bool) -> Rendered:
    """Draw every figure of the report."""
    from ursa.interpret.plots import png_bytes

    note = ""
    try:
        top_figure = interp.plot_top_losses(k, heatmap=heatmap)
    except ConfigError as error:  # a backbone Grad-CAM cannot explain: plain images instead
        note = f"No heat maps: {error}"
        top_figure = interp.plot_top_losses(k, heatmap=False)
    history = interp.plot_history()
    return Rendered(
        confusion=png_bytes(interp.plot_confusion_matrix()),
        confusion_normalized=png_bytes(interp.plot_confusion_matrix(normalize=True)),
        top_losses=png_bytes(top_figure),
        calibration=png_bytes(interp.plot_calibration()),
        history=png_bytes(history) if history is not None else None,
        top=interp.top_losses(k),
        heatmap_note=note if heatmap else "",
    )


# -- the page ------------------------------------------------------------------------------


def _number(value: float, digits: int = 4) -> str:
    return (
        "–"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else (f"{value:.{digits}f}")
    )


def _data_context(interp: Interpretation, sources: Sources | None) -> dict[str, Any]:
    counts = interp.data.counts()
    train = [counts["train"].get(n, 0) for n in interp.class_names]
    valid = [counts["valid"].get(n, 0) for n in interp.class_names]
    rows: list[tuple[str, int, int, int]] = [
        (n, t, v, t + v) for n, t, v in zip(interp.class_names, train, valid, strict=True)
    ]
    rows.append(("total", sum(train), sum(valid), sum(train) + sum(valid)))
    return {
        "classes": len(interp.class_names),
        "root": interp.data.root.name,
        "split_folders": find_split_folders(interp.data.root) is not None,
        "valid_pct": interp.data.config.valid_pct,
        "seed": interp.data.config.seed,
        "counts": rows,
        "skipped": len(interp.data.skipped),
    }


def _credits(sources: Sources | None) -> list[tuple[str, str, str, str]]:
    if sources is None:
        return []
    return [
        (r.path, r.creator or "–", r.license or "unknown", r.page_url or r.source_url)
        for r in sources.credits[:2000]
    ]


def _training_rows(interp: Interpretation) -> list[tuple[str, Any]]:
    summary = interp.summary
    training = summary.training
    config = summary.preprocess
    rows: list[tuple[str, Any]] = [
        ("model", summary.source),
        ("architecture", f"{summary.arch} (timm {summary.timm_name})"),
        ("pretrained", training.get("pretrained", "?")),
        ("input", f"{config.size} px, {config.resize}, {config.interpolation}"),
        ("normalisation", f"mean {list(config.mean)}, std {list(config.std)}"),
        ("epochs", _epochs_text(summary.history, training.get("epochs", "?"))),
    ]
    if isinstance(training.get("kept"), str):
        rows.append(("weights kept", training["kept"]))
    for number, fit in enumerate(training.get("fits", []) or [], start=1):
        if not isinstance(fit, dict):
            continue
        if fit.get("head") == "fit":
            rows.append((f"fit {number}", _head_fit_text(training.get("head_fit"))))
            continue
        rates = fit.get("lr_max", [])
        rows.append(
            (f"fit {number}", f"{fit.get('epochs')} epochs, lr {rates}, "
             f"{'body frozen' if fit.get('frozen') else 'all layers'}, "
             f"pct_start {fit.get('pct_start')}, div {fit.get('div')}")
        )  # fmt: skip
    for key in ("batch_size", "augment", "seed", "train_seconds", "device"):
        if key in training:
            rows.append((key.replace("_", " "), training[key]))
    return rows


def _epochs_text(history: Sequence[Any], recorded: Any) -> str:
    """The epochs as ``ursa train --epochs`` counts them: the fine-tuning epochs, with the
    head phase named beside them (a head fit, or fastai's frozen epochs), not added in."""
    phases = Counter(record.get("phase", "") for record in history if isinstance(record, dict))
    if not phases:  # no history recorded: what the bundle says
        return str(recorded)
    head = phases.pop("head", 0)
    frozen = phases.pop("frozen", 0)
    phases.pop("average", 0)  # a validation of averaged weights, not an epoch
    text = str(sum(phases.values()))
    before = []
    if head:
        before.append("the head fit")
    if frozen:
        before.append(f"{frozen} frozen epoch{'s' if frozen != 1 else ''}")
    return text + (f", after {' and '.join(before)}" if before else "")


def _head_fit_text(record: Any) -> str:
    """The head fit's row: no epochs or rates, a convex fit on the frozen body's features."""
    text = "head fitted on the frozen body's features (L-BFGS)"
    if isinstance(record, dict):
        decay, rows = record.get("weight_decay"), record.get("rows")
        if isinstance(decay, int | float):
            text += f", weight decay {decay:g}"
        if isinstance(rows, int):
            text += f", {rows:,} feature rows"
    return text


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _template() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("ursa.interpret", "templates"),
        autoescape=True,  # every value escaped: class names, paths, creators, messages
        undefined=jinja2.StrictUndefined,  # a misspelt name fails, never renders empty
        keep_trailing_newline=True,
        trim_blocks=True,  # a block tag's own line leaves no blank line behind
        lstrip_blocks=True,
    )
    return environment.get_template("report.html")


def build_html(
    interp: Interpretation,
    rendered: Rendered,
    findings: Sequence[Finding],
    sources: Sources | None,
) -> str:
    """The whole page as a string: ``templates/report.html`` filled in."""
    confused = interp.most_confused()
    split = {"valid": "validation", "train": "training", "all": "all"}[interp.split]
    root = interp.data.root
    title = f"Model card: {interp.summary.arch}, {len(interp.class_names)} classes"
    classes = ", ".join(interp.class_names[:20]) + (
        f" and {len(interp.class_names) - 20} more" if len(interp.class_names) > 20 else ""
    )
    return _template().render(
        title=title,
        classes=classes,
        accuracy=_number(interp.accuracy),
        images=len(interp.targets),
        split=interp.split,
        when=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        version=__version__,
        sections=SECTIONS,
        data=_data_context(interp, sources),
        sources=sources,
        credits=_credits(sources),
        training={
            "rows": _training_rows(interp),
            "history": None if rendered.history is None else _data_uri(rendered.history),
        },
        metrics={
            "overall": [
                (
                    split,
                    len(interp.targets),
                    _number(interp.accuracy),
                    _number(1 - interp.accuracy),
                    _number(interp.loss),
                )
            ],
            "per_class": [
                (m.name, _number(m.precision, 3), _number(m.recall, 3), _number(m.f1, 3), m.support)
                for m in interp.per_class_metrics()
            ],
        },
        confusion={
            "counts": _data_uri(rendered.confusion),
            "normalized": _data_uri(rendered.confusion_normalized),
        },
        confused={
            "rows": [(c.actual, c.predicted, c.count) for c in confused[:MAX_ROWS]],
            "more": max(0, len(confused) - MAX_ROWS),
        },
        top={
            "note": rendered.heatmap_note,
            "figure": _data_uri(rendered.top_losses),
            "rows": [
                (
                    rank,
                    relative_path(interp.items[t.index], root),
                    t.split,
                    t.actual,
                    t.predicted,
                    _number(t.loss, 3),
                    _number(t.probability_actual, 3),
                )
                for rank, t in enumerate(rendered.top, start=1)
            ],
        },
        calibration={
            "ece": f"{interp.calibration().ece:.4f}",
            "figure": _data_uri(rendered.calibration),
        },
        limits=known_limits(interp, findings, sources),
    )


def report_html(
    interp: Interpretation, *, k: int = 9, heatmap: bool = True, rendered: Rendered | None = None
) -> str:
    """The model card as HTML text (figures drawn unless ``rendered`` is given)."""
    rendered = rendered or render(interp, k=k, heatmap=heatmap)
    try:
        sources = source_summary(interp.data)
    except DataError:
        sources = None
    return build_html(interp, rendered, leakage_findings(interp.data), sources)


def _write(path: Path, data: bytes) -> Path:
    """Write beside the target and rename, so a reader never sees half a file."""
    return atomic_write_bytes(path, data)


def write_report(interp: Interpretation, path: Path, *, k: int = 9, heatmap: bool = True) -> Path:
    """Write ``report.html`` at ``path``."""
    return _write(path, report_html(interp, k=k, heatmap=heatmap).encode("utf-8"))


def save_all(
    interp: Interpretation, folder: Path, *, k: int = 9, heatmap: bool = True
) -> dict[str, Path]:
    """confusion.png, top_losses.png, most_confused.csv, per_class.csv and report.html."""
    folder.mkdir(parents=True, exist_ok=True)
    rendered = render(interp, k=k, heatmap=heatmap)
    return {
        "confusion.png": _write(folder / "confusion.png", rendered.confusion),
        "top_losses.png": _write(folder / "top_losses.png", rendered.top_losses),
        "most_confused.csv": interp.write_most_confused(folder / "most_confused.csv"),
        "per_class.csv": interp.write_per_class(folder / "per_class.csv"),
        "report.html": _write(
            folder / "report.html",
            report_html(interp, k=k, heatmap=heatmap, rendered=rendered).encode("utf-8"),
        ),
    }


CARD_NAME = "card.html"
"""The model card's member name inside a ``.ursa`` bundle."""


def add_card_to_bundle(bundle_path: Path, page: str) -> Path:
    """Rewrite the bundle at ``bundle_path`` with ``card.html`` added (atomically; every other
    member, ONNX models included, kept byte for byte)."""
    from ursa.core.bundle import REQUIRED_MEMBERS, WEIGHTS_NAME, read_bundle, write_bundle

    bundle = read_bundle(bundle_path)
    extra = {
        name: bundle.read(name)
        for name in bundle.members
        if name not in REQUIRED_MEMBERS and name != CARD_NAME
    }
    extra[CARD_NAME] = page.encode("utf-8")
    return write_bundle(
        bundle_path, bundle.config, bundle.read(WEIGHTS_NAME), bundle.metrics, extra
    )
