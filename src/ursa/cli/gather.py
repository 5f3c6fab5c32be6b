"""``ursa gather`` and ``ursa sources``: build a dataset from an image search, and list
who made each image and under which licence."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.console import Console

from ursa.cli.support import console, progress_bar, user_errors
from ursa.core.errors import ConfigError

if TYPE_CHECKING:
    from ursa.gather.download import DownloadReport
    from ursa.gather.search import LicenseFilter, SearchProvider


def gather(
    context: typer.Context,
    path: Annotated[Path, typer.Argument(help="Dataset folder (one sub-folder per class).")],
    classes: Annotated[
        list[str],
        typer.Option(help="Class names: --classes grizzly black teddy (or comma-separated)."),
    ],
    query: Annotated[str, typer.Option(help="Search query; {} is the class name.")] = "{}",
    per_class: Annotated[int, typer.Option(help="Images wanted per class.")] = 150,
    provider: Annotated[str, typer.Option(help="openverse, ddg, bing or google.")] = "openverse",
    license: Annotated[str, typer.Option(help="any, commercial or modification.")] = "any",
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
    """Search the web for images of each class and download the good, unique ones."""
    from ursa.gather.download import DownloadConfig, GatherConfig
    from ursa.gather.download import gather as run_gather

    names = [n for c in [*classes, *context.args] for n in c.split(",") if n.strip()]
    search = _provider(provider, base_url, api_key, google_cx)
    config = GatherConfig(tuple(names), query, per_class, _license(license))
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
    format: Annotated[str, typer.Option(help="csv or json.")] = "csv",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write.")] = None,
) -> None:
    """Who made each image, where it came from and under which licence (CSV or JSON)."""
    from ursa.cli.support import shown
    from ursa.core.manifest import Manifest, export_to_file

    fmt = _format(format)
    if output is not None:
        count = export_to_file(path, output, fmt)
        console.print(f"wrote {count} row(s) to {shown(output)}", soft_wrap=True)
        return
    with Manifest(path, read_only=True) as manifest:
        manifest.export(sys.stdout, fmt)


def _provider(
    name: str, base_url: str | None, api_key: str | None, cx: str | None
) -> SearchProvider:
    from ursa.gather.search import make_provider

    key = api_key or os.environ.get(f"URSA_{name.upper()}_KEY", "")
    engine = cx or os.environ.get("URSA_GOOGLE_CX", "")
    client_id = os.environ.get("URSA_OPENVERSE_CLIENT_ID", "") if name == "openverse" else ""
    secret = os.environ.get("URSA_OPENVERSE_CLIENT_SECRET", "") if name == "openverse" else ""
    return make_provider(
        name, base_url=base_url, api_key=key, engine_id=engine,
        client_id=client_id, client_secret=secret,
    )  # fmt: skip


def _license(text: str) -> LicenseFilter:
    from ursa.gather.search import LICENSE_FILTERS

    for choice in LICENSE_FILTERS:
        if text == choice:
            return choice
    raise ConfigError(f"--license {text}: use one of {', '.join(LICENSE_FILTERS)}")


def _format(text: str) -> Literal["csv", "json"]:
    for choice in ("csv", "json"):
        if text == choice:
            return choice
    raise ConfigError(f"--format {text}: use csv or json")


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
