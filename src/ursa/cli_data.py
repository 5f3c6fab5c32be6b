"""``ursa gather``, ``ursa verify``, ``ursa sources``, ``ursa forget``: building a dataset."""

from __future__ import annotations

import os
import sys
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from ursa.errors import ConfigError

if TYPE_CHECKING:
    from ursa.data.download import DownloadReport
    from ursa.data.search import SearchProvider
    from ursa.data.verify import VerifyConfig, VerifyReport


def register(app: typer.Typer) -> None:
    """Add the dataset commands to ``app``."""
    from ursa.cli_support import console, errors, user_errors

    @app.command(context_settings={"allow_extra_args": True})
    @user_errors
    def gather(
        context: typer.Context,
        path: Annotated[Path, typer.Argument(help="Dataset folder (one sub-folder per class).")],
        classes: Annotated[
            list[str],
            typer.Option(help="Class names: --classes grizzly black teddy (or comma-separated)."),
        ],
        query: Annotated[str, typer.Option(help="Search query; {} is the class name.")] = "{}",
        per_class: Annotated[int, typer.Option(help="Images wanted per class.")] = 150,
        provider: Annotated[
            str, typer.Option(help="openverse, ddg, bing or google.")
        ] = "openverse",
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
        from ursa.data.download import DownloadConfig, GatherConfig
        from ursa.data.download import gather as run_gather

        names = [n for c in [*classes, *context.args] for n in c.split(",") if n.strip()]
        search = _provider(provider, base_url, api_key, google_cx)
        config = GatherConfig(tuple(names), query, per_class, _license(license))
        download_config = DownloadConfig(
            concurrency=concurrency, timeout=timeout, max_bytes=int(max_mb * 1e6),
            retries=retries, min_side=min_side, allow_hosts=tuple(allow_host or ()),
        )  # fmt: skip
        with _bar(console, "downloading", per_class * len(names)) as (progress, task):
            report = run_gather(
                path, config, search, download_config,
                on_event=lambda e: progress.advance(task) if e.outcome == "saved" else None,
            )  # fmt: skip
        _print_gather(console, path, report)

    @app.command()
    @user_errors
    def verify(
        path: Annotated[Path, typer.Argument(help="Dataset folder.")],
        fix: Annotated[bool, typer.Option(help="Move rejects to the quarantine folder.")] = False,
        restore: Annotated[bool, typer.Option(help="Put every quarantined file back.")] = False,
        min_side: Annotated[int, typer.Option(help="Smallest image side, pixels.")] = 32,
        threshold: Annotated[
            int, typer.Option(help="Near-duplicate distance, 0-32 bits of 64.")
        ] = 6,
    ) -> None:
        """Find corrupt, tiny, duplicate, near-duplicate and train/valid-leaked images."""
        from ursa.cli_support import shown
        from ursa.data.verify import VerifyConfig
        from ursa.data.verify import fix as apply_fix
        from ursa.data.verify import restore as undo

        # One ursa at a time changes a folder; a report takes the lock only to record.
        with _changing(errors, path) if fix or restore else nullcontext():
            if restore:
                console.print(f"restored {len(undo(path))} file(s) from the quarantine folder")
                return
            config = VerifyConfig(min_side, near_threshold=threshold)
            report = _verify_with_bar(console, path, config)
            _print_findings(console, report)
            if fix and report.to_quarantine:
                moves = apply_fix(report)
                console.print(f"moved {len(moves)} file(s) to {shown(path)}/.ursa-quarantine "
                              f"(undo: --restore)", soft_wrap=True)  # fmt: skip

    @app.command()
    @user_errors
    def sources(
        path: Annotated[Path, typer.Argument(help="Dataset folder with ursa.sqlite.")],
        format: Annotated[str, typer.Option(help="csv or json.")] = "csv",
        output: Annotated[
            Path | None, typer.Option("--output", "-o", help="File to write.")
        ] = None,
    ) -> None:
        """Who made each image, where it came from and under which licence (CSV or JSON)."""
        from ursa.cli_support import shown
        from ursa.data.manifest import Manifest, export_to_file

        fmt = _format(format)
        if output is not None:
            count = export_to_file(path, output, fmt)
            console.print(f"wrote {count} row(s) to {shown(output)}", soft_wrap=True)
            return
        with Manifest(path, read_only=True) as manifest:
            manifest.export(sys.stdout, fmt)

    @app.command()
    @user_errors
    def forget(
        path: Annotated[Path, typer.Argument(help="Dataset folder.")],
        target: Annotated[str, typer.Argument(help="The image's source URL or its sha256.")],
    ) -> None:
        """Take one image out for good: its file, manifest row and every copy; never re-download."""
        from ursa.cli_support import shown
        from ursa.data.verify import forget as run_forget

        with _changing(errors, path):
            report = run_forget(path, target)
        for removed in report.removed:
            console.print(f"removed {shown(removed)}", highlight=False, soft_wrap=True)
        if not report.removed:
            console.print(f"{shown(target)} is not in {shown(path)}; recorded so gather never "
                          f"saves it", soft_wrap=True)  # fmt: skip
        console.print(
            f"recorded {report.recorded} hash(es) in {shown(path)}/ursa.sqlite", soft_wrap=True
        )


def _provider(
    name: str, base_url: str | None, api_key: str | None, cx: str | None
) -> SearchProvider:
    from ursa.data.search import make_provider

    key = api_key or os.environ.get(f"URSA_{name.upper()}_KEY", "")
    engine = cx or os.environ.get("URSA_GOOGLE_CX", "")
    client_id = os.environ.get("URSA_OPENVERSE_CLIENT_ID", "") if name == "openverse" else ""
    secret = os.environ.get("URSA_OPENVERSE_CLIENT_SECRET", "") if name == "openverse" else ""
    return make_provider(
        name, base_url=base_url, api_key=key, engine_id=engine,
        client_id=client_id, client_secret=secret,
    )  # fmt: skip


def _license(text: str) -> Literal["any", "commercial", "modification"]:
    for choice in ("any", "commercial", "modification"):
        if text == choice:
            return choice
    raise ConfigError(f"--license {text}: use any, commercial or modification")


def _format(text: str) -> Literal["csv", "json"]:
    for choice in ("csv", "json"):
        if text == choice:
            return choice
    raise ConfigError(f"--format {text}: use csv or json")


def _changing(errors: Console, path: Path) -> AbstractContextManager[None]:
    """The folder's lock (:func:`ursa.data.manifest.folder_lock`), saying so on stderr
    when another process holds it and this one waits."""
    from ursa.cli_support import shown
    from ursa.data.manifest import folder_lock

    def waiting() -> None:
        errors.print(
            f"waiting: another ursa is changing {shown(path)} (verify --fix or --restore, "
            f"forget, clean); this one goes on when it is done (Ctrl-C to stop)",
            highlight=False, soft_wrap=True,
        )  # fmt: skip

    return folder_lock(path, on_wait=waiting)


class _bar:
    """A rich progress bar as a context manager yielding (progress, task)."""

    def __init__(self, console: Console, label: str, total: int) -> None:
        self.progress = Progress(
            TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=True, disable=not console.is_terminal,
        )  # fmt: skip
        self.task = self.progress.add_task(label, total=total)

    def __enter__(self) -> tuple[Progress, TaskID]:
        self.progress.start()
        return self.progress, self.task

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


def _verify_with_bar(console: Console, path: Path, config: VerifyConfig) -> VerifyReport:
    from ursa.data.imageio import is_image_name
    from ursa.data.verify import verify_folder

    total = sum(1 for p in path.rglob("*") if is_image_name(p)) if path.is_dir() else 0
    with _bar(console, "verifying", total) as (progress, task):
        return verify_folder(path, config, on_file=lambda: progress.advance(task))


def _print_gather(console: Console, path: Path, report: DownloadReport) -> None:
    from ursa.cli_support import plain, shown

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


def _print_findings(console: Console, report: VerifyReport) -> None:
    from ursa.cli_support import print_rows, shown
    from ursa.data.manifest import MANIFEST_NAME

    rows = [[f.kind, f.path, f.other, f.detail, f.action] for f in report.findings]
    if rows:
        print_rows(console, ["kind", "file", "copy of", "detail", "action"], rows)
    counts = ", ".join(f"{n} {kind}" for kind, n in report.counts().items())
    console.print(f"checked {report.checked} image(s): {counts or 'all good'}", highlight=False)
    if not report.recorded:
        console.print(
            f"nothing was recorded: {shown(report.root)} is read-only, so its manifest "
            f"({MANIFEST_NAME}) was left as it was", highlight=False, soft_wrap=True,
        )  # fmt: skip
