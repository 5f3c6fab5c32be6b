"""The model card: one self-contained ``report.html``, and the files ``ursa interpret`` writes.

The page has no external resource of any kind: figures are PNG data URIs, the
style is inline, and a Content-Security-Policy forbids every other load, so it
opens the same offline, attached to an e-mail or inside a bundle
(``card.html``).
"""

from __future__ import annotations

import base64
import datetime
import html
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 70rem; padding: 0 1rem; color: #1f2328; line-height: 1.45; }
h1 { margin-bottom: .2rem; } h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .3rem;
       margin-top: 2.2rem; }
.meta { color: #57606a; } nav a { margin-right: .8rem; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .92rem; }
th, td { border: 1px solid #d0d7de; padding: .25rem .6rem; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
.figures { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }
.figures img { max-width: min(100%, 34rem); }
.warn li { margin-bottom: .4rem; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: float, digits: int = 4) -> str:
    return (
        "–"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else (f"{value:.{digits}f}")
    )


def _image(png: bytes, alt: str) -> str:
    encoded = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{encoded}" alt="{_e(alt)}">'


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], numeric: set[int]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="n">{_e(v)}</td>' if i in numeric else f"<td>{_e(v)}</td>"
            for i, v in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _data_section(interp: Interpretation, sources: Sources | None) -> str:
    counts = interp.data.counts()
    train = [counts["train"].get(n, 0) for n in interp.class_names]
    valid = [counts["valid"].get(n, 0) for n in interp.class_names]
    rows: list[tuple[str, int, int, int]] = [
        (n, t, v, t + v) for n, t, v in zip(interp.class_names, train, valid, strict=True)
    ]
    rows.append(("total", sum(train), sum(valid), sum(train) + sum(valid)))
    if find_split_folders(interp.data.root) is not None:
        how = "split by its <code>train/</code> and <code>valid/</code> folders"
    else:
        how = (
            f"a random {_e(interp.data.config.valid_pct)} of each class held out for "
            f"validation (seed {_e(interp.data.config.seed)})"
        )
    parts = [
        f"<p>{len(interp.class_names)} classes in <code>{_e(interp.data.root.name)}</code>, "
        f"{how}.</p>",
        _table(["class", "train", "valid", "total"], rows, {1, 2, 3}),
    ]
    if interp.data.skipped:
        parts.append(f"<p>{len(interp.data.skipped)} unreadable files skipped.</p>")
    parts.append("<h3>Sources and licences</h3>")
    if sources is None:
        parts.append("<p>No manifest (<code>ursa.sqlite</code>): sources are not recorded.</p>")
    else:
        parts.append(
            f"<p>{sources.recorded} images recorded in the manifest, {sources.unrecorded} not.</p>"
        )
        if sources.relabeled or sources.deleted:
            parts.append(
                f"<p>Cleaned: {sources.relabeled} images relabeled and {sources.deleted} deleted "
                f"(<code>ursa clean DATA --history</code> lists each decision).</p>"
            )
        parts.append(_table(["licence", "images"], sources.licences, {1}))
        parts.append(_table(["provider", "images"], sources.providers, {1}))
        if sources.credits:
            credit_rows = [
                (r.path, r.creator or "–", r.license or "unknown", r.page_url or r.source_url)
                for r in sources.credits[:2000]
            ]
            parts.append(
                f"<details><summary>Credits ({len(sources.credits)} images)</summary>"
                + _table(["image", "creator", "licence", "source"], credit_rows, set())
                + "</details>"
            )
    return "".join(parts)


def _training_section(interp: Interpretation, rendered: Rendered) -> str:
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
    parts = [_table(["setting", "value"], rows, set())]
    if rendered.history is not None:
        parts.append(_image(rendered.history, "training history"))
    else:
        parts.append("<p>No training history (the model was not trained by ursa's loop).</p>")
    return "".join(parts)


def _epochs_text(history: Sequence[Any], recorded: Any) -> str:
    """The epochs as ``ursa train --epochs`` counts them: the fine-tuning epochs, with the
    head phase named beside them (a head fit, or fastai's frozen epochs), not added in."""
    phases = Counter(record.get("phase", "") for record in history if isinstance(record, dict))
    if not phases:  # no history recorded: what the bundle says
        return str(recorded)
    head = phases.pop("head", 0)
    frozen = phases.pop("frozen", 0)
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


def _metrics_section(interp: Interpretation) -> str:
    split = {"valid": "validation", "train": "training", "all": "all"}[interp.split]
    overall = _table(
        ["split", "images", "accuracy", "error rate", "loss"],
        [(split, len(interp.targets), _number(interp.accuracy), _number(1 - interp.accuracy),
          _number(interp.loss))],
        {1, 2, 3, 4},
    )  # fmt: skip
    per_class = _table(
        ["class", "precision", "recall", "F1", "support"],
        [(m.name, _number(m.precision, 3), _number(m.recall, 3), _number(m.f1, 3), m.support)
         for m in interp.per_class_metrics()],
        {1, 2, 3, 4},
    )  # fmt: skip
    return overall + per_class


def _top_losses_section(interp: Interpretation, rendered: Rendered) -> str:
    root = interp.data.root
    rows = [
        (rank, relative_path(interp.items[t.index], root), t.split, t.actual, t.predicted,
         _number(t.loss, 3), _number(t.probability_actual, 3))
        for rank, t in enumerate(rendered.top, start=1)
    ]  # fmt: skip
    note = (
        f"<p>{_e(rendered.heatmap_note)}</p>"
        if rendered.heatmap_note
        else (
            "<p>Titles: predicted / actual, the loss and the probability of the actual class. "
            "The overlay (Grad-CAM of the backbone's last convolutional stage) shows where the "
            "model found the evidence for its prediction. High losses on training images are "
            "often mislabeled images.</p>"
        )
    )
    table = _table(
        ["#", "image", "split", "actual", "predicted", "loss", "p(actual)"], rows, {0, 5, 6}
    )
    return note + _image(rendered.top_losses, "top losses") + table


def build_html(
    interp: Interpretation,
    rendered: Rendered,
    findings: Sequence[Finding],
    sources: Sources | None,
) -> str:
    """The whole page as a string."""
    confused = interp.most_confused()
    confused_rows = [(c.actual, c.predicted, c.count) for c in confused[:MAX_ROWS]]
    more = f"<p>and {len(confused) - MAX_ROWS} more pairs.</p>" if len(confused) > MAX_ROWS else ""
    limits = known_limits(interp, findings, sources)
    calibration = interp.calibration()
    sections = {
        "data": _data_section(interp, sources),
        "training": _training_section(interp, rendered),
        "metrics": _metrics_section(interp),
        "confusion": "<div class='figures'>"
        + _image(rendered.confusion, "confusion matrix, counts")
        + _image(rendered.confusion_normalized, "confusion matrix, row-normalised")
        + "</div>",
        "most-confused": (
            _table(["actual", "predicted", "images"], confused_rows, {2}) + more
            if confused
            else "<p>No mistakes on this split.</p>"
        ),
        "top-losses": _top_losses_section(interp, rendered),
        "calibration": f"<p>Expected calibration error: {calibration.ece:.4f} (0 is perfect: "
        f"the top probability matches how often the model is right).</p>"
        + _image(rendered.calibration, "reliability diagram"),
        "limits": (
            "<ul class='warn'>" + "".join(f"<li>{_e(text)}</li>" for text in limits) + "</ul>"
            if limits
            else "<p>None found.</p>"
        ),
    }
    title = f"Model card: {interp.summary.arch}, {len(interp.class_names)} classes"
    classes = ", ".join(interp.class_names[:20]) + (
        f" and {len(interp.class_names) - 20} more" if len(interp.class_names) > 20 else ""
    )
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    nav = "".join(f'<a href="#{key}">{_e(name)}</a>' for key, name in SECTIONS)
    body = "".join(
        f'<section id="{key}"><h2>{_e(name)}</h2>{sections[key]}</section>'
        for key, name in SECTIONS
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "img-src data:; style-src 'unsafe-inline'\">"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>"
        f"<header><h1>{_e(title)}</h1><p class='meta'>Classes: {_e(classes)}. Accuracy "
        f"{_number(interp.accuracy)} on {len(interp.targets)} {_e(interp.split)} images. "
        f"Written {when} by ursa {_e(__version__)}.</p><nav>{nav}</nav></header>"
        f"{body}</body></html>\n"
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
