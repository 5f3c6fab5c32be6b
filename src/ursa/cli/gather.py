"""``ursa gather`` and ``ursa sources``: build a dataset from an image search, and list
who made each image and under which licence."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from ursa.cli.choices import License, SearchProvider, SourcesFormat
from ursa.cli.support import console, progress_bar, user_errors

if TYPE_CHECKING:
    from ursa.gather.download import DownloadReport
    from ursa.gather.search import SearchProvider as Search


def gather(
    context: typer.Context,
    path: Annotated[Path, typer.Argument(help="Dataset folder (one sub-folder per class).")],
    classes: Annotated[
        list[str],
        typer.Option(help="Class names: --classes grizzly black teddy (or comma-separated)."),
    ],
    query: Annotated[str, typer.Option(help="Search query; {} is the class name.")] = "{}",
    per_class: Annotated[int, typer.Option(help="Images wanted per class.")] = 150,
    provider: Annotated[SearchProvider, typer.Option(help="The image search.")] = "openverse",
    license: Annotated[
        License,
        typer.Option(help="Licences kept: any, free for commercial use, or free to modify."),
    ] = "any",
    base_url: Annotated[str | None, typer.Option(help="The provider's API base URL.")] = None,
    api_key: Annotated[str | None, typer.Option(help="Key (bing, google).")] = None,
    google_cx: Annotated[str | None, typer.Option(help="Google search-engine id.")] = None,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(help="Private host to allow anyway (host, host:port or CIDR)."),
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Downloads at once.")] = 8,
    timeout: Annotated[float, typer.Option(help="Seconds per request.")] = 20.0,
    max_mb: Annotated[float, typer.Option(help="Largest file to keep, in MB.")] = 20.0,
    retries: Annotated[int, typer.Option(help="Retries after a transient error.")] = 2,
    min_side: Annotated[int, typer.Option(help="Smallest image side kept, pixels.")] = 32,
) -> None:
    """Download images of each class from an image search.

    Only good, unique images are kept; running it again fetches what is still missing.
    """
    from ursa.gather.download import DownloadConfig, GatherConfig
    from ursa.gather.download import gather as run_gather

    names = [n for c in [*classes, *context.args] for n in c.split(",") if n.strip()]
    search = _provider(provider, base_url, api_key, google_cx)
    config = GatherConfig(tuple(names), query, per_class, license)
    download_config = DownloadConfig(
        concurrency=concurrency, timeout=timeout, max_bytes=int(max_mb * 1e6),
        retries=retries, min_side=min_side, allow_hosts=tuple(allow_host or ()),
    )  # fmt: skip
    with progress_bar(console, "downloading", per_class * len(names)) as (progress, task):
        report = run_gather(
            path, config, search, download_config,
            on_event=lambda e: progress.advance(task) if e.outcome == "saved" else None,
        )  # fmt: skip
    _print_gather(console, path, report)


def sources(
    path: Annotated[Path, typer.Argument(help="Dataset folder with ursa.sqlite.")],
    format: Annotated[SourcesFormat, typer.Option(help="The output format.")] = "csv",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write.")] = None,
) -> None:
    """List who made each image and under which licence.

    Where each image came from, as CSV or JSON, from the manifest gather writes.
    """
    from ursa.cli.support import shown
    from ursa.core.manifest import Manifest, export_to_file

    if output is not None:
        count = export_to_file(path, output, format)
        console.print(f"wrote {count} row(s) to {shown(output)}", soft_wrap=True)
        return
    with Manifest(path, read_only=True) as manifest:
        manifest.export(sys.stdout, format)


def _provider(name: str, base_url: str | None, api_key: str | None, cx: str | None) -> Search:
    from ursa.gather.search import make_provider

    key = api_key or os.environ.get(f"URSA_{name.upper()}_KEY", "")
    engine = cx or os.environ.get("URSA_GOOGLE_CX", "")
    client_id = os.environ.get("URSA_OPENVERSE_CLIENT_ID", "") if name == "openverse" else ""
    secret = os.environ.get("URSA_OPENVERSE_CLIENT_SECRET", "") if name == "openverse" else ""
    return make_provider(
        name, base_url=base_url, api_key=key, engine_id=engine,
        client_id=client_id, client_secret=secret,
    )  # fmt: skip


def _print_gather(console: Console, path: Path, report: DownloadReport) -> None:
    from ursa.cli.support import plain, shown

    for label, count in report.saved.items():
        console.print(f"{shown(label)}: {count}/{report.target} images", highlight=False)
    tally = ", ".join(f"{n} {kind}" for kind, n in sorted(report.outcomes.items()))
    console.print(f"this run: {tally or 'nothing new to fetch'}", highlight=False)
    for note in report.notes:
        console.print(plain(note), markup=False, highlight=False, soft_wrap=True)
    if report.short:
        console.print(
            "[yellow]some classes have fewer images than asked; run the same command again, "
            "or try another --provider or --query[/]"
        )
    console.print(
        f"manifest: {shown(path)}/ursa.sqlite (`ursa sources {shown(path)}` lists licences)",
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    """Add ``gather`` and ``sources`` to the ``ursa`` command."""
    app.command("gather", context_settings={"allow_extra_args": True})(user_errors(gather))
    app.command("sources")(user_errors(sources))
