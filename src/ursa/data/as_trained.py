"""The data a bundle was trained on, rebuilt: one function for interpret, export's
calibration, clean and the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ursa.data.labels import DataSpec

if TYPE_CHECKING:
    from ursa.core.bundle import BundleConfig
    from ursa.data.core import ImageData


def recorded_spec(config: BundleConfig) -> DataSpec:
    """How the bundle's training labelled and split its data (folder, regex or table)."""
    return DataSpec.from_dict(config.record.data)


def data_as_trained(config: BundleConfig, path: str | Path, **overrides: Any) -> ImageData:
    """The images in ``path`` labelled, split (same ``valid_pct``, seed and
    stratification, so the same validation images) and sized as the bundle's training
    did; ``overrides`` change data settings (e.g. ``valid_pct``, ``batch_size``)."""
    from ursa.data.core import ImageData

    settings: dict[str, Any] = {**config.data_settings(), **overrides}
    return ImageData.from_spec(recorded_spec(config), Path(path), **settings)
