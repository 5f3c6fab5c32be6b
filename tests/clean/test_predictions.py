"""The cleaner's prediction cache, a module of its own beside the journal."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from ursa.clean.journal import Journal
from ursa.clean.predictions import PredictionCache
from ursa.core.errors import DataError
from ursa.core.manifest import MANIFEST_NAME


def test_probabilities_are_kept_by_model_and_file(tmp_path: Path) -> None:
    (tmp_path / "cat").mkdir()
    Journal(tmp_path).close()  # the journal makes ursa.sqlite; the cache lives beside it
    with PredictionCache(tmp_path) as cache:
        cache.store("model-a", [("ab" * 32, "[0.25, 0.75]"), ("cd" * 32, "[1.0, 0.0]")])
        cache.store("model-b", [("ab" * 32, "[0.5, 0.5]")])
    with PredictionCache(tmp_path) as cache:  # a second session reads what the first stored
        assert cache.probabilities("model-a") == {
            "ab" * 32: "[0.25, 0.75]",
            "cd" * 32: "[1.0, 0.0]",
        }
        assert cache.probabilities("model-b") == {"ab" * 32: "[0.5, 0.5]"}
        assert cache.probabilities("model-c") == {}


def test_a_planted_cache_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "cat").mkdir()
    Journal(tmp_path).close()
    with contextlib.closing(sqlite3.connect(tmp_path / MANIFEST_NAME)) as db, db:
        db.execute("DROP TABLE IF EXISTS clean_predictions")
        db.execute("CREATE TABLE clean_predictions (model_id, sha256, probabilities)")
        db.execute("INSERT INTO clean_predictions VALUES ('m', 'ab', 42)")
    with PredictionCache(tmp_path) as cache, pytest.raises(DataError) as refused:
        cache.probabilities("m")
    assert "clean_predictions row 'ab' has probabilities = 42, not text" in str(refused.value)
    with contextlib.closing(sqlite3.connect(tmp_path / MANIFEST_NAME)) as db, db:
        db.execute("DROP TABLE clean_predictions")
        db.execute("CREATE TABLE clean_predictions (model_id, sha256)")
    with pytest.raises(DataError, match="clean_predictions lacks probabilities"):
        PredictionCache(tmp_path)
