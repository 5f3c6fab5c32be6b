"""The ``.ursa`` model bundle: one zip that loading never executes. Torch-free.

Members:

* ``config.json`` — schema version, architecture, class names, preprocessing
  (input size, resize method, interpolation, mean/std), training summary,
  dataset fingerprint;
* ``model.safetensors`` — the weights (no pickle anywhere);
* ``metrics.json`` — per-epoch history and final validation metrics;
* optional ``model.onnx`` / ``model.int8.onnx`` added by export.

Writes are atomic: the zip is written to a temporary file beside the target
and renamed over it only when complete.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ursa.core.atomic import atomic_file
from ursa.core.errors import BundleError, ConfigError
from ursa.core.preprocess import PreprocessConfig
from ursa.core.safepaths import class_name_problem

if TYPE_CHECKING:
    from ursa.data.core import DataSettings

SCHEMA_VERSION = 2
#: Versions this ursa reads: 1 (before the training config was recorded whole) and 2.
READABLE_VERSIONS = (1, 2)
FORMAT_NAME = "ursa-bundle"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
METRICS_NAME = "metrics.json"
#: The ONNX models `ursa export --onnx` / `--int8` add, and their tensor names.
ONNX_NAME = "model.onnx"
INT8_NAME = "model.int8.onnx"
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
REQUIRED_MEMBERS = (CONFIG_NAME, WEIGHTS_NAME, METRICS_NAME)
#: A config.json larger than this is not one of ours.
_MAX_JSON_BYTES = 16 * 1024 * 1024
#: More classes than this is not a model anyone trained with ursa.
MAX_CLASSES = 100_000
#: ursa's own config.json and metrics.json nest 4 deep; code that walks them (JSON
#: encoders, templates) recurses, so a hostile file nested 900 deep must stop here.
MAX_JSON_DEPTH = 32


@dataclass(frozen=True)
class TrainingRecord:
    """The bundle's ``training`` record, typed: what every reader of it needs, with the
    defaults for a record that lacks a field in one place.

    ``config`` is the run's whole :class:`ursa.train.config.TrainConfig` as written by
    :meth:`~ursa.train.config.TrainConfig.to_dict` (schema 2; None in schema-1 bundles);
    ``data`` the data spec (how labels and the split were made); ``fits`` the schedule of
    each fit as run; the counts (images trained on, validated on, skipped) and the
    environment (device, processes, versions, time). The raw dict
    (:attr:`BundleConfig.training`) keeps every field as written.
    """

    seed: int = 42
    valid_pct: float = 0.2
    stratify: bool = True
    batch_size: int = 64
    epochs: int = 0
    pretrained: bool | None = None
    data: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    fits: tuple[dict[str, Any], ...] = ()
    head_fit: dict[str, Any] | None = None
    warnings: tuple[str, ...] = ()
    kept: str | None = None
    """Which weights the model is: "the head fit", "epoch N", or "the average of the head
    fit and epoch N" (None in bundles from before it was recorded)."""
    train_images: int | None = None
    valid_images: int | None = None
    skipped_files: int | None = None
    train_seconds: float | None = None
    device: str | None = None
    processes: int | None = None
    torch_version: str | None = None
    python_version: str | None = None

    @classmethod
    def from_dict(cls, training: Mapping[str, Any]) -> TrainingRecord:
        """Read ``training``; a field of the wrong type is a :class:`BundleError`."""

        def typed(key: str, kind: type | tuple[type, ...], default: Any) -> Any:
            value = training.get(key, default)
            if value is None:
                return default
            kinds = kind if isinstance(kind, tuple) else (kind,)
            if isinstance(value, bool) and bool not in kinds:  # True is an int, not a number
                raise BundleError(f"the bundle's training record has {key}={value!r}")
            if not isinstance(value, kind):
                raise BundleError(
                    f"the bundle's training record has {key}={value!r}; retrain, or give "
                    f"the split yourself"
                )
            return value

        fits = typed("fits", list, [])
        warnings = typed("warnings", list, [])
        return cls(
            seed=int(typed("seed", int, 42)),
            valid_pct=float(typed("valid_pct", (int, float), 0.2)),
            stratify=bool(typed("stratify", bool, True)),
            batch_size=int(typed("batch_size", int, 64)),
            epochs=int(typed("epochs", int, 0)),
            pretrained=typed("pretrained", bool, None),
            data=typed("data", dict, None),
            config=typed("config", dict, None),
            fits=tuple(f for f in fits if isinstance(f, dict)),
            head_fit=typed("head_fit", dict, None),
            warnings=tuple(str(w) for w in warnings),
            kept=typed("kept", str, None),
            train_images=typed("train_images", int, None),
            valid_images=typed("valid_images", int, None),
            skipped_files=typed("skipped_files", int, None),
            train_seconds=_float_or_none(typed("train_seconds", (int, float), None)),
            device=typed("device", str, None),
            processes=typed("processes", int, None),
            torch_version=typed("torch_version", str, None),
            python_version=typed("python_version", str, None),
        )


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class BundleConfig:
    """What ``config.json`` holds: everything needed to rebuild the model and its input."""

    arch: str
    """ursa architecture name (``efficientnet_lite0``, or any timm name)."""
    timm_name: str
    """The timm architecture the weights belong to."""
    class_names: list[str]
    """Output classes, in the order of the model's logits."""
    preprocess: PreprocessConfig
    """How an image becomes the model's input."""
    training: dict[str, Any] = field(default_factory=dict)
    """The training record as written (JSON); read it typed through :attr:`record`."""
    dataset_fingerprint: str = ""
    """sha256 over the training and validation files and labels."""
    ursa_version: str = ""
    """The ursa version that wrote the bundle."""
    schema_version: int = SCHEMA_VERSION
    """Version of this layout; loading refuses versions it does not know."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "schema_version": self.schema_version,
            "ursa_version": self.ursa_version,
            "arch": self.arch,
            "timm_name": self.timm_name,
            "class_names": list(self.class_names),
            "preprocess": self.preprocess.to_dict(),
            "training": self.training,
            "dataset_fingerprint": self.dataset_fingerprint,
        }

    @property
    def record(self) -> TrainingRecord:
        """The training record, typed, with the defaults of records that lack a field."""
        return TrainingRecord.from_dict(self.training)

    def data_settings(self) -> DataSettings:
        """The data settings training used (split, size, resize, input kind), for
        rebuilding the same split (:func:`ursa.data.as_trained.data_as_trained`)."""
        record = self.record
        return {
            "valid_pct": record.valid_pct,
            "seed": record.seed,
            "stratify": record.stratify,
            "batch_size": record.batch_size,
            "size": self.preprocess.size,
            "resize": self.preprocess.resize,
            "pad_mode": self.preprocess.pad_mode,
            "input": self.preprocess.input,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, source: str) -> BundleConfig:
        """Check ``values`` against the schema; the error names every problem."""
        if values.get("format") != FORMAT_NAME:
            raise BundleError(f"{source}: config.json is not an ursa bundle config (no format tag)")
        version = values.get("schema_version")
        if type(version) is not int or version not in READABLE_VERSIONS:  # True == 1: no version
            raise BundleError(
                f"{source}: bundle schema version {version!r}, this ursa reads versions "
                f"{', '.join(map(str, READABLE_VERSIONS))}; use the ursa version that wrote it "
                f"or re-export the model"
            )
        problems = []
        for key, kind in (
            ("arch", str),
            ("timm_name", str),
            ("class_names", list),
            ("preprocess", dict),
            ("training", dict),
        ):
            if not isinstance(values.get(key), kind):
                problems.append(f"{key} missing or not a {kind.__name__}")
        names = values.get("class_names")
        if isinstance(names, list):
            if (
                len(names) < 2
                or not all(isinstance(n, str) for n in names)
                or len(set(names)) != len(names)
            ):
                problems.append("class_names must be 2 or more distinct strings")
            elif len(names) > MAX_CLASSES:
                problems.append(f"{len(names):,} class names, more than {MAX_CLASSES:,}")
            else:
                # A class name becomes a folder name (ursa clean moves images into it).
                bad = [(n, class_name_problem(n)) for n in names if class_name_problem(n)]
                problems += [f"class name {n!r} {problem}" for n, problem in bad[:3]]
        preprocess = None
        if isinstance(values.get("preprocess"), dict):
            try:
                preprocess = PreprocessConfig.from_dict(values["preprocess"])
            except (KeyError, TypeError, ValueError, AttributeError, ConfigError) as error:
                problems.append("preprocess: " + " ".join(str(error).split()))
        if problems or preprocess is None:
            raise BundleError(f"{source}: bad config.json: " + "; ".join(problems))
        return cls(
            arch=values["arch"],
            timm_name=values["timm_name"],
            class_names=list(values["class_names"]),
            preprocess=preprocess,
            training=dict(values["training"]),
            dataset_fingerprint=str(values.get("dataset_fingerprint", "")),
            ursa_version=str(values.get("ursa_version", "")),
            schema_version=int(version),
        )


@dataclass(frozen=True)
class Bundle:
    """A bundle read from disk: its config, metrics and the names of its members."""

    path: Path
    config: BundleConfig
    metrics: dict[str, Any]
    members: tuple[str, ...]

    def read(self, name: str) -> bytes:
        """The bytes of one member (e.g. ``model.safetensors``)."""
        if name not in self.members:
            raise BundleError(f"{self.path}: the bundle has no {name}")
        with zipfile.ZipFile(self.path) as archive:
            return archive.read(name)


def write_bundle(
    path: str | Path,
    config: BundleConfig,
    weights: bytes,
    metrics: Mapping[str, Any],
    extra: Mapping[str, bytes] | None = None,
) -> Path:
    """Write a bundle atomically: a temporary zip beside ``path``, renamed when complete."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    members: dict[str, bytes] = {
        CONFIG_NAME: json.dumps(config.to_dict(), indent=2).encode(),
        WEIGHTS_NAME: weights,
        METRICS_NAME: json.dumps(dict(metrics), indent=2).encode(),
    }
    for name, data in (extra or {}).items():
        if name in REQUIRED_MEMBERS or "/" in name or name.startswith("."):
            raise BundleError(f"cannot add {name!r} to a bundle: reserved or unsafe member name")
        members[name] = data
    with atomic_file(target) as stream, zipfile.ZipFile(stream, "w") as archive:
        for name, data in members.items():
            # Weights barely compress; store them so reading needs no inflate.
            method = (
                zipfile.ZIP_STORED
                if name.endswith((".safetensors", ".onnx"))
                else zipfile.ZIP_DEFLATED
            )
            archive.writestr(name, data, compress_type=method)
    return target


def read_bundle(path: str | Path) -> Bundle:
    """Open and check a bundle; :class:`BundleError` names what is wrong with a bad file."""
    source = Path(path)
    if not source.is_file():
        raise BundleError(f"{source}: no such bundle file")
    if not zipfile.is_zipfile(source):
        raise BundleError(
            f"{source}: not an ursa bundle (not a zip file); bundles are written by "
            f"`ursa train -o FILE.ursa` or Learner.export()"
        )
    try:
        with zipfile.ZipFile(source) as archive:
            names = tuple(archive.namelist())
            missing = [name for name in REQUIRED_MEMBERS if name not in names]
            if missing:
                raise BundleError(
                    f"{source}: not a complete ursa bundle, missing {', '.join(missing)}"
                )
            config_raw = _read_json(archive, CONFIG_NAME, source)
            metrics_raw = _read_json(archive, METRICS_NAME, source)
            bad = archive.testzip()
            if bad is not None:
                raise BundleError(f"{source}: member {bad} is corrupt (CRC mismatch)")
    except zipfile.BadZipFile as error:
        raise BundleError(f"{source}: corrupt zip file ({error})") from None
    if not isinstance(metrics_raw, dict):
        raise BundleError(f"{source}: metrics.json is not a JSON object")
    if not isinstance(config_raw, dict):
        raise BundleError(f"{source}: config.json is not a JSON object")
    config = BundleConfig.from_dict(config_raw, source=str(source))
    return Bundle(path=source, config=config, metrics=metrics_raw, members=names)


def _read_json(archive: zipfile.ZipFile, name: str, source: Path) -> Any:
    info = archive.getinfo(name)
    if info.file_size > _MAX_JSON_BYTES:
        raise BundleError(f"{source}: {name} is {info.file_size:,} bytes, too large to be ours")
    try:
        value = json.loads(archive.read(name))
    except (ValueError, UnicodeDecodeError) as error:
        raise BundleError(f"{source}: {name} is not valid JSON ({error})") from None
    except RecursionError:
        raise BundleError(f"{source}: {name} is nested too deeply to be ours") from None
    if _nesting(value) > MAX_JSON_DEPTH:
        raise BundleError(f"{source}: {name} is nested more than {MAX_JSON_DEPTH} deep, not ours")
    return value


def _nesting(value: Any) -> int:
    """How deeply lists and objects nest in a parsed JSON value (without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth <= MAX_JSON_DEPTH:
                children = item.values() if isinstance(item, dict) else item
                stack.extend((child, depth + 1) for child in children)
    return deepest
