"""The downloader against a real HTTP server on 127.0.0.1 that serves good and bad images."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.gather.fakeweb import (
    FakeClock,
    FakeWeb,
    Resource,
    bomb_png,
    encode,
    near_copy,
    structured_image,
)
from ursa.cli import app
from ursa.core.errors import ConfigError, DataError
from ursa.core.manifest import PART_PREFIX, Manifest
from ursa.gather.download import (
    DownloadConfig,
    GatherConfig,
    Refused,
    UrlGuard,
    gather,
    sniff_extension,
    validate_class_name,
)
from ursa.gather.search import OpenverseProvider

runner = CliRunner()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check(guard: UrlGuard, url: str) -> str:
    return asyncio.run(guard.check(url)).request_url


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/a.jpg",
        "http://127.0.0.1:8080/a.jpg",
        "http://localhost/a.jpg",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/a.jpg",
        "http://192.168.0.1/a.jpg",
        "http://[::1]/a.jpg",
        "http://[::ffff:127.0.0.1]/a.jpg",
        "http://0.0.0.0/a.jpg",
        "http://100.64.0.1/a.jpg",
        "file:///etc/passwd",
        "ftp://example.org/a.jpg",
        "http://user:pw@127.0.0.1/a.jpg",
    ],
)
def test_guard_refuses_private_and_odd_urls(url: str) -> None:
    with pytest.raises(Refused):
        check(UrlGuard(), url)


def test_guard_allows_only_the_allowed_host_and_port() -> None:
    guard = UrlGuard(["127.0.0.1:8080"])
    assert check(guard, "http://127.0.0.1:8080/a.jpg?x=1") == "http://127.0.0.1:8080/a.jpg?x=1"
    with pytest.raises(Refused):
        check(guard, "http://127.0.0.1:8081/a.jpg")
    with pytest.raises(Refused):
        check(guard, "http://169.254.169.254/")
    assert check(UrlGuard(["10.0.0.0/8"]), "http://10.9.9.9/x").startswith("http://10.9.9.9/")


def test_guard_pins_a_public_address_literal() -> None:
    assert check(UrlGuard(), "https://93.184.216.34/a.png") == "https://93.184.216.34/a.png"


def test_magic_bytes_and_class_names() -> None:
    rng = np.random.default_rng(0)
    image = structured_image(rng, 40)
    assert sniff_extension(encode(image, "JPEG")) == "jpg"
    assert sniff_extension(encode(image, "PNG")) == "png"
    assert sniff_extension(encode(image, "WEBP")) == "webp"
    assert sniff_extension(b"<html>hello</html>") is None
    assert validate_class_name(" grizzly ") == "grizzly"
    for bad in ("", ".hidden", "a/b", "..", "valid"):
        with pytest.raises(DataError):
            validate_class_name(bad)
    with pytest.raises(ConfigError, match="concurrency"):
        DownloadConfig(concurrency=0, timeout=-1)
    with pytest.raises(ConfigError, match="query"):
        GatherConfig(("a",), query="bears")


def plant(web: FakeWeb, seed: int = 0) -> dict[str, set[str]]:
    """Good, bad and duplicate images for two classes; returns the sha256s that must be kept."""
    rng = np.random.default_rng(seed)
    good = {label: [structured_image(rng) for _ in range(4)] for label in ("grizzly", "black")}
    keep: dict[str, set[str]] = {"grizzly": set(), "black": set()}
    for label, images in good.items():
        for index, image in enumerate(images):
            body = encode(image, "JPEG", quality=90)
            keep[label].add(sha(body))
            web.add(f"/{label}/{index}.jpg", Resource(body))
            web.add_result(f"{label} bear", f"/{label}/{index}.jpg", creator=f"c{index}")
    g0 = encode(good["grizzly"][0], "JPEG", quality=90)
    other = web.server.server_address[1] + 1
    bad = {
        "/dup.jpg": Resource(g0),  # the same bytes at another URL
        "/near.jpg": Resource(near_copy(good["grizzly"][1])),  # resized + re-encoded
        "/broken.jpg": Resource(g0[: len(g0) // 2]),  # truncated JPEG
        "/page.jpg": Resource(b"<!doctype html><html>hello</html>", "image/jpeg"),
        "/empty.jpg": Resource(b""),
        "/huge.jpg": Resource(g0 + b"\0" * 300_000),
        "/slow.jpg": Resource(encode(structured_image(rng), "JPEG"), delay=3.0),
        "/loop.jpg": Resource(status=302, location=f"http://127.0.0.1:{other}/x.jpg"),
        "/meta.jpg": Resource(status=302, location="http://169.254.169.254/latest/meta-data/"),
        "/bomb.png": Resource(bomb_png(), "image/png"),
        "/tiny.png": Resource(encode(structured_image(rng, 12), "PNG"), "image/png"),
        "/gone.jpg": Resource(status=404, content_type="text/plain"),
        "/text.jpg": Resource(encode(structured_image(rng), "JPEG"), "text/html"),
    }
    for path, resource in bad.items():
        web.add(path, resource)
        web.add_result("grizzly bear", path, creator="mallory")
    # A good image reached through a redirect on the allowed server itself.
    hop = encode(structured_image(rng), "PNG")
    keep["grizzly"].add(sha(hop))
    web.add("/real.png", Resource(hop, "image/png"))
    web.add("/hop.png", Resource(status=301, location="/real.png"))
    web.add_result("grizzly bear", "/hop.png", creator="hopper")
    # The same picture under the other class: a cross-class duplicate, not saved twice.
    web.add("/black-copy.jpg", Resource(g0))
    web.add_result("black bear", "/black-copy.jpg")
    return keep


def openverse(web: FakeWeb) -> OpenverseProvider:
    """Openverse played by ``web``, paced on a fake clock (no real waits between pages)."""
    return OpenverseProvider(web.base, clock=FakeClock())


def fast_config(web: FakeWeb, **changes: object) -> DownloadConfig:
    settings: dict[str, object] = {
        "concurrency": 4, "timeout": 1.0, "max_bytes": 200_000, "retries": 1, "backoff": 0.05,
        "allow_hosts": (web.host,),
    }  # fmt: skip
    settings.update(changes)
    return DownloadConfig(**settings)  # type: ignore[arg-type]


def files_in(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under root except the manifest."""
    return {
        p.relative_to(root).as_posix(): sha(p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith("ursa.sqlite")
    }


def test_gather_keeps_only_good_unique_images_with_provenance(tmp_path: Path) -> None:
    with FakeWeb() as web:
        keep = plant(web)
        root = tmp_path / "bears"
        config = GatherConfig(("grizzly", "black"), "{} bear", per_class=20)
        report = gather(root, config, openverse(web), fast_config(web))
        assert web.hits["/slow.jpg"] == 2  # one retry after the timeout
    files = files_in(root)
    assert not any(PART_PREFIX in name for name in files)
    for label in ("grizzly", "black"):
        kept = {digest for name, digest in files.items() if name.startswith(f"{label}/")}
        assert kept == keep[label]
    assert report.saved == {"black": 4, "grizzly": 5}
    assert report.short == {"black": 4, "grizzly": 5}
    with Manifest(root) as manifest:
        rows = manifest.records()
        outcomes = manifest.fetch_outcomes()
    assert {r.path for r in rows} == set(files)
    for row in rows:
        assert row.status == "ok"
        assert row.sha256 == files[row.path]
        assert row.source_url.startswith(web.base) and row.page_url
        assert row.license == "by 4.0" and row.creator and row.provider == "openverse"
        assert row.query == f"{row.label} bear" and row.fetched_at and len(row.phash) == 16
        assert Path(row.path).stem == row.sha256[:20]  # generated name, not the URL's
    by_path = {url.removeprefix(web.base): outcome for url, outcome in outcomes.items()}
    assert by_path["/dup.jpg"] == "duplicate" or by_path["/grizzly/0.jpg"] == "duplicate"
    assert by_path["/near.jpg"] == "near-duplicate"
    assert by_path["/black-copy.jpg"] in ("duplicate", "saved")
    assert by_path["/loop.jpg"] == by_path["/meta.jpg"] == "refused"
    for path in ("/broken.jpg", "/page.jpg", "/empty.jpg", "/huge.jpg", "/bomb.png"):
        assert by_path[path] == "rejected", path
    for path in ("/tiny.png", "/gone.jpg", "/text.jpg"):
        assert by_path[path] == "rejected", path
    assert by_path["/slow.jpg"] == "failed"
    assert by_path["/hop.png"] == "saved"


def test_gather_stops_at_per_class_and_a_second_run_fetches_nothing(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    with FakeWeb() as web:
        for index in range(12):
            web.add(f"/{index}.jpg", Resource(encode(structured_image(rng), "JPEG")))
            web.add_result("teddy", f"/{index}.jpg")
        root = tmp_path / "toys"
        config = GatherConfig(("teddy",), per_class=5)
        first = gather(root, config, openverse(web), fast_config(web))
        fetched = sum(web.hits[f"/{i}.jpg"] for i in range(12))
        second = gather(root, config, openverse(web), fast_config(web))
        again = sum(web.hits[f"/{i}.jpg"] for i in range(12))
    assert first.saved == {"teddy": 5} and second.saved == {"teddy": 5}
    assert len(list((root / "teddy").iterdir())) == 5
    assert fetched >= 5 and again == fetched  # the second run downloads nothing
    assert sum(second.outcomes.values()) == 0


def test_gather_refuses_loopback_when_not_allowed(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    with FakeWeb() as web:
        web.add("/a.jpg", Resource(encode(structured_image(rng), "JPEG")))
        web.add_result("cat", "/a.jpg")
        config = GatherConfig(("cat",), per_class=1)
        report = gather(tmp_path / "d", config, openverse(web), fast_config(web, allow_hosts=()))
        assert web.hits["/a.jpg"] == 0
    assert report.outcomes == {"refused": 1}
    assert report.events[0].reason.startswith("127.0.0.1 resolves to 127.0.0.1")


def test_killed_gather_resumes_without_duplicates_or_partial_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    root = tmp_path / "bears"
    with FakeWeb(delay=0.08) as web:
        for label in ("grizzly", "black"):
            for index in range(15):
                path = f"/{label}/{index}.jpg"
                web.add(path, Resource(encode(structured_image(rng), "JPEG")))
                web.add_result(f"{label} bear", path)
        # One duplicate per class, so a resumed run must still dedupe against what is on disk.
        web.add("/again.jpg", web.resources["/grizzly/0.jpg"])
        web.add_result("black bear", "/again.jpg")
        args = [
            "gather", str(root), "--classes", "grizzly", "black", "--query", "{} bear",
            "--per-class", "15", "--base-url", web.base, "--allow-host", web.host,
            "--concurrency", "2", "--timeout", "5",
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
        process = subprocess.Popen(
            [sys.executable, "-m", "ursa", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        manifest_path = root / "ursa.sqlite"
        saved_before = 0
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline and process.poll() is None:
                if manifest_path.exists():
                    # The manifest is readable by another process while the download writes.
                    with sqlite3.connect(manifest_path, timeout=5) as reader:
                        query = "SELECT count(*) FROM images WHERE status = 'ok'"
                        with contextlib.suppress(sqlite3.OperationalError):  # not created yet
                            saved_before = reader.execute(query).fetchone()[0]
                    if saved_before >= 6:
                        break
                time.sleep(0.05)
            assert process.poll() is None, "gather finished before it could be killed"
            process.send_signal(signal.SIGKILL)
        finally:
            process.kill()
            process.wait()
        assert 6 <= saved_before < 30
        with Manifest(root) as manifest:
            done_urls = {r.source_url for r in manifest.records(status="ok")}
        hits_before = dict(web.hits)
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert all(web.hits[u.removeprefix(web.base)] == hits_before[u.removeprefix(web.base)]
                   for u in done_urls)  # fmt: skip
    files = files_in(root)
    assert not any(PART_PREFIX in name for name in files)
    assert len(files) == 30 and len(set(files.values())) == 30
    with Manifest(root) as manifest:
        rows = manifest.records()
    assert {r.path for r in rows} == set(files)
    assert all(r.status == "ok" and files[r.path] == r.sha256 for r in rows)
    assert "grizzly: 15/15" in result.output and "black: 15/15" in result.output
