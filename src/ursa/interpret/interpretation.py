"""``Interpretation``: what a model gets wrong on a split, and where it looked.

>>> interp = learner.interpret()                       # or Interpretation.from_bundle(path, data)
>>> interp.plot_confusion_matrix(normalize=True)
>>> interp.most_confused(min_val=2)
>>> interp.plot_top_losses(9, heatmap=True)
>>> interp.report("report.html")
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ursa.core.errors import ConfigError, DataError
from ursa.core.items import Item
from ursa.core.preprocess import (
    PreprocessConfig,
    load_input,
    prepare_input,
    resize_for_model,
)
from ursa.data.as_trained import data_as_trained
from ursa.data.core import ImageData, html_table, text_table
from ursa.interpret import metrics
from ursa.interpret.metrics import Calibration, ClassMetrics, Confusion

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ursa.export.model import Model
    from ursa.train.learner import Learner

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("valid", "train", "all")
REPR_CONFUSIONS = 5
"""Most-confused pairs the repr of an :class:`Interpretation` lists."""


@dataclass(frozen=True)
class ModelSummary:
    """What the model card says about the model and how it was trained."""

    arch: str
    """ursa architecture name."""
    timm_name: str
    """The timm architecture built."""
    preprocess: PreprocessConfig
    """How images became inputs."""
    training: dict[str, Any]
    """Training settings (epochs, rates, seed, batch size, augmentation, times)."""
    history: list[dict[str, Any]]
    """One row per epoch: epoch, phase, train_loss, valid_loss, error_rate, accuracy, seconds."""
    dataset_fingerprint: str
    """Fingerprint of the data the model was trained on (empty when unknown)."""
    source: str
    """Where the model came from: ``Learner`` or the bundle's path."""


@dataclass(frozen=True)
class TopLoss:
    """One image among the highest losses."""

    index: int
    """Position in :attr:`Interpretation.items`."""
    path: Path
    split: str
    """train or valid."""
    actual: str
    predicted: str
    loss: float
    probability_actual: float
    """The model's probability for the image's label."""
    probability_predicted: float

    @property
    def title(self) -> str:
        """predicted / actual / loss / probability of the actual class, as fastai titles it."""
        return (
            f"{self.predicted} / {self.actual}\n"
            f"loss {self.loss:.2f} · p(actual) {self.probability_actual:.2f}\n{self.path.name}"
        )


class Interpretation:
    """A model's predictions on one split of an :class:`~ursa.data.ImageData`, and their views.

    Build it with :meth:`from_learner` (``learner.interpret()``) or
    :meth:`from_bundle`. Every image is read with the validation transform,
    the training split included (no augmentation), so what is shown is what
    the model sees at prediction time.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        class_names: Sequence[str],
        data: ImageData,
        split: str,
        items: Sequence[Item],
        item_splits: Sequence[str],
        logits: np.ndarray,
        targets: np.ndarray,
        summary: ModelSummary,
        device: torch.device,
    ) -> None:
        self.model = model
        self.class_names = list(class_names)
        self.data = data
        self.split = split
        self.items = list(items)
        self.item_splits = list(item_splits)
        self.logits = logits  # (N, C)
        self.targets = targets  # (N,)
        self.summary = summary
        self.device = device
        self.probabilities = metrics.softmax(logits)  # (N, C)
        self.predictions = logits.argmax(axis=1)  # (N,)
        self.losses = metrics.cross_entropy(logits, targets)  # (N,)

    # -- construction --------------------------------------------------------------------

    @classmethod
    def from_learner(
        cls, learner: Learner, split: str = "valid", *, batch_size: int | None = None
    ) -> Interpretation:
        """Interpret ``learner``'s model on ``split`` of its own data."""
        from ursa.train.export import training_record

        summary = ModelSummary(
            arch=learner.arch,
            timm_name=learner.timm_name,
            preprocess=learner.preprocess,
            training=training_record(learner),
            history=[record.to_dict() for record in learner.history],
            dataset_fingerprint=learner.data.fingerprint,
            source="Learner",
        )
        return cls._run(
            learner.model, learner.class_names, learner.data, split, summary,
            device=learner.device, batch_size=batch_size,
        )  # fmt: skip

    @classmethod
    def from_bundle(
        cls,
        model_or_path: str | Path | Model,
        data: ImageData | str | Path,
        split: str = "valid",
        *,
        batch_size: int | None = None,
        device: str | torch.device | None = None,
    ) -> Interpretation:
        """Interpret a ``.ursa`` bundle (a path, or a :class:`~ursa.export.model.Model`).

        ``data`` is an :class:`~ursa.data.ImageData` or a dataset folder; a folder
        is split as the bundle's training was (its ``valid_pct`` and ``seed``), so
        the validation split is the one the model was validated on.

        The bundle reader lives in ``ursa.export`` (a later stage than this one);
        it is the format every stage shares, so it is imported here, inside the
        function, as ``ursa.train`` imports it to write bundles.
        """
        from ursa.core.bundle import read_bundle
        from ursa.export.model import Model

        if isinstance(model_or_path, Model):
            model = model_or_path
        elif isinstance(model_or_path, str | Path):
            model = Model(read_bundle(model_or_path))
        else:
            raise ConfigError(
                f"from_bundle needs a .ursa path or an ursa.export.model.Model, not "
                f"{type(model_or_path).__name__}; an ONNX Predictor has no gradients to explain, "
                f"so pass the bundle's path instead"
            )
        config = model.config
        training = dict(config.training)
        if not isinstance(data, ImageData):
            data = data_as_trained(config, data)
        history = model.metrics.get("history")
        summary = ModelSummary(
            arch=config.arch,
            timm_name=config.timm_name,
            preprocess=config.preprocess,
            training=training,
            history=list(history) if isinstance(history, list) else [],
            dataset_fingerprint=config.dataset_fingerprint,
            source=str(model.bundle.path),
        )
        target = torch.device(device) if device is not None else torch.device("cpu")
        network = model.network.to(target)
        return cls._run(
            network, config.class_names, data, split, summary, device=target, batch_size=batch_size
        )

    @classmethod
    def _run(
        cls,
        model: nn.Module,
        class_names: Sequence[str],
        data: ImageData,
        split: str,
        summary: ModelSummary,
        *,
        device: torch.device,
        batch_size: int | None,
    ) -> Interpretation:
        from ursa.data.loaders import default_num_workers, make_loader
        from ursa.train.loop import predict_logits

        items, item_splits = split_items(data, split)
        unknown = sorted({item.label for item in items} - set(class_names))
        if unknown:
            raise DataError(
                f"{data.root} has classes the model does not know: {', '.join(unknown)} (the "
                f"model knows {', '.join(class_names)}); interpret it on the data it was trained "
                f"for, or train a model on these classes"
            )
        dataset = data.dataset(items, summary.preprocess, training=False, class_names=class_names)
        workers = data.config.num_workers
        loader = make_loader(
            dataset,
            batch_size=batch_size or data.batch_size,
            shuffle=False,
            seed=data.config.seed,
            num_workers=default_num_workers() if workers is None else workers,
        )
        logits, targets = predict_logits(model, loader, device=device)
        return cls(
            model=model, class_names=class_names, data=data, split=split, items=items,
            item_splits=item_splits, logits=logits.numpy().astype(np.float64),
            targets=targets.numpy().astype(np.int64), summary=summary, device=device,
        )  # fmt: skip

    # -- numbers -------------------------------------------------------------------------

    @property
    def accuracy(self) -> float:
        """Fraction of the split predicted right (NaN when the split is empty)."""
        return float((self.predictions == self.targets).mean()) if len(self.targets) else np.nan

    @property
    def loss(self) -> float:
        """Mean cross-entropy loss over the split, as ``Learner.validate`` reports it."""
        return float(self.losses.mean()) if len(self.losses) else float("nan")

    def confusion_matrix(self, normalize: bool = False) -> np.ndarray:
        """(C, C): row = actual class, column = predicted; counts, or rows summing to 1."""
        matrix = metrics.confusion_matrix(self.targets, self.predictions, len(self.class_names))
        return metrics.row_normalize(matrix) if normalize else matrix

    def most_confused(self, min_val: int = 1) -> list[Confusion]:
        """(actual, predicted, count) for every mistake made ``min_val`` times or more."""
        if min_val < 1:
            raise ConfigError(f"min_val={min_val}: use 1 or more")
        return metrics.most_confused(self.confusion_matrix(), self.class_names, min_val)

    def per_class_metrics(self) -> list[ClassMetrics]:
        """Precision, recall, F1 and support per class, then macro and weighted averages."""
        return metrics.per_class_metrics(self.confusion_matrix(), self.class_names)

    def calibration(self, bins: int = 10) -> Calibration:
        """Reliability bins and the expected calibration error (ECE)."""
        if not 2 <= bins <= 100:
            raise ConfigError(f"bins={bins}: use 2 to 100 confidence bins")
        return metrics.calibration(self.probabilities, self.targets, bins)

    def top_losses(self, k: int = 9) -> list[TopLoss]:
        """The ``k`` images with the highest loss, highest first."""
        if k < 1:
            raise ConfigError(f"k={k}: ask for 1 or more images")
        order = np.argsort(-self.losses, kind="stable")[:k]
        return [
            TopLoss(
                index=int(i),
                path=self.items[i].path,
                split=self.item_splits[i],
                actual=self.class_names[self.targets[i]],
                predicted=self.class_names[self.predictions[i]],
                loss=float(self.losses[i]),
                probability_actual=float(self.probabilities[i, self.targets[i]]),
                probability_predicted=float(self.probabilities[i, self.predictions[i]]),
            )
            for i in order
        ]

    # -- pictures ------------------------------------------------------------------------

    def input_image(self, index: int) -> np.ndarray:
        """Image ``index`` as the model sees it (resized, before normalisation): (H, W, 3) uint8."""
        config = self.summary.preprocess
        image = load_input(self.items[index].path, config)
        return np.asarray(resize_for_model(image, config))

    def gradcam(
        self, indices: Sequence[int], classes: Sequence[int] | None = None, batch_size: int = 16
    ) -> np.ndarray:
        """Grad-CAM maps (len(indices), H, W) in [0, 1] of the backbone's last convolutional
        stage, for ``classes`` (default: each image's predicted class)."""
        from ursa.interpret.gradcam import GradCAM

        if classes is None:
            classes = [int(self.predictions[i]) for i in indices]
        explainer = GradCAM(self.model)
        maps = []
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            inputs = np.stack(
                [prepare_input(self.items[i].path, self.summary.preprocess) for i in chunk]
            )
            tensor = torch.from_numpy(inputs).to(self.device)  # (B, 3, H, W)
            maps.append(explainer(tensor, list(classes[start : start + batch_size])))
        size = self.summary.preprocess.size
        return np.concatenate(maps) if maps else np.zeros((0, size, size), dtype=np.float32)

    # Every plot_* returns its figure (a notebook shows it as an image) and, given a
    # ``path``, also writes it there as a PNG.

    def plot_confusion_matrix(
        self, normalize: bool = False, title: str = "", *, path: str | Path | None = None
    ) -> Figure:
        """The confusion matrix as a figure: counts, or rows normalised to fractions."""
        from ursa.data.show import saved
        from ursa.interpret.plots import confusion_figure

        figure = confusion_figure(
            self.confusion_matrix(), self.class_names, normalize=normalize, title=title
        )
        return saved(figure, path)

    def plot_top_losses(
        self, k: int = 9, heatmap: bool = False, *, path: str | Path | None = None
    ) -> Figure:
        """The ``k`` highest-loss images titled predicted / actual / loss / p(actual);
        ``heatmap`` overlays Grad-CAM for the predicted class (where the model looked)."""
        from ursa.data.show import saved
        from ursa.interpret.plots import top_losses_figure

        top = self.top_losses(k)
        images = [self.input_image(t.index) for t in top]
        maps = list(self.gradcam([t.index for t in top])) if heatmap else None
        return saved(top_losses_figure(images, [t.title for t in top], maps), path)

    def plot_calibration(self, bins: int = 10, *, path: str | Path | None = None) -> Figure:
        """The reliability diagram, with the expected calibration error in its title."""
        from ursa.data.show import saved
        from ursa.interpret.plots import reliability_figure

        return saved(reliability_figure(self.calibration(bins)), path)

    def plot_history(self, path: str | Path | None = None) -> Figure | None:
        """Losses and error rate per training epoch; None when the model has no history
        (then nothing is written at ``path`` either)."""
        from ursa.data.show import saved
        from ursa.interpret.plots import history_figure

        figure = history_figure(self.summary.history)
        return None if figure is None else saved(figure, path)

    # -- what a notebook shows ------------------------------------------------------------

    def _facts(self) -> list[tuple[str, str]]:
        """(name, value) lines of the repr: the model, the split, the scores, the mistakes."""
        wrong = int((self.predictions != self.targets).sum())
        source = self.summary.source
        return [
            ("model", f"{self.summary.arch} ({source}), {len(self.class_names)} classes"),
            ("split", f"{self.split}: {len(self.items)} images, {wrong} predicted wrong"),
            ("accuracy", f"{self.accuracy:.4f}"),
            ("loss", f"{self.loss:.4f}"),
            ("calibration", f"expected calibration error {self.calibration().ece:.4f}"),
        ]

    def _confusion_rows(self) -> list[tuple[str, str, int]]:
        confused = self.most_confused()[:REPR_CONFUSIONS]
        return [(c.actual, c.predicted, c.count) for c in confused]

    def __repr__(self) -> str:
        """A few lines: the split, accuracy and loss, and the pairs most often confused."""
        facts = self._facts()
        width = max(len(name) for name, _ in facts)
        lines = ["Interpretation"] + [f"  {name.ljust(width)}  {value}" for name, value in facts]
        rows = self._confusion_rows()
        if rows:
            table = text_table(("actual", "predicted", "count"), rows)
            lines += ["", "  most confused:"] + ["  " + line for line in table.splitlines()]
        else:
            lines.append("  no mistakes on this split")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        """The repr as HTML for a notebook: the scores and the most confused pairs."""
        rows = self._confusion_rows()
        confused = (
            "<p>most confused:</p>" + html_table(("actual", "predicted", "count"), rows)
            if rows
            else "<p>no mistakes on this split</p>"
        )
        return (
            "<div><strong>Interpretation</strong>"
            + html_table(None, self._facts(), row_headers=True)
            + confused
            + "</div>"
        )

    # -- files ---------------------------------------------------------------------------

    def report(self, path: str | Path, *, k: int = 9, heatmap: bool = True) -> Path:
        """Write the model card: one self-contained ``report.html`` (images embedded)."""
        from ursa.interpret.report import write_report

        return write_report(self, Path(path), k=k, heatmap=heatmap)

    def save(self, folder: str | Path, *, k: int = 9, heatmap: bool = True) -> dict[str, Path]:
        """Write confusion.png, top_losses.png, most_confused.csv, per_class.csv and
        report.html into ``folder``; returns their paths by name."""
        from ursa.interpret.report import save_all

        return save_all(self, Path(folder), k=k, heatmap=heatmap)

    def write_most_confused(self, path: Path, min_val: int = 1) -> Path:
        """most_confused.csv: actual, predicted, count."""
        with path.open("w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream)
            writer.writerow(["actual", "predicted", "count"])
            writer.writerows((c.actual, c.predicted, c.count) for c in self.most_confused(min_val))
        return path

    def write_per_class(self, path: Path) -> Path:
        """per_class.csv: class, precision, recall, f1, support (empty cells for NaN)."""
        with path.open("w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream)
            writer.writerow(["class", "precision", "recall", "f1", "support"])
            for row in self.per_class_metrics():
                writer.writerow(
                    [row.name, *(_csv_number(v) for v in (row.precision, row.recall, row.f1)),
                     row.support]
                )  # fmt: skip
        return path


def _csv_number(value: float) -> str:
    return "" if np.isnan(value) else f"{value:.4f}"


def split_items(data: ImageData, split: str) -> tuple[list[Item], list[str]]:
    """The items of ``split`` (valid, train or all) and the split each came from."""
    if split not in SPLITS:
        raise ConfigError(f"split={split!r}: use one of {', '.join(SPLITS)}")
    train = list(data.train_items) if split in ("train", "all") else []
    valid = list(data.valid_items) if split in ("valid", "all") else []
    if not train and not valid:
        hint = "--split train (or all)" if split == "valid" else "another split"
        raise DataError(
            f"{data.root} has no {'validation' if split == 'valid' else 'training'} images to "
            f"interpret; use {hint}, or give the folder more images"
        )
    return train + valid, ["train"] * len(train) + ["valid"] * len(valid)
