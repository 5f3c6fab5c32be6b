"""Running a bundle with PyTorch in a notebook (timm's import) warns no more than training does."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import TINY_ARCH
from tests.notebook.conftest import errors_of, execute, notebook_of, stderr_of


def test_building_a_model_outside_a_learner_writes_nothing_to_stderr(tmp_path: Path) -> None:
    """``ursa.load`` of a bundle without model.onnx and ``Interpretation.from_bundle`` build
    the network through ``ursa.models.backbones`` without a Learner; timm's import there
    loads ``tqdm.auto``, which warned "IProgress not found" under the cell."""
    run = execute(
        notebook_of(
            "from ursa.models.backbones import create_model",
            f"network = create_model({TINY_ARCH!r}, 3, pretrained=False)",
        ),
        tmp_path,
    )
    assert errors_of(run) == []
    assert stderr_of(run) == []
