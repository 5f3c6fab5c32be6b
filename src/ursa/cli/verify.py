"""``ursa verify`` and ``ursa forget``: check a dataset (corrupt, tiny, duplicate, leaked
images), quarantine or restore, and take one image out for good."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from ursa.cli.support import console, errors, progress_bar, user_errors

if TYPE_CHECKING:
    from ursa.verify.checks import VerifyConfig, VerifyReport


def verify(
    path: Annotated[Path, typer.Argument(help="Dataset folder.")],
    fix: Annotated[bool, typer.Option(help="Move rejects to the quarantine folder.")] = False,
    restore: Annotated[bool, typer.Option(help="Put every quarantined file back.")] = False,
    min_side: Annotated[int, typer.Option(help="Smallest image side, pixels.")] = 32,
    threshold: Annotated[int, typer.Option(help="Near-duplicate distance, 0-32 bits of 64.")] = 6,
) -> None:
    """Find broken, tiny, duplicate and leaked images.

    Corrupt, tiny, duplicate, near-duplicate and train/valid-leaked images; --fix moves
    them to the quarantine folder, --restore puts them back. What was checked is recorded
    in the folder's manifest, ursa.sqlite.
    """
    from ursa.cli.support import shown
    from ursa.core.manifest import MANIFEST_NAME
    from ursa.verify.checks import VerifyConfig
    from ursa.verify.checks import fix as apply_fix
    from ursa.verify.checks import restore as undo

    # One ursa at a time changes a folder; a report takes the lock only to record.
    with _changing(errors, path) if fix or restore else nullcontext():
        if restore:
            console.print(f"restored {len(undo(path))} file(s) from the quarantine folder")
            return
        config = VerifyConfig(min_side, near_threshold=threshold)
        had_manifest = (path / MANIFEST_NAME).is_file()
        report = _verify_withprogress_bar(console, path, config)
        _print_findings(console, report, had_manifest=had_manifest)
        if fix and report.to_quarantine:
            moves = apply_fix(report)
            console.print(f"moved {len(moves)} file(s) to {shown(path)}/.ursa-quarantine "
                          f"(undo: --restore)", soft_wrap=True)  # fmt: skip


def forget(
    path: Annotated[Path, typer.Argument(help="Dataset folder.")],
    target: Annotated[str, typer.Argument(help="The image's source URL or its sha256.")],
) -> None:
    """Take one image out for good, and never download it again.

    Its file, its manifest row and every copy of it are removed.
    """
    from ursa.cli.support import shown
    from ursa.verify.checks import forget as run_forget

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


def _changing(errors: Console, path: Path) -> AbstractContextManager[None]:
    """The folder's lock (:func:`ursa.core.manifest.folder_lock`), saying so on stderr
    when another process holds it and this one waits."""
    from ursa.cli.support import shown
    from ursa.core.manifest import folder_lock

    def waiting() -> None:
        errors.print(
            f"waiting: another ursa is changing {shown(path)} (verify --fix or --restore, "
            f"forget, clean); this one goes on when it is done (Ctrl-C to stop)",
            highlight=False, soft_wrap=True,
        )  # fmt: skip

    return folder_lock(path, on_wait=waiting)


def _verify_withprogress_bar(console: Console, path: Path, config: VerifyConfig) -> VerifyReport:
    from ursa.core.imageio import is_image_name
    from ursa.verify.checks import verify_folder

    total = sum(1 for p in path.rglob("*") if is_image_name(p)) if path.is_dir() else 0
    with progress_bar(console, "verifying", total) as (progress, task):
        return verify_folder(path, config, on_file=lambda: progress.advance(task))


def _print_findings(console: Console, report: VerifyReport, *, had_manifest: bool) -> None:
    from ursa.cli.support import print_rows, shown
    from ursa.core.manifest import MANIFEST_NAME

    rows = [[f.kind, f.path, f.other, f.detail, f.action] for f in report.findings]
    if rows:
        print_rows(console, ["kind", "file", "copy of", "detail", "action"], rows)
    counts = ", ".join(f"{n} {kind}" for kind, n in report.counts().items())
    console.print(f"checked {report.checked} image(s): {counts or 'all good'}", highlight=False)
    if report.recorded:  # a file in the user's folder: say that it was written
        console.print(
            f"recorded each image's hashes and findings in {shown(report.root)}/{MANIFEST_NAME} "
            f"({'updated' if had_manifest else 'created'}: the folder's manifest, which gather, "
            f"interpret and clean read too)", highlight=False, soft_wrap=True,
        )  # fmt: skip
    else:
        console.print(
            f"nothing was recorded: {shown(report.root)} is read-only, so its manifest "
            f"({MANIFEST_NAME}) was left as it was", highlight=False, soft_wrap=True,
        )  # fmt: skip


def register(app: typer.Typer) -> None:
    """Add ``verify`` and ``forget`` to the ``ursa`` command."""
    app.command("verify")(user_errors(verify))
    app.command("forget")(user_errors(forget))
