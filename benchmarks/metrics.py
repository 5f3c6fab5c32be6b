"""What ``/metrics`` costs the server: time to count one request, and to render the page.

    .venv/bin/python benchmarks/metrics.py [--requests 200000]

Counts ``--requests`` answered requests spread over the server's paths, methods and
statuses with ``ursa.serve.metrics.Metrics.observe`` (what the middleware calls once per
request), then renders the exposition as ``GET /metrics`` does. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

from ursa.serve.metrics import KNOWN_PATHS, Metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200_000)
    args = parser.parse_args()
    metrics = Metrics()
    paths = sorted(KNOWN_PATHS)
    calls = [
        (paths[i % len(paths)], ("GET", "POST")[i % 2], (200, 400, 413, 503)[i % 4], i % 97 / 100)
        for i in range(args.requests)
    ]
    start = time.perf_counter()
    for path, method, status, seconds in calls:
        metrics.observe(path, method, status, seconds)
    observe = (time.perf_counter() - start) / len(calls)
    start = time.perf_counter()
    text = metrics.render()
    render = time.perf_counter() - start
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(json.dumps({
        "machine": machine,
        "requests": len(calls),
        "us_per_observe": round(observe * 1e6, 2),
        "ms_render": round(render * 1e3, 2),
        "lines": text.count("\n"),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
