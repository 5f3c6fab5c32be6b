"""Load: 5,000 requests at concurrency 32 on loopback, good images mixed with bad bodies."""

from __future__ import annotations

import http.client
import io
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.serve.client import running_server
from tests.serve.test_app import _bomb_png

pytestmark = pytest.mark.slow


def _jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, size=(120, 160, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def _bodies() -> list[tuple[str, bytes, str]]:
    """(kind, body, content type): good JPEGs and every sort of bad body."""
    good = [("good", _jpeg(seed), "image/jpeg") for seed in range(5)]
    bad = [
        ("bad", b"", "image/jpeg"),
        ("bad", b"definitely not pixels", "image/jpeg"),
        ("bad", _jpeg(9)[:300], "image/jpeg"),
        ("bad", b"hello", "text/plain"),
        ("bad", b"x" * 120_000, "image/png"),  # over the 100 kB limit
        ("bad", _bomb_png(), "image/png"),
        ("bad", b"--b\r\nbroken", "multipart/form-data; boundary=b"),
    ]
    return good + bad


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _hammer(port: int, total: int, concurrency: int) -> Counter[tuple[str, int]]:
    bodies = _bodies()
    results: Counter[tuple[str, int]] = Counter()
    lock = threading.Lock()
    counter = iter(range(total))

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                break
            kind, body, content_type = bodies[index % len(bodies)]
            try:
                connection.request("POST", "/predict", body, {"Content-Type": content_type})
                response = connection.getresponse()
                response.read()
                status = response.status
                if response.getheader("connection", "").lower() == "close":
                    connection.close()
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            except (ConnectionError, http.client.HTTPException):
                status = 0  # the connection broke: counted, and it fails the test below
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            with lock:
                results[(kind, status)] += 1
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_5000_requests_no_5xx_bad_bodies_4xx_memory_flat(tiny_served: tuple[Path, Path]) -> None:
    with running_server(tiny_served[0], max_body_bytes="100000") as server:
        warm = _hammer(server.port, 600, 32)
        rss_warm = _rss_kib(server.process.pid)
        results = _hammer(server.port, 5000, 32)
        rss_after = _rss_kib(server.process.pid)
    print(f"RSS after warm-up {rss_warm} KiB, after 5,000 requests {rss_after} KiB; {results}")
    assert sum(results.values()) == 5000
    assert not [key for key in results if key[1] >= 500 or key[1] == 0], results
    assert all(status == 200 for (kind, status) in results if kind == "good"), results
    assert all(400 <= status < 500 for (kind, status) in results if kind == "bad"), results
    assert {status for (kind, status) in warm} <= {200, 400, 413, 415}
    assert rss_after <= 1.2 * rss_warm, (rss_warm, rss_after)
