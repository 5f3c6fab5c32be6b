"""``ursa export``, ``ursa serve`` and ``ursa bench``: the export and serve stages' commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ursa.cli_support import console, user_errors


@user_errors
def export(
    bundle: Annotated[Path, typer.Argument(help="A .ursa bundle; it is rewritten in place.")],
    onnx: Annotated[bool, typer.Option("--onnx", help="Add model.onnx (parity-checked).")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Add model.int8.onnx.")] = False,
    calibrate: Annotated[
        Path | None, typer.Option(help="Folder of your images (one folder per class).")
    ] = None,
    calibration_images: Annotated[int, typer.Option(help="Images to calibrate on.")] = 200,
    max_drop: Annotated[float, typer.Option(help="Accuracy points int8 may lose.")] = 1.0,
    web: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="Write a static site that runs the model in the browser."),
    ] = None,
    precision: Annotated[
        str, typer.Option(help="--web's model: auto (int8 when the bundle has one), fp32, int8.")
    ] = "auto",
    force: Annotated[
        bool, typer.Option("--force", help="--web: replace a previous export in DIR.")
    ] = False,
) -> None:
    """Add a checked ONNX model (and an int8 one) to BUNDLE, atomically; --web DIR writes a
    static site (upload and live camera pages, the model, ONNX Runtime Web) that runs it."""
    from ursa.cli_support import export_report, shown
    from ursa.export.deploy import export_for_serving
    from ursa.export.web import check_web_export, export_web

    if web is None and (precision != "auto" or force):
        from ursa.errors import ConfigError

        raise ConfigError("--precision and --force are options of --web DIR: add --web DIR")
    runtime = check_web_export(web, precision=precision, force=force) if web else None  # fail fast
    if onnx or int8 or web is None:
        result = export_for_serving(
            bundle, onnx=onnx, int8=int8, calibrate=calibrate,
            calibration_images=calibration_images, max_drop=max_drop,
        )  # fmt: skip
        export_report(console, result)
    if web is not None:
        site = export_web(bundle, web, precision=precision, force=force, runtime=runtime)
        console.print(shown(site.summary()), highlight=False, soft_wrap=True)


@user_errors
def serve(
    bundle: Annotated[Path, typer.Argument(help="A .ursa bundle holding model.onnx.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Server processes.", envvar="URSA_WORKERS")] = 1,
    int8: Annotated[
        bool, typer.Option("--int8", help="Serve model.int8.onnx.", envvar="URSA_INT8")
    ] = False,
    provider: Annotated[
        str, typer.Option(help="cpu, cuda or tensorrt.", envvar="URSA_PROVIDER")
    ] = "cpu",
    threads: Annotated[
        int | None, typer.Option(help="Model threads per process.", envvar="URSA_THREADS")
    ] = None,
) -> None:
    """Serve BUNDLE over HTTP: /predict, /predict/batch, /metadata, /metrics, pages / and /live."""
    from ursa.serve.app import run
    from ursa.serve.predictor import Predictor
    from ursa.serve.settings import ServeSettings

    settings = ServeSettings.load(
        bundle=bundle, int8=int8, provider=provider, threads=threads, workers=workers, host=host
    )
    Predictor(bundle, int8=int8, provider=provider, threads=1)  # fail here, not in a worker
    from ursa.cli_support import shown

    console.print(
        f"serving {shown(bundle)} on http://{shown(host)}:{port} (pages / and /live, API /docs)"
    )
    run(settings, host=host, port=port)


@user_errors
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
    """Latency p50/p90/p99 and throughput, in-process and over HTTP, fp32 and int8."""
    from ursa.cli_support import print_bench
    from ursa.serve.bench import run_bench

    rows = run_bench(bundle, images, concurrency, requests, http=http, max_batch=max_batch)
    print_bench(console, rows)


def register(app: typer.Typer) -> None:
    """Add export, serve and bench to the ``ursa`` command."""
    app.command()(export)
    app.command()(serve)
    app.command()(bench)
