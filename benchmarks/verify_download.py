"""Throughput of `ursa verify` (images/s) and of the downloader against a local server.

    .venv/bin/python benchmarks/verify_download.py [--images 5000] [--downloads 600]

Verification: IMAGES generated JPEGs (320×240, five classes) in a temporary
folder, verified with the default settings (full decode, sha256, perceptual
hash, duplicate search). Download: DOWNLOADS generated JPEGs served by
Python's own `http.server` in a separate process on 127.0.0.1, fetched with
`ursa.gather.download.gather` (every check on, fsync of every file, manifest
rows), at two concurrency settings. Nothing touches the internet.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ursa.gather.download import DownloadConfig, GatherConfig, gather
from ursa.gather.search import OpenverseProvider
from ursa.verify.checks import VerifyConfig, verify_folder


def picture(rng: np.random.Generator, width: int = 320, height: int = 240) -> bytes:
    """A smooth random picture with a little noise, as a JPEG (about 15 kB)."""
    grid = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(grid, mode="RGB").resize((width, height), Image.Resampling.BICUBIC)
    noisy = np.asarray(image, dtype=np.int16) + rng.integers(-8, 9, size=(height, width, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def bench_verify(count: int, folder: Path) -> tuple[float, float, int]:
    rng = np.random.default_rng(0)
    for index in range(count):
        label = f"class{index % 5}"
        (folder / label).mkdir(parents=True, exist_ok=True)
        (folder / label / f"{index:05d}.jpg").write_bytes(picture(rng))
    start = time.perf_counter()
    report = verify_folder(folder, VerifyConfig())
    seconds = time.perf_counter() - start
    return seconds, count / seconds, len(report.findings)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def bench_download(
    count: int, site: Path, concurrency: int, port: int
) -> tuple[float, float, float]:
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=site,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        with tempfile.TemporaryDirectory() as target:
            config = DownloadConfig(concurrency=concurrency, allow_hosts=(f"127.0.0.1:{port}",))
            start = time.perf_counter()
            report = gather(
                target,
                GatherConfig(("bench",), per_class=count, candidates=1.0),
                OpenverseProvider(base),
                config,
            )
            seconds = time.perf_counter() - start
            saved = report.saved["bench"]
            size = sum(p.stat().st_size for p in (Path(target) / "bench").iterdir())
    finally:
        server.terminate()
        server.wait()
    if saved != count:
        raise SystemExit(f"only {saved} of {count} downloads were saved: {report.outcomes}")
    return seconds, count / seconds, size / seconds / 1e6


def make_site(count: int, site: Path) -> None:
    """Files plus an Openverse-shaped answer at /v1/images/ (http.server serves index.html)."""
    rng = np.random.default_rng(1)
    (site / "img").mkdir(parents=True)
    results = []
    for index in range(count):
        (site / "img" / f"{index}.jpg").write_bytes(picture(rng))
        results.append({"url": f"/img/{index}.jpg", "license": "cc0", "creator": "bench"})
    (site / "v1" / "images").mkdir(parents=True)
    # Absolute URLs are filled in per run (point_site_at): the port is only known then.
    (site / "results.json").write_text(json.dumps(results))


def point_site_at(site: Path, port_base: str) -> None:
    results = json.loads((site / "results.json").read_text())
    for item in results:
        item["url"] = port_base + item["url"]
    body = {"results": results, "page_count": 1}
    (site / "v1" / "images" / "index.html").write_text(json.dumps(body))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--downloads", type=int, default=600)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory() as scratch:
        seconds, rate, findings = bench_verify(args.images, Path(scratch) / "data")
        print(f"verify: {args.images} images in {seconds:.1f} s = {rate:.0f} images/s "
              f"({findings} findings)")  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        site = Path(scratch) / "site"
        make_site(args.downloads, site)
        for concurrency in (8, 32):
            port = free_port()
            point_site_at(site, f"http://127.0.0.1:{port}")
            seconds, rate, mbps = bench_download(args.downloads, site, concurrency, port)
            print(f"download (concurrency {concurrency}): {args.downloads} images in "
                  f"{seconds:.1f} s = {rate:.0f} images/s, {mbps:.1f} MB/s")  # fmt: skip


if __name__ == "__main__":
    main()
