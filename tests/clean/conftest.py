"""Fixtures for the cleaner: a tiny trained bundle, a private copy of its data per test, a
snapshot of a folder to prove nothing changed, and ``ursa clean`` as a child process."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.export.bundles import shared_tiny_bundle
from ursa.clean.thumbnails import CACHE_DIR
from ursa.core.manifest import LOCK_NAME, MANIFEST_NAME, QUARANTINE_DIR
from ursa.serve.bench import free_port, stop_process

#: Files the cleaner may change without changing the dataset: its database and caches.
BOOKKEEPING = (MANIFEST_NAME, f"{MANIFEST_NAME}-wal", f"{MANIFEST_NAME}-shm", LOCK_NAME)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(bundle with model.onnx, its data folder: blue / green / red × 30); do not modify."""
    return shared_tiny_bundle(tmp_path_factory)


@pytest.fixture
def dataset(tiny_bundle: tuple[Path, Path], tmp_path: Path) -> Path:
    """A private copy of the tiny bundle's data folder, for a test to change."""
    return Path(shutil.copytree(tiny_bundle[1], tmp_path / "colours"))


def snapshot(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file that is part of the dataset (quarantine
    included; the manifest, lock and thumbnail cache left out)."""
    files: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if not path.is_file() or relative in BOOKKEEPING or relative.startswith(CACHE_DIR):
            continue
        files[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def class_files(folder: Path) -> set[tuple[str, str]]:
    """``(class, file name)`` of every image in the class folders."""
    return {
        (path.parent.name, path.name)
        for path in folder.glob("*/*")
        if path.is_file() and not path.parent.name.startswith(".")
    }


def assert_journal_matches_disk(folder: Path) -> None:
    """No decision is pending; every image row is where its file is, and vice versa."""
    with sqlite3.connect(folder / MANIFEST_NAME) as db:
        db.row_factory = sqlite3.Row
        pending = db.execute("SELECT id FROM clean_journal WHERE state = 'pending'").fetchall()
        rows = db.execute("SELECT * FROM clean_images WHERE state != 'gone'").fetchall()
    assert not pending, f"decisions left pending: {[row['id'] for row in pending]}"
    for row in rows:
        path = folder / row["path"]
        assert path.is_file(), f"image #{row['id']} should be at {row['path']}"
        if row["state"] == "active":
            assert path.parent.name == row["label"]
        else:
            assert row["path"].startswith(f"{QUARANTINE_DIR}/")
    active = {row["path"] for row in rows if row["state"] == "active"}
    on_disk = {f"{label}/{name}" for label, name in class_files(folder)}
    assert active == on_disk


class CleanServer:
    """``ursa clean BUNDLE DATA --no-browser`` in a child process on ``host`` (127.0.0.1)."""

    def __init__(
        self,
        bundle: Path,
        data: Path,
        env: dict[str, str] | None = None,
        *,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.port = free_port()
        command = [sys.executable, "-m", "ursa", "clean", str(bundle), str(data),
                   "--port", str(self.port), "--host", host, "--no-browser"]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.token = ""

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.process.stdout.read() if self.process.stdout else ""
                raise AssertionError(f"ursa clean exited early:\n{output}")
            try:
                status, page = self.request("GET", "/")
            except OSError:
                time.sleep(0.2)
                continue
            if status == 200:
                self.token = page.split('name="ursa-token" content="')[1].split('"')[0]
                return
        raise AssertionError(f"ursa clean did not answer within {timeout:.0f} s")

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, token: bool = True
    ) -> tuple[int, Any]:
        # http.client sends an IPv6 host as it must be: Host: [::1]:PORT
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        headers = {"Content-Type": "application/json"}
        if token and self.token:
            headers["X-Ursa-Token"] = self.token
        data = json.dumps(body).encode() if body is not None else None
        try:
            connection.request(method, path, data, headers)
            response = connection.getresponse()
            raw = response.read()
        finally:
            connection.close()
        kind = response.getheader("content-type", "")
        return response.status, json.loads(raw) if "json" in kind else raw.decode()

    def stop(self) -> None:
        stop_process(self.process)
        if self.process.stdout:
            self.process.stdout.close()


@contextmanager
def clean_server(
    bundle: Path, data: Path, *, host: str = "127.0.0.1", **env: str
) -> Iterator[CleanServer]:
    server = CleanServer(bundle, data, env, host=host)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
