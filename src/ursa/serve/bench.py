"""``ursa bench``: latency percentiles and throughput, in-process and over HTTP on loopback.

In-process numbers time ``Predictor.predict(jpeg_bytes)`` (decode, preprocess,
model), with the model alone and the decode + preprocess alone beside them so
that the floor of each part is visible, and the model alone at one thread and at
one single-thread session per core side by side (the most images a second the
model gives on this CPU). HTTP numbers come from ``ursa serve``
started as a separate process on 127.0.0.1 and clients with keep-alive
connections, one thread per concurrent client.
"""

from __future__ import annotations

import http.client
import io
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ursa.core.errors import ConfigError, UrsaError
from ursa.core.imageio import is_image_name
from ursa.core.runtime import Predictor, cpu_count


@dataclass(frozen=True)
class BenchRow:
    """One measured configuration."""

    mode: str
    """in-process, model only (all cores; 1 thread; 1 thread each), decode+preprocess or http."""
    precision: str
    concurrency: int
    requests: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    images_per_s: float


def synthetic_jpeg(width: int = 640, height: int = 480, seed: int = 0) -> bytes:
    """A photo-like 640×480 JPEG (smooth shapes plus sensor noise), quality 90."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    pixels = np.empty((height, width, 3), dtype=np.float32)
    for channel in range(3):
        fx, fy = rng.uniform(0.005, 0.03, size=2)
        pixels[..., channel] = 128 + 90 * np.sin(fx * x + rng.uniform(0, 6)) * np.cos(fy * y)
    pixels += rng.normal(0, 12, size=pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def load_images(folder: Path | None, limit: int = 64) -> list[bytes]:
    """Up to ``limit`` image files from ``folder`` as bytes, or one synthetic 640×480 JPEG."""
    if folder is None:
        return [synthetic_jpeg()]
    if not folder.is_dir():
        raise ConfigError(f"--images {folder}: not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_name(p))[:limit]
    if not files:
        raise ConfigError(f"--images {folder}: no image files in it")
    return [p.read_bytes() for p in files]


def _row(
    mode: str, precision: str, concurrency: int, seconds: Sequence[float], wall: float
) -> BenchRow:
    ms = np.asarray(seconds) * 1000.0
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return BenchRow(
        mode=mode,
        precision=precision,
        concurrency=concurrency,
        requests=len(ms),
        p50_ms=round(float(p50), 2),
        p90_ms=round(float(p90), 2),
        p99_ms=round(float(p99), 2),
        images_per_s=round(len(ms) / wall, 1),
    )


def _time_calls(
    call: Callable[[int], object], count: int, warmup: int
) -> tuple[list[float], float]:
    for index in range(warmup):
        call(index)
    times = []
    start = time.perf_counter()
    for index in range(count):
        begin = time.perf_counter()
        call(index)
        times.append(time.perf_counter() - begin)
    return times, time.perf_counter() - start


def bench_in_process(
    predictor: Predictor, images: Sequence[bytes], requests: int, precision: str
) -> list[BenchRow]:
    """Whole predict, model alone and decode + preprocess alone, one request at a time."""
    warmup = min(20, requests)
    arrays = [predictor.prepare(image) for image in images]
    rows = []
    times, wall = _time_calls(
        lambda i: predictor.predict(images[i % len(images)]), requests, warmup
    )
    rows.append(_row("in-process", precision, 1, times, wall))
    times, wall = _time_calls(
        lambda i: predictor.logits(arrays[i % len(arrays)][None]), requests, warmup
    )
    rows.append(_row("model only", precision, 1, times, wall))
    times, wall = _time_calls(
        lambda i: predictor.prepare(images[i % len(images)]), requests, warmup
    )
    rows.append(_row("decode+preprocess", precision, 1, times, wall))
    return rows


def bench_model_threads(
    bundle: Path, int8: bool, array: np.ndarray, requests: int, precision: str
) -> list[BenchRow]:
    """The model alone at its other thread settings, for the most images a second this CPU
    gives (what the server's throughput is compared with): one thread, and, on several
    cores, one single-thread session per core running side by side."""
    warmup = min(20, requests)
    single = Predictor(bundle, int8=int8, threads=1)
    times, wall = _time_calls(lambda i: single.logits(array), requests, warmup)
    rows = [_row("model only, 1 thread", precision, 1, times, wall)]
    cores = cpu_count()
    if cores == 1:
        return rows
    sessions = [single] + [Predictor(bundle, int8=int8, threads=1) for _ in range(cores - 1)]
    results: list[tuple[list[float], float]] = [([], 0.0)] * cores

    def run(index: int) -> None:  # ONNX Runtime lets go of the GIL while it runs
        results[index] = _time_calls(
            lambda i: sessions[index].logits(array), max(1, requests // cores), warmup
        )

    threads = [threading.Thread(target=run, args=(index,)) for index in range(cores)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    times = [t for latencies, _ in results for t in latencies]
    rows.append(_row("model only, 1 thread each", precision, cores, times, wall))
    return rows


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop_process(process: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """Ask ``process`` to stop (SIGTERM), and kill it if it is still running after
    ``timeout`` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class ServerProcess:
    """``ursa serve`` in a child process on 127.0.0.1; stopped (by its pid) on exit."""

    def __init__(self, bundle: Path, *, int8: bool, extra_env: dict[str, str] | None = None):
        self.port = free_port()
        command = [sys.executable, "-m", "ursa", "serve", str(bundle), "--port", str(self.port)]
        if int8:
            command.append("--int8")
        self.process = subprocess.Popen(
            command,
            env={**os.environ, **(extra_env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode() if self.process.stderr else ""
                raise UrsaError(f"the benchmark server exited: {error.strip()[-2000:]}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", "/healthz")
                if connection.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise UrsaError(f"the benchmark server did not answer within {timeout:.0f} s")

    def __enter__(self) -> ServerProcess:
        self.wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process(self.process)


def http_load(
    port: int,
    images: Sequence[bytes],
    requests: int,
    concurrency: int,
    warmup: int = 20,
    content_type: str = "image/jpeg",
) -> tuple[list[float], float, dict[int, int]]:
    """POST images to /predict from ``concurrency`` keep-alive clients, each body with
    ``content_type`` (the raw image by default; a multipart form's type with form bodies).

    Returns (latencies in seconds, wall time, count per status).
    """
    headers = {"Content-Type": content_type}
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                break
            body = images[index % len(images)]
            begin = time.perf_counter()
            connection.request("POST", "/predict", body, headers)
            response = connection.getresponse()
            response.read()
            elapsed = time.perf_counter() - begin
            with lock:
                latencies.append(elapsed)
                statuses[response.status] = statuses.get(response.status, 0) + 1
        connection.close()

    warm = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for index in range(warmup):  # not timed: first requests fill caches and thread pools
        warm.request("POST", "/predict", images[index % len(images)], headers)
        warm.getresponse().read()
    warm.close()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, time.perf_counter() - start, statuses


def bench_http(
    bundle: Path,
    images: Sequence[bytes],
    requests: int,
    concurrencies: Sequence[int],
    int8: bool,
    max_batch: int | None = None,
) -> list[BenchRow]:
    rows = []
    precision = "int8" if int8 else "fp32"
    # The benchmark is the server's only client: its connections are not limited per address.
    settings = {"URSA_MAX_CONNECTIONS_PER_CLIENT": "0"}
    if max_batch is not None:
        settings["URSA_MAX_BATCH"] = str(max_batch)
    with ServerProcess(bundle, int8=int8, extra_env=settings) as server:
        for concurrency in concurrencies:
            latencies, wall, statuses = http_load(server.port, images, requests, concurrency)
            if set(statuses) != {200}:
                raise UrsaError(f"the benchmark server answered {statuses}; expected only 200")
            rows.append(_row("http", precision, concurrency, latencies, wall))
    return rows


def run_bench(
    bundle: Path,
    folder: Path | None,
    concurrency: int,
    requests: int,
    *,
    http: bool = True,
    max_batch: int | None = None,
) -> list[BenchRow]:
    """Every measurement for the precisions the bundle holds (fp32, and int8 when present)."""
    if concurrency < 1 or requests < 1 or (max_batch is not None and max_batch < 1):
        raise ConfigError("--concurrency, --requests and --max-batch must be 1 or more")
    images = load_images(folder)
    rows: list[BenchRow] = []
    probe = Predictor(bundle)
    precisions = [False, True] if "model.int8.onnx" in probe.bundle.members else [False]
    del probe
    for int8 in precisions:
        precision = "int8" if int8 else "fp32"
        predictor = Predictor(bundle, int8=int8)
        rows += bench_in_process(predictor, images, requests, precision)
        array = predictor.prepare(images[0])[None]
        del predictor
        rows += bench_model_threads(bundle, int8, array, requests, precision)
        if http:
            levels = sorted({1, concurrency})
            rows += bench_http(bundle, images, requests, levels, int8, max_batch)
    return rows
