"""One typed training config: what a run is, as a tree of frozen dataclasses.

:class:`TrainConfig` groups every setting that changes the trained weights: the model,
the loss, the optimiser, the fit options and the run's seed. ``Learner`` takes it
(``Learner(data, config=...)``, or the same settings by name: ``Learner(data,
label_smoothing=0.1)``), ``ursa train`` generates its flags from it
(:func:`ursa.cli.train_options.train_options`), checkpoints store it whole and
``--resume`` compares it whole (:meth:`TrainConfig.differences`), and the bundle records it
whole (``training["config"]``).

What is not here changes how a run goes, not what it computes: the logger, the device,
the checkpoint folder. The schedule (epochs, rates) is the argument of ``fine_tune`` /
``fit_one_cycle`` and is recorded per fit (``training["fits"]``).

Setting names are unique across the groups, so a setting is named by its field alone:
``config.replace(label_smoothing=0.1)``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args

from ursa.core.errors import ConfigError

Precision = Literal["auto", "fp32", "bf16", "fp16"]
Monitor = Literal["valid_loss", "error_rate", "accuracy", "macro_f1"]
Balance = Literal["none", "weights", "sampler"]


def _help(text: str, flag: str | bool = True) -> dict[str, Any]:
    """Field metadata: the help line of its ``ursa train`` flag; ``flag``: the flag's name
    when it is not the field's (``--early-stop`` for ``patience``), False for no flag."""
    return {"help": text, "flag": flag}


@dataclass(frozen=True)
class ModelSettings:
    """The network: which backbone, from which weights, how regularised."""

    arch: str = field(
        default="efficientnet_lite0", metadata=_help("efficientnet_lite0/1/2 or a timm name.")
    )
    pretrained: bool = field(default=True, metadata=_help("Start from pretrained weights."))
    weights: str | None = field(default=None, metadata=_help("Local pretrained weights file."))
    drop_rate: float = field(default=0.2, metadata=_help("Dropout before the head.", flag=False))
    train_bn: bool = field(
        default=True, metadata=_help("Train batch-norm layers while the body is frozen (fastai).")
    )
    channels_last: bool = field(
        default=True,
        metadata=_help("NHWC batches (faster convolutions on CPU and GPU).", flag=False),
    )

    def __post_init__(self) -> None:
        if not self.arch.strip():
            raise ConfigError("arch='': name a backbone such as efficientnet_lite0")
        if not 0.0 <= self.drop_rate < 1.0:
            raise ConfigError(f"drop_rate={self.drop_rate}: use a probability from 0 up to 1")


@dataclass(frozen=True)
class LossSettings:
    """The loss: cross-entropy, optionally smoothed, optionally balanced."""

    label_smoothing: float = field(default=0.0, metadata=_help("Label smoothing, e.g. 0.1."))
    balance: Balance = field(
        default="none", metadata=_help("Imbalanced classes: none, weights (loss) or sampler.")
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing={self.label_smoothing}: use 0 up to 1, such as 0.1")
        _check_choice("balance", self.balance, Balance)


@dataclass(frozen=True)
class OptimizerSettings:
    """AdamW's weight decay and how each step is taken."""

    weight_decay: float = field(default=0.01, metadata=_help("AdamW weight decay.", flag=False))
    accumulate: int = field(default=1, metadata=_help("Batches per optimizer step."))
    clip_norm: float | None = field(
        default=None, metadata=_help("Clip the gradient norm to this.", flag="--clip")
    )

    def __post_init__(self) -> None:
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ConfigError(f"weight_decay={self.weight_decay}: use 0 or more")
        if self.accumulate < 1:
            raise ConfigError(f"accumulate={self.accumulate}: use 1 or more batches per step")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ConfigError(f"clip_norm={self.clip_norm}: use a positive norm, or none")


@dataclass(frozen=True)
class FitSettings:
    """Arithmetic precision, early stopping and which weights the run ends with."""

    precision: Precision = field(
        default="auto",
        metadata=_help(
            "auto (bf16/fp16 on CUDA; on CPUs with bf16 instructions bf16 inference, and bf16 "
            "training steps from 64 images of 96 px a batch; else fp32), fp32, bf16, fp16."
        ),
    )
    monitor: Monitor = field(
        default="error_rate", metadata=_help("Metric for early stopping and keep-best.")
    )
    patience: int | None = field(
        default=None,
        metadata=_help("Stop after this many epochs without improvement.", flag="--early-stop"),
    )
    min_delta: float = field(
        default=0.0,
        metadata=_help("Smallest change of the monitored metric that counts.", flag=False),
    )
    keep_best: bool = field(
        default=False, metadata=_help("Each fit ends with its best validated weights.", flag=False)
    )
    keep_bn_stats: bool | None = field(
        default=None,
        metadata=_help(
            "Keep the pretrained batch-norm statistics (None: when the weights are pretrained).",
            flag=False,
        ),
    )

    def __post_init__(self) -> None:
        _check_choice("precision", self.precision, Precision)
        _check_choice("monitor", self.monitor, Monitor)
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"patience={self.patience}: use 1 or more epochs, or none")


@dataclass(frozen=True)
class RunSettings:
    """What makes a run repeatable."""

    seed: int | None = field(
        default=None, metadata=_help("Random seed (default: the data's).", flag=False)
    )


GROUPS = ("model", "loss", "optimizer", "fit", "run")


@dataclass(frozen=True)
class TrainConfig:
    """Every setting that changes what training computes (see the module's docstring)."""

    model: ModelSettings = field(default_factory=ModelSettings)
    loss: LossSettings = field(default_factory=LossSettings)
    optimizer: OptimizerSettings = field(default_factory=OptimizerSettings)
    fit: FitSettings = field(default_factory=FitSettings)
    run: RunSettings = field(default_factory=RunSettings)

    def flat(self) -> dict[str, Any]:
        """``{setting: value}`` over all groups."""
        return {f.name: getattr(getattr(self, g), f.name) for g, f in grouped_fields()}

    def replace(self, **settings: Any) -> TrainConfig:
        """A copy with the named settings changed. Every problem is named in one
        :class:`ConfigError`: an unknown name (with the known ones), a value of the wrong
        type, a value out of range."""
        groups: dict[str, dict[str, Any]] = {g: {} for g in GROUPS}
        owner = {f.name: g for g, f in grouped_fields()}
        problems = []
        for name, value in settings.items():
            if name not in owner:
                problems.append(
                    f"unknown training setting {name!r}; known: {', '.join(sorted(owner))}"
                )
                continue
            wrong = _type_problem(owner[name], name, value)
            if wrong:
                problems.append(wrong)  # and not passed on: the group's checks need the type
            else:
                groups[owner[name]][name] = value
        built = {}
        for group in GROUPS:
            try:
                built[group] = dataclasses.replace(getattr(self, group), **groups[group])
            except ConfigError as error:
                problems.append(str(error))
        if problems:
            raise ConfigError("; ".join(dict.fromkeys(problems)))
        return TrainConfig(**built)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The tree as JSON-ready dicts, by group."""
        return {g: dataclasses.asdict(getattr(self, g)) for g in GROUPS}

    @classmethod
    def from_dict(cls, values: object) -> TrainConfig:
        """The inverse of :meth:`to_dict`; settings it does not know (from a newer ursa) are
        a :class:`ConfigError`, missing ones take their defaults (from an older ursa)."""
        if not isinstance(values, dict):
            raise ConfigError(f"a training config is a JSON object, not {type(values).__name__}")
        flat: dict[str, Any] = {}
        owner = {f.name: g for g, f in grouped_fields()}
        for group, settings in values.items():
            if group not in GROUPS or not isinstance(settings, dict):
                raise ConfigError(f"training config: unknown group {group!r}")
            misplaced = [n for n in settings if n in owner and owner[n] != group]
            if misplaced:
                raise ConfigError(
                    f"training config: {', '.join(misplaced)} under {group!r}, not its group "
                    f"({', '.join(owner[n] for n in misplaced)})"
                )
            flat.update(settings)
        try:
            return cls().replace(**flat)
        except ConfigError as error:
            raise ConfigError(f"training config: {error}") from None

    def differences(self, other: TrainConfig) -> list[str]:
        """``"name: mine -> other's"`` for each setting that differs."""
        return differences(self.flat(), other.flat())


def differences(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """``"name: before -> after"`` for each key of ``after`` whose value differs (a key
    ``before`` lacks counts as None)."""
    return [f"{n}: {before.get(n)!r} -> {after[n]!r}" for n in after if before.get(n) != after[n]]


def grouped_fields() -> list[tuple[str, dataclasses.Field[Any]]]:
    """``(group, field)`` of every setting, in group order."""
    default = TrainConfig()
    return [(g, f) for g in GROUPS for f in fields(getattr(default, g))]


def setting_type(group: str, name: str) -> Any:
    """The annotated type of setting ``name`` of ``group`` (e.g. ``int | None``)."""
    return typing.get_type_hints(type(getattr(TrainConfig(), group)))[name]


def setting_fields() -> list[dataclasses.Field[Any]]:
    """Every setting's field (name, type, default, help), in group order."""
    return [f for _, f in grouped_fields()]


def _type_problem(group: str, name: str, value: object) -> str | None:
    """What is wrong with ``value``'s type for setting ``name`` (None: nothing). A bool is
    no number here, and an int is a float."""
    kind = setting_type(group, name)
    options = (
        typing.get_args(kind)
        if typing.get_origin(kind) in (typing.Union, types.UnionType)
        else (kind,)
    )
    for option in options:
        if option is type(None) and value is None:
            return None
        if typing.get_origin(option) is Literal:
            if value in typing.get_args(option):
                return None
            continue
        if option is bool:
            if isinstance(value, bool):
                return None
        elif option is float:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return None
        elif isinstance(option, type) and isinstance(value, option) and not isinstance(value, bool):
            return None
    allowed = " or ".join(
        ", ".join(map(repr, typing.get_args(o)))
        if typing.get_origin(o) is Literal
        else ("none" if o is type(None) else getattr(o, "__name__", str(o)))
        for o in options
    )
    return f"{name}={value!r}: use {allowed}"


def _check_choice(name: str, value: object, choices: Any) -> None:
    allowed = get_args(choices)
    if value not in allowed:
        raise ConfigError(f"{name}={value!r}: use {', '.join(allowed)}")
