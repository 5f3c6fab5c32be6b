"""A cleaning session: a model's view of every image in a dataset folder, and the journal.

:meth:`CleanSession.open` loads the bundle, gives every image an id
(:meth:`Journal.sync`), splits the folder as the bundle's training did, and
predicts every image once. Predictions are cached in ``ursa.sqlite`` by the
file's sha256 and the bundle's hash, so a second session on the same folder
starts without running the model again (a relabeled file keeps its bytes,
hence its cached prediction).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ursa.clean.journal import CleanImage, ImageState, Journal
from ursa.clean.predictions import PredictionCache
from ursa.clean.thumbnails import CACHE_DIR, Thumbnails
from ursa.core.errors import DataError, ImageError
from ursa.core.hashing import sha256_file
from ursa.core.safepaths import is_within

if TYPE_CHECKING:
    from ursa.core.runtime import BundleModel

log = logging.getLogger(__name__)

SPLITS = ("all", "train", "valid")
"""Which images a listing shows, by the split the bundle's training used."""
STATES: tuple[ImageState, ...] = ("active", "deleted")
"""In the dataset, or deleted (in the quarantine, undoable)."""


@dataclass(frozen=True)
class ImageView:
    """An image as the page shows it."""

    image: CleanImage
    split: str
    """train, valid, or empty (unreadable, or deleted before this session)."""
    predicted: str | None
    """The model's top class (None when the file is not a readable image)."""
    probability: float | None
    """Its probability."""
    label_probability: float | None
    """The probability the model gives the image's current label."""
    loss: float | None
    """Cross-entropy of the current label: high means the model disagrees."""
    problem: str
    """Why the image could not be predicted (empty when it was)."""
    decision: str = ""
    """The latest decision in effect on it: relabel, delete, keep, or empty."""

    @property
    def sort_key(self) -> tuple[float, int]:
        """Highest loss first; unreadable files before everything, they need a decision most."""
        loss = math.inf if self.loss is None else self.loss
        return -loss, self.image.id


ProbabilitiesFn = Callable[[Sequence[Path]], list[list[float]]]


class CleanSession:
    """The state a cleaning server works from; see the module docstring."""

    def __init__(
        self,
        journal: Journal,
        class_names: Sequence[str],
        splits: dict[int, str],
        probabilities: dict[str, np.ndarray],
        problems: dict[str, str],
        thumbnails: Thumbnails,
        *,
        bundle_name: str = "",
    ) -> None:
        self.journal = journal
        self.class_names = list(class_names)
        self.splits = splits
        self.probabilities = probabilities
        self.problems = problems
        self.thumbnails = thumbnails
        self.bundle_name = bundle_name
        self._warned_cache = False

    @classmethod
    def open(
        cls,
        bundle: str | Path,
        data: str | Path,
        *,
        fault: str | None = None,
        thumbnail_px: int = 256,
        batch_size: int = 32,
        progress: Callable[[str], None] | None = None,
        on_predicted: Callable[[int, int], None] | None = None,
    ) -> CleanSession:
        """Load ``bundle``, recover and sync the journal of ``data``, predict what is not cached.

        ``progress`` gets a line for each step; ``on_predicted(done, total)`` is called as
        each batch of the images to predict is done (the first run predicts them all).
        """
        # The bundle reader lives in ursa.export, a later stage than this one; it is the
        # format every stage shares, so it is imported here, inside the function.
        from ursa.export.model import load

        say = progress or log.info
        model = load(bundle)
        class_names = model.class_names
        journal = Journal(data, class_names=class_names, fault=fault)
        try:
            journal.sync()
            images = journal.images()
            _check_classes(journal, images, class_names)
            splits, problems = _splits(journal, images, model)
            model_id = _model_id(Path(bundle), type(model).__name__)
            with PredictionCache(journal.root) as cache:
                cached = cache.probabilities(model_id)
            missing = {i.sha256: journal.file(i) for i in images}
            missing = {sha: p for sha, p in missing.items() if sha not in cached}
            missing = {sha: p for sha, p in missing.items() if sha not in problems}
            say(f"{len(images)} images; predicting {len(missing)} (the rest are cached)")
            fresh, failed = _predict(model, missing, batch_size, on_predicted)
            with PredictionCache(journal.root) as cache:
                cache.store(model_id, list(fresh.items()))
            problems.update(failed)
            probabilities = {
                sha: np.asarray(json.loads(text), dtype=np.float64)
                for sha, text in {**cached, **fresh}.items()
            }
        except BaseException:
            journal.close()
            raise
        thumbnails = Thumbnails(journal.root / CACHE_DIR / "thumbnails", thumbnail_px)
        return cls(
            journal, class_names, splits, probabilities, problems, thumbnails,
            bundle_name=Path(bundle).name,
        )  # fmt: skip

    def close(self) -> None:
        self.journal.close()

    def view(self, image: CleanImage, decisions: Mapping[int, str] | None = None) -> ImageView:
        """The page's view of ``image``; ``decisions`` (from :meth:`Journal.decisions`) saves
        a query per image when viewing many."""
        if decisions is None:
            decisions = self.journal.decisions(image.id)
        decision = decisions.get(image.id, "")
        split = self.splits.get(image.id, "")
        probabilities = self.probabilities.get(image.sha256)
        if probabilities is None or len(probabilities) != len(self.class_names):
            problem = self.problems.get(image.sha256, "not predicted: restart ursa clean")
            return ImageView(image, split, None, None, None, None, problem, decision)
        if image.label not in self.class_names:  # e.g. a deleted image of a class since removed
            problem = f"class {image.label!r} is not one this model knows"
            return ImageView(image, split, None, None, None, None, problem, decision)
        top = int(probabilities.argmax())
        own = float(probabilities[self.class_names.index(image.label)])
        return ImageView(
            image, split, self.class_names[top], float(probabilities[top]), own,
            -math.log(max(own, 1e-12)), "", decision,
        )  # fmt: skip

    def listing(
        self, *, label: str, split: str, state: ImageState, offset: int, limit: int
    ) -> tuple[int, list[ImageView]]:
        """``(total, one page)`` of the images of ``label`` (or ``all``) in ``split``,
        highest loss first."""
        if label != "all" and label not in self.class_names:
            raise DataError(f"there is no class {label!r}: use all or one of "
                            f"{', '.join(self.class_names)}")  # fmt: skip
        if split not in SPLITS:
            raise DataError(f"split {split!r}: use all, train or valid")
        decisions = self.journal.decisions()
        views = [
            self.view(image, decisions)
            for image in self.journal.images(states=(state,))
            if label in ("all", image.label)
            and split in ("all", self.splits.get(image.id, ""))
        ]  # fmt: skip
        views.sort(key=lambda view: view.sort_key)
        return len(views), views[offset : offset + limit]

    def counts(self) -> dict[str, int]:
        """Images in the dataset per class."""
        counts = dict.fromkeys(self.class_names, 0)
        for image in self.journal.images(states=("active",)):
            counts[image.label] = counts.get(image.label, 0) + 1
        return counts

    def thumbnail(self, image_id: int) -> bytes:
        """The image's thumbnail; :class:`DataError` when its row leads outside the folder.

        The cache is used only while it is inside the dataset folder: a ``.ursa-cache``
        that links elsewhere is neither read nor written (thumbnails are made each time).
        """
        image = self.journal.image(image_id)
        source = self.journal.file(image)
        cache = is_within(self.thumbnails.path_for(image.sha256), self.journal.root)
        if not cache and not self._warned_cache:
            self._warned_cache = True
            log.warning(
                "%s leads outside %s through a symlink: thumbnails are not cached; remove the "
                "link to cache them", self.thumbnails.folder, self.journal.root,
            )  # fmt: skip
        return self.thumbnails.get(source, image.sha256, cache=cache)


def _check_classes(journal: Journal, images: list[CleanImage], class_names: list[str]) -> None:
    unknown = sorted({i.label for i in images if i.state == "active"} - set(class_names))
    if unknown:
        raise DataError(
            f"{journal.root} has classes the model does not know: {', '.join(unknown)} (the "
            f"model knows {', '.join(class_names)}); clean it with a model trained on these "
            f"classes, or move those folders out"
        )


def _splits(
    journal: Journal, images: list[CleanImage], model: BundleModel
) -> tuple[dict[int, str], dict[str, str]]:
    """Split the folder as the bundle's training did (its recorded labelling, valid_pct and
    seed); ``({id: split}, {sha256: why unreadable})``."""
    from ursa.data.as_trained import data_as_trained, recorded_spec

    spec = recorded_spec(model.config)
    if spec.labels != "folder":
        raise DataError(
            f"{model.bundle.path} was trained with labels from a {spec.labels}, but ursa clean "
            f"relabels by moving files between class folders: it cleans folder-labelled data only"
        )
    data = data_as_trained(model.config, journal.root)
    by_path = {image.path: image for image in images}
    splits: dict[int, str] = {}
    for items, name in ((data.train_items, "train"), (data.valid_items, "valid")):
        for item in items:
            image = by_path.get(item.path.relative_to(data.root).as_posix())
            if image is not None:
                splits[image.id] = name
    problems: dict[str, str] = {}
    for error in data.skipped:
        path = Path(error.source).resolve()
        if journal.root in path.parents:
            image = by_path.get(path.relative_to(journal.root).as_posix())
            if image is not None:
                problems[image.sha256] = f"not a readable image: {error.reason}"
    return splits, problems


def _model_id(bundle: Path, backend: str) -> str:
    return f"{sha256_file(bundle)[:32]}:{backend}"


def _predict(
    model: BundleModel,
    files: dict[str, Path],
    batch_size: int,
    on_predicted: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """``({sha256: JSON probabilities}, {sha256: why not})`` for ``files`` (by sha256);
    ``on_predicted(done, total)`` after each batch."""
    fresh: dict[str, str] = {}
    failed: dict[str, str] = {}
    shas = list(files)
    for start in range(0, len(shas), batch_size):
        chunk = shas[start : start + batch_size]
        try:
            predictions = model.predict_batch([files[sha] for sha in chunk], batch_size)
        except ImageError:  # one bad file in the batch: go one by one to find it
            predictions = []
            for sha in chunk:
                try:
                    predictions.append(model.predict(files[sha]))
                except ImageError as error:
                    failed[sha] = f"not a readable image: {error.reason}"
            chunk = [sha for sha in chunk if sha not in failed]
        for sha, prediction in zip(chunk, predictions, strict=True):
            row = [float(prediction.probabilities[name]) for name in model.class_names]
            fresh[sha] = json.dumps(row)
        if on_predicted is not None:
            on_predicted(min(start + batch_size, len(shas)), len(shas))
    return fresh, failed
