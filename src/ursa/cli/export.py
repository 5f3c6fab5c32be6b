"""``ursa export``: add ONNX / int8 models to a bundle, or write a static web site (``--web``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ursa.cli.choices import Int8Weights, WebPrecision
from ursa.cli.support import console, user_errors


def export(
    bundle: Annotated[Path, typer.Argument(help="A .ursa bundle; it is rewritten in place.")],
    onnx: Annotated[bool, typer.Option("--onnx", help="Add model.onnx (parity-checked).")] = False,
    int8: Annotated[
        bool, typer.Option("--int8", help="Add model.int8.onnx (methods tried cheapest first).")
    ] = False,
    calibrate: Annotated[
        Path | None, typer.Option(help="Folder of your images (one folder per class).")
    ] = None,
    calibration_images: Annotated[int, typer.Option(help="Images to calibrate on.")] = 200,
    max_drop: Annotated[
        float,
        typer.Option(help="Accuracy points int8 may lose (a larger drop is refused when real)."),
    ] = 1.0,
    int8_weights: Annotated[
        Int8Weights,
        typer.Option(
            help="int8 weight bits: 7 keep their accuracy on every CPU, 8 only where int8 "
            "kernels are exact (x86 with VNNI, ARM); auto: 8 on such a CPU, else 7."
        ),
    ] = "auto",
    web: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="Write a static site that runs the model in the browser."),
    ] = None,
    precision: Annotated[
        WebPrecision,
        typer.Option(help="--web's model: auto (int8 when the bundle has one), fp32 or int8."),
    ] = "auto",
    force: Annotated[
        bool, typer.Option("--force", help="--web: replace a previous export in DIR.")
    ] = False,
) -> None:
    """Add checked ONNX models to BUNDLE, or write a web site.

    --onnx and --int8 add model.onnx and model.int8.onnx to BUNDLE, atomically, each
    checked against the PyTorch model; --web DIR writes a static site (upload and live
    camera pages, the model, ONNX Runtime Web) that runs it in the browser.
    """
    from ursa.cli.support import export_report, shown
    from ursa.export.deploy import export_for_serving
    from ursa.export.web import check_web_export, export_web

    if web is None and (precision != "auto" or force):
        from ursa.core.errors import ConfigError

        raise ConfigError("--precision and --force are options of --web DIR: add --web DIR")
    runtime = check_web_export(web, precision=precision, force=force) if web else None  # fail fast
    if calibrate is not None:
        from ursa.cli.checks import data_folder

        data_folder(calibrate, what="a folder of your images to calibrate on")
    if onnx or int8 or web is None:
        steps = "exporting model.onnx and checking it against PyTorch"
        if int8:
            steps += ", then quantizing to int8 and measuring its accuracy"
        with console.status(steps):  # minutes on a large model: say what is going on
            result = export_for_serving(
                bundle, onnx=onnx, int8=int8, calibrate=calibrate,
                calibration_images=calibration_images, max_drop=max_drop,
                weight_bits=None if int8_weights == "auto" else int(int8_weights),
            )  # fmt: skip
        export_report(console, result)
    if web is not None:
        with console.status(f"writing the site into {shown(web)}"):
            site = export_web(bundle, web, precision=precision, force=force, runtime=runtime)
        console.print(shown(site.summary()), highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``export`` to the ``ursa`` command."""
    app.command("export")(user_errors(export))
