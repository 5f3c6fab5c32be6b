from __future__ import annotations

from pathlib import Path

import pytest

from tests.export.bundles import shared_tiny_bundle


@pytest.fixture(scope="session")
def tiny_served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(bundle with model.onnx and model.int8.onnx, its data folder); do not modify."""
    return shared_tiny_bundle(tmp_path_factory)
