"""``ursa bench``: latency and throughput of a bundle, in-process and over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ursa.cli.support import console, user_errors


def bench(
    bundle: Annotated[Path, typer.Argument(help="A .ursa bundle holding model.onnx.")],
    images: Annotated[
        Path | None, typer.Option(help="Folder of images (default: a 640×480 JPEG).")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Concurrent HTTP clients.")] = 8,
    requests: Annotated[int, typer.Option(help="Requests per measurement.")] = 200,
    http: Annotated[bool, typer.Option(help="Also measure over HTTP on loopback.")] = True,
    max_batch: Annotated[
        int | None, typer.Option(help="Server micro-batch size (1: off; default: automatic).")
    ] = None,
) -> None:
    """Measure latency and throughput, in-process and over HTTP.

    p50/p90/p99 latency and images a second, for fp32 and int8.
    """
    from ursa.cli.support import print_bench
    from ursa.serve.bench import run_bench

    rows = run_bench(bundle, images, concurrency, requests, http=http, max_batch=max_batch)
    print_bench(console, rows)


def register(app: typer.Typer) -> None:
    """Add ``bench`` to the ``ursa`` command."""
    app.command("bench")(user_errors(bench))
