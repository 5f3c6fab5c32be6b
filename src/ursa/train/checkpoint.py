"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint is one zip file, written atomically (a temporary file beside the
target, renamed when complete), holding:

* ``model.safetensors``: the weights;
* ``best.safetensors``: the best epoch's weights, when keep-best is on;
* ``rng.safetensors``: torch's CPU (and CUDA) generator states and the training
  loader's shuffling generator;
* ``optimizer.pt``: optimizer and scheduler state dicts (nested dicts of tensors and
  numbers; PyTorch has no other format for them). Loaded with ``weights_only=True``,
  which refuses anything but tensors and plain containers: no code is unpickled;
* ``state.json``: epoch, fit, history, the fits' settings, the best-metric tracker,
  Python's and numpy's generator states.
"""

from __future__ import annotations

import io
import json
import random
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from ursa.core.atomic import atomic_file
from ursa.core.errors import UrsaError

SCHEMA = 1
LAST = "last.ckpt"


class CheckpointError(UrsaError):
    """A checkpoint that is missing, corrupt, or from a different model or run."""


@dataclass
class Checkpoint:
    """A checkpoint in memory."""

    state: dict[str, Any]
    """The JSON part: fit_index, epochs_done, history, fits, tracker, arch, class_names, ..."""
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: dict[str, torch.Tensor]
    best: dict[str, torch.Tensor] | None = None


def capture_rng(
    generator: torch.Generator | None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, JSON) snapshot of every random generator training draws from."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{index}"] = state
    if generator is not None:
        tensors["loader"] = generator.get_state()
    name, keys, position, has_gauss, gauss = np.random.get_state()
    tensors["numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, python_state, python_gauss = random.getstate()
    json_part = {
        "numpy": [name, int(position), int(has_gauss), float(gauss)],
        "python": [version, list(python_state), python_gauss],
    }
    return tensors, json_part


def restore_rng(
    tensors: dict[str, torch.Tensor], json_part: dict[str, Any], generator: torch.Generator | None
) -> None:
    """Put every generator back as :func:`capture_rng` found it."""
    torch.set_rng_state(tensors["torch"])
    if torch.cuda.is_available():
        cuda = [tensors[k] for k in sorted(tensors) if k.startswith("cuda.")]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
    if generator is not None and "loader" in tensors:
        generator.set_state(tensors["loader"])
    name, position, has_gauss, gauss = json_part["numpy"]
    keys = tensors["numpy"].numpy().astype(np.uint32)
    np.random.set_state((name, keys, position, has_gauss, gauss))
    version, python_state, python_gauss = json_part["python"]
    random.setstate((version, tuple(python_state), python_gauss))


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` to ``path`` atomically; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = io.BytesIO()
    torch.save({"optimizer": checkpoint.optimizer, "scheduler": checkpoint.scheduler}, payload)
    state = {"schema": SCHEMA, **checkpoint.state}
    with atomic_file(path) as stream, zipfile.ZipFile(stream, "w") as archive:
        archive.writestr("state.json", json.dumps(state, indent=1, allow_nan=True))
        archive.writestr("model.safetensors", save_tensors(_contiguous(checkpoint.model)))
        archive.writestr("rng.safetensors", save_tensors(_contiguous(checkpoint.rng)))
        archive.writestr("optimizer.pt", payload.getvalue())
        if checkpoint.best is not None:
            archive.writestr("best.safetensors", save_tensors(_contiguous(checkpoint.best)))
    return path


def resolve(path: str | Path) -> Path:
    """The checkpoint file for ``path``: the file itself, ``DIR/last.ckpt`` for a run folder,
    or ``runs/last`` spelled without its suffix."""
    path = Path(path)
    for candidate in (path, path / LAST, path.with_name(path.name + ".ckpt")):
        if candidate.is_file():
            return candidate
    raise CheckpointError(
        f"{path}: no checkpoint there; give a .ckpt file or the --checkpoint-dir of a run "
        f"(which holds {LAST})"
    )


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (no code is ever unpickled)."""
    file = resolve(path)
    try:
        with zipfile.ZipFile(file) as archive:
            state = json.loads(archive.read("state.json"))
            model = load_tensors(archive.read("model.safetensors"))
            rng = load_tensors(archive.read("rng.safetensors"))
            payload = torch.load(
                io.BytesIO(archive.read("optimizer.pt")), map_location="cpu", weights_only=True
            )
            names = set(archive.namelist())
            best = (
                load_tensors(archive.read("best.safetensors"))
                if "best.safetensors" in names
                else None
            )
    except (zipfile.BadZipFile, KeyError, ValueError, RuntimeError, OSError) as error:
        raise CheckpointError(f"{file}: not a readable ursa checkpoint ({error})") from error
    if state.get("schema") != SCHEMA:
        raise CheckpointError(
            f"{file}: checkpoint schema {state.get('schema')!r}, this ursa reads {SCHEMA}; "
            f"resume with the ursa version that wrote it"
        )
    return Checkpoint(state, model, payload["optimizer"], payload["scheduler"], rng, best)


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors wants dense, CPU tensors; channels-last weights are made contiguous here
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
