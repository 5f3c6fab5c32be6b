"""Checks every command makes before its slow part: where it will write, what it reads.

A mistake in a path costs a second here instead of a training run: ``ursa train -o DIR``
used to train to the end and then fail to write the bundle. Each check returns the path
to use, or raises a :class:`~ursa.core.errors.ConfigError` / ``DataError`` that says what
to pass instead. Torch-free, like the rest of the CLI glue. (The port check is
:func:`ursa.serve.app.check_port`, shared by ``ursa serve`` and ``ursa clean``.)
"""

from __future__ import annotations

import os
from pathlib import Path

from ursa.core.errors import ConfigError, DataError

#: What a bundle's name ends in (the commands and the docs call bundles NAME.ursa).
BUNDLE_SUFFIX = ".ursa"


def default_bundle(data: Path) -> Path:
    """``DATA.ursa`` beside the data folder ``data`` (``bears/`` → ``bears.ursa``)."""
    folder = data if data.name not in ("", ".", "..") else data.resolve()
    if not folder.name:  # the file system's root
        raise ConfigError(f"{data} has no name to call the bundle by: pass -o NAME.ursa")
    return folder.with_name(folder.name + BUNDLE_SUFFIX)


def bundle_output(output: Path | None, data: Path) -> tuple[Path, str | None]:
    """Where ``ursa train DATA [-o OUTPUT]`` writes its bundle, checked before training.

    Returns (the bundle's path, a line saying how it was chosen, or None when it is
    ``OUTPUT`` as given). No ``-o``: ``DATA.ursa`` beside the folder. An existing folder:
    ``OUTPUT/DATA.ursa`` inside it, as ``cp`` puts a file into a folder. A name without a
    suffix gets ``.ursa``; another suffix is refused (a bundle is not a ``.pt`` or
    ``.onnx`` file, and ursa reads it by its suffix). Missing folders on the way are
    created when the bundle is written; a file in their place, or a folder this user
    cannot write in, is refused now.
    """
    if output is None:
        target = default_bundle(data)
        how = f"no -o given: the bundle goes beside the data, as {target}"
    elif output.is_dir():
        target = output / default_bundle(data).name
        how = f"{output} is a folder: the bundle goes into it, as {target}"
    elif output.suffix == "":
        target = output.with_name(output.name + BUNDLE_SUFFIX)
        how = f"bundles end in {BUNDLE_SUFFIX}: writing {target}"
    elif output.suffix.lower() != BUNDLE_SUFFIX:
        raise ConfigError(
            f"-o {output}: a bundle is a {BUNDLE_SUFFIX} file (config, safetensors weights and "
            f"metrics in one zip; `ursa export` adds ONNX to it), not {output.suffix}: name it "
            f"{output.with_suffix(BUNDLE_SUFFIX)}"
        )
    else:
        target, how = output, None
    if target.is_dir():
        raise ConfigError(f"-o {target} is a folder: give a file name, e.g. {target}/model.ursa")
    writable_place(target, "-o")
    return target, how


def output_file(path: Path, flag: str) -> Path:
    """A file a command will write (``--out rows.csv``, ``--plot lr.png``): not a folder,
    and its folder can be made and written in."""
    if path.is_dir():
        raise ConfigError(
            f"{flag} {path} is a folder: give a file name, e.g. {path / _example(flag)}"
        )
    writable_place(path, flag)
    return path


def output_folder(path: Path, flag: str) -> Path:
    """A folder a command will write files into (``ursa interpret -o report``)."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} is a file: give a folder (it is created if missing)")
    writable_place(path / "x", flag)
    return path


def writable_place(path: Path, flag: str) -> None:
    """``path``'s folder exists and can be written in, or can be created: the nearest
    existing folder above it is a folder this user may write in."""
    above = path.parent
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        raise ConfigError(
            f"{flag} {path}: {above} is a file, so no folder can be made there; choose "
            f"another place"
        )
    if not os.access(above, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{flag} {path}: this user cannot write in {above} (permission denied); choose "
            f"a folder you can write in"
        )


def data_folder(path: Path, *, what: str = "the dataset folder") -> Path:
    """The data folder a command reads, before any model is loaded."""
    if not path.exists():
        raise DataError(f"{path} does not exist: give {what} (a sub-folder per class)")
    if not path.is_dir():
        raise DataError(f"{path} is a file, not a folder: give {what} (a sub-folder per class)")
    return path


def _example(flag: str) -> str:
    return {"--out": "predictions.csv", "--plot": "lr_find.png"}.get(flag, "out.png")
