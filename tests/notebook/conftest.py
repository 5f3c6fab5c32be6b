"""Running notebooks in a real Jupyter kernel (nbclient + ipykernel), and a small trained model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TINY_ARCH, make_class_folder
from ursa.data.core import ImageData
from ursa.train import Learner, SilentLogger

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")


@dataclass
class Run:
    """An executed notebook: its cells with outputs, and every display update sent."""

    cells: list[Any]
    updates: list[dict[str, Any]] = field(default_factory=list)
    """``update_display_data`` contents in the order the kernel sent them."""

    def outputs(self, index: int) -> list[dict[str, Any]]:
        return list(self.cells[index].get("outputs", []))

    def code_cells(self) -> list[tuple[int, Any]]:
        return [(i, c) for i, c in enumerate(self.cells) if c.cell_type == "code"]


def execute(notebook: Any, folder: Path, *, allow_errors: bool = False, timeout: int = 600) -> Run:
    """Execute ``notebook`` in a fresh python3 kernel with ``folder`` as its working folder,
    recording display updates (nbclient applies them in place, so the final notebook alone
    cannot tell whether a bar moved). A failing cell raises ``CellExecutionError`` unless
    ``allow_errors`` (then its error is one of its outputs and later cells still run)."""
    updates: list[dict[str, Any]] = []

    class RecordingClient(nbclient.NotebookClient):  # type: ignore[misc, name-defined]
        def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
            if msg.get("msg_type") == "update_display_data":
                updates.append(msg["content"])
            return super().process_message(msg, cell, cell_index)

    client = RecordingClient(
        notebook, timeout=timeout, kernel_name="python3", allow_errors=allow_errors,
        resources={"metadata": {"path": str(folder)}},
    )  # fmt: skip
    client.execute()
    return Run(cells=list(notebook.cells), updates=updates)


def notebook_of(*sources: str) -> Any:
    """A notebook of code cells."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    return notebook


def errors_of(run: Run) -> list[str]:
    """The errors cells raised, as ``Name: message``."""
    return [
        f"{output['ename']}: {output['evalue']}"
        for _, cell in run.code_cells()
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]


def stderr_of(run: Run) -> list[str]:
    """Everything any cell wrote to stderr (warnings land there)."""
    return [
        output["text"]
        for _, cell in run.code_cells()
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream" and output.get("name") == "stderr"
    ]


@dataclass(frozen=True)
class Trained:
    data: ImageData
    learner: Learner


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A tiny model, its head fitted and one unfrozen epoch (seconds on a CPU)."""
    folder = make_class_folder(tmp_path_factory.mktemp("notebook") / "colours", per_class=20)
    # No decode cache: a module fixture runs before the per-test cache folder is set.
    data = ImageData.from_folder(folder, size=32, batch_size=8, num_workers=0, seed=0, cache=False)
    learner = Learner(data, arch=TINY_ARCH, pretrained=False, logger=SilentLogger())
    learner.fine_tune(1, base_lr=2e-2)
    return Trained(data, learner)
