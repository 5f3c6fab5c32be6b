"""The cleaner's prediction cache: what a bundle gave each file, kept in ``ursa.sqlite``.

A cleaning session predicts every image once; the probabilities are stored by the
bundle's identity (``model_id``) and the file's sha256 in the table
``clean_predictions``, so the next session on the folder starts without running the
model again (a relabeled file keeps its bytes, hence its prediction). It is a cache:
nothing in it decides what happens to a file. Torch-free and FastAPI-free.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from ursa.core.manifest import (
    MANIFEST_NAME,
    ColumnKind,
    foreign_manifest,
    missing_columns,
    typed_row,
    unreadable_manifest,
)

TABLE = "clean_predictions"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    model_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    probabilities TEXT NOT NULL,
    PRIMARY KEY (model_id, sha256)
);
"""
_COLUMNS: dict[str, ColumnKind] = {"model_id": "text", "sha256": "text", "probabilities": "text"}


class PredictionCache:
    """``clean_predictions`` in the manifest of the dataset folder ``root`` (which must
    exist: the journal makes it); use as a context manager."""

    def __init__(self, root: Path) -> None:
        self.connection = sqlite3.connect(root / MANIFEST_NAME, timeout=30.0)
        try:
            lacking = missing_columns(self.connection, {TABLE: _COLUMNS}, present_only=True)
            if lacking:
                raise foreign_manifest(root, lacking)
            with self.connection:
                self.connection.executescript(_SCHEMA)
        except sqlite3.DatabaseError as error:
            self.connection.close()
            raise unreadable_manifest(root, error) from None
        except BaseException:
            self.connection.close()
            raise
        self.connection.row_factory = sqlite3.Row

    def __enter__(self) -> PredictionCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.connection.close()

    def probabilities(self, model_id: str) -> dict[str, str]:
        """``{sha256: JSON list of probabilities}`` stored for ``model_id``."""
        rows = self.connection.execute(
            f"SELECT sha256, probabilities FROM {TABLE} WHERE model_id = ?", (model_id,)
        )
        typed = (typed_row(row, TABLE, _COLUMNS, ("sha256", "probabilities")) for row in rows)
        return {row["sha256"]: row["probabilities"] for row in typed}

    def store(self, model_id: str, rows: Sequence[tuple[str, str]]) -> None:
        """Remember ``(sha256, JSON probabilities)`` pairs for ``model_id``."""
        with self.connection:
            self.connection.executemany(
                f"INSERT OR REPLACE INTO {TABLE} (model_id, sha256, probabilities) "
                f"VALUES (?, ?, ?)",
                [(model_id, sha, probabilities) for sha, probabilities in rows],
            )
