"""``ursa clean``: the clean stage's command (the page, and the journal's history and undo)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from ursa.core.errors import DataError

if TYPE_CHECKING:
    from ursa.clean.journal import Entry


def clean(
    first: Annotated[
        Path,
        typer.Argument(
            metavar="BUNDLE",
            help="The .ursa bundle; or, with --history / --undo / --undo-all, the dataset folder.",
        ),
    ],
    second: Annotated[
        Path | None, typer.Argument(metavar="DATA", help="The dataset folder to clean.")
    ] = None,
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8100,
    host: Annotated[
        str, typer.Option(help="Address to listen on (keep it loopback: 127.0.0.1 or ::1).")
    ] = "127.0.0.1",
    browser: Annotated[
        bool, typer.Option("--browser/--no-browser", help="Open the page in a browser.")
    ] = True,
    history: Annotated[bool, typer.Option("--history", help="List every decision.")] = False,
    undo: Annotated[
        list[int] | None, typer.Option("--undo", metavar="N", help="Revert decision #N.")
    ] = None,
    undo_all: Annotated[
        bool, typer.Option("--undo-all", help="Revert every decision in effect.")
    ] = False,
) -> None:
    """Review DATA by loss on a local page: relabel, delete or keep.

    The images come highest loss (as BUNDLE sees them) first; a deleted image goes to the
    quarantine folder, and every decision is journaled and undoable (--history, --undo N).
    """
    from ursa.cli.support import console

    if history or undo or undo_all:
        journal_command(console, second or first, history, undo or [], undo_all)
        return
    if second is None:
        raise DataError(
            f"give the bundle and the folder: `ursa clean m.ursa {first}` (only --history, "
            f"--undo N and --undo-all take the folder alone)"
        )
    serve_page(console, first, second, host=host, port=port, open_browser=browser)


def journal_command(
    console: Console, data: Path, history: bool, undo: list[int], undo_all: bool
) -> None:
    """``--undo N`` (repeatable), ``--undo-all``, then ``--history``: no model needed."""
    from ursa.clean.journal import Journal
    from ursa.cli.support import shown
    from ursa.core.manifest import MANIFEST_NAME

    if data.suffix == ".ursa" and data.is_file():
        raise DataError(f"{data} is a bundle: give the dataset folder, e.g. `ursa clean DATA "
                        f"--history`")  # fmt: skip
    if data.is_dir() and not (data / MANIFEST_NAME).is_file():
        if undo or undo_all:
            raise DataError(f"{data} has no {MANIFEST_NAME}: nothing was ever decided there")
        console.print(f"no decisions yet: {data} has no {MANIFEST_NAME}")
        return
    with Journal(data) as journal:
        for entry in journal.recover():
            console.print(f"settled #{entry.id} left by a crash: {entry.state}", soft_wrap=True)
        for number in undo:
            done = journal.undo(number)
            console.print(f"#{done.id} {shown(done.describe())}", soft_wrap=True, highlight=False)
        if undo_all:
            for done in journal.undo_all():
                console.print(
                    f"#{done.id} {shown(done.describe())}", soft_wrap=True, highlight=False
                )
        if history or not (undo or undo_all):
            print_history(console, journal.history())
        console.print(f"in effect: {journal.summary().line()}", highlight=False)


def print_history(console: Console, entries: list[Entry]) -> None:
    from ursa.cli.support import plain

    if not entries:
        console.print("no decisions yet")
    for entry in entries:
        state = entry.state.replace("_", " ")
        if entry.undone_by is not None:
            state = f"undone by #{entry.undone_by}"
        note = f" ({entry.note})" if entry.note else ""
        console.print(
            f"#{entry.id:<4} {entry.at}  {plain(entry.describe())}  [{state}]{plain(note)}",
            soft_wrap=True, highlight=False, markup=False,
        )  # fmt: skip


def serve_page(
    console: Console, bundle: Path, data: Path, *, host: str, port: int, open_browser: bool
) -> None:
    """Open the session (errors surface here, before the server starts), then serve."""
    from ursa.clean.app import check_port, has_display, page_url, run
    from ursa.clean.session import CleanSession
    from ursa.clean.settings import CleanSettings
    from ursa.cli.checks import data_folder

    settings = CleanSettings(bundle=bundle, data=data, host=host, port=port)
    check_port(settings)  # the quick checks first: predicting every image takes minutes
    data_folder(data)
    with PredictionBar(console) as bar:
        session = CleanSession.open(
            bundle, data, fault=settings.fault, thumbnail_px=settings.thumbnail_px,
            progress=bar.line, on_predicted=bar.update,
        )  # fmt: skip
    summary = session.journal.summary().line()
    console.print(f"journal of {data}: {summary}", highlight=False, soft_wrap=True)
    console.print(
        f"cleaning {data} with {bundle} on {page_url(settings)} (Ctrl-C to stop)",
        highlight=False, soft_wrap=True,
    )  # fmt: skip
    if open_browser and not has_display():
        console.print("no graphical browser here: open that address in one", highlight=False)
    run(settings, session, open_browser=open_browser)


class PredictionBar:
    """The cleaner's first predictions as a bar with the time left, on a terminal; the
    session's step lines print above it (and alone, when piped)."""

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = console
        self.progress = Progress(
            TextColumn("predicting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("left"), TimeRemainingColumn(), console=console, transient=True,
            disable=not console.is_terminal,
        )  # fmt: skip
        self.task: Any = None

    def line(self, text: str) -> None:
        self.progress.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def update(self, done: int, total: int) -> None:
        if self.task is None:
            self.task = self.progress.add_task("predict", total=total)
        self.progress.update(self.task, completed=done, total=total)

    def __enter__(self) -> PredictionBar:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


def register(app: typer.Typer) -> None:
    """Add ``clean`` to the ``ursa`` command."""
    from ursa.cli.support import user_errors

    app.command("clean")(user_errors(clean))
