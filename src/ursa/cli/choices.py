"""The value sets of the commands' options, as ``Literal`` types typer shows and checks.

``ursa serve --help`` reads ``--provider <cpu|cuda|tensorrt>`` and ``--provider gpu`` is
refused with the choices, before the command runs. Where the library names a set as a
type (``ResizeMethod``) it is used as it is; the others are spelled here and
``tests/cli/test_help.py`` checks each against the library's own list, so the two never
drift apart. Torch-free.
"""

from __future__ import annotations

from typing import Literal

from ursa.core.preprocess import PadMode, ResizeMethod
from ursa.data.labels import LabelMethod
from ursa.gather.search import LicenseFilter

#: ``ursa export --int8-weights``: int8 weight bits (auto: ``ursa.core.cpu.weight_bits_for``).
Int8Weights = Literal["auto", "7", "8"]
#: ``ursa serve --provider``: ONNX Runtime's execution providers (``ursa.core.runtime.PROVIDERS``).
Provider = Literal["cpu", "cuda", "tensorrt"]
#: ``ursa gather --provider``: the image searches (``ursa.gather.search.PROVIDERS``).
SearchProvider = Literal["openverse", "ddg", "bing", "google"]
#: ``ursa gather --license``.
License = LicenseFilter
#: ``ursa sources --format``.
SourcesFormat = Literal["csv", "json"]
#: ``ursa show --augment``: the presets of ``ursa.data.augment.AUGMENT_PRESETS``.
Augment = Literal["default", "no_flip", "none"]
#: ``ursa show --split``.
ShowSplit = Literal["train", "valid"]
#: ``ursa interpret --split`` (``ursa.interpret.interpretation.SPLITS``).
InterpretSplit = Literal["valid", "train", "all"]
#: ``ursa export --web DIR --precision`` (``ursa.export.web.PRECISIONS``).
WebPrecision = Literal["auto", "fp32", "int8"]
#: ``--input``: what the files are (``ursa.core.sources.source_from_dict``'s kinds).
InputKind = Literal["image", "audio", "bytes"]

__all__ = [
    "Augment",
    "InputKind",
    "InterpretSplit",
    "LabelMethod",
    "License",
    "PadMode",
    "Provider",
    "ResizeMethod",
    "SearchProvider",
    "ShowSplit",
    "SourcesFormat",
    "WebPrecision",
]
