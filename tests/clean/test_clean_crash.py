"""Kill the real server in the middle of a relabel; a restart makes journal and disk agree."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import pytest

from tests.clean.conftest import CleanServer, assert_journal_matches_disk, clean_server, snapshot
from ursa.core.manifest import MANIFEST_NAME


def journal_states(folder: Path) -> list[str]:
    with sqlite3.connect(folder / MANIFEST_NAME) as db:
        return [row[0] for row in db.execute("SELECT state FROM clean_journal ORDER BY id")]


@pytest.mark.parametrize(
    ("fault", "outcome"), [("before-move", "rolled_back"), ("after-move", "done")]
)
def test_a_relabel_killed_midway_is_settled_on_restart(
    tiny_bundle: tuple[Path, Path], dataset: Path, fault: str, outcome: str
) -> None:
    bundle = tiny_bundle[0]
    before = snapshot(dataset)
    server = CleanServer(bundle, dataset, {"URSA_CLEAN_FAULT": fault})
    try:
        server.wait_ready()
        status, listing = server.request("GET", "/api/images?label=red&limit=1")
        image = listing["images"][0]
        with pytest.raises(OSError):  # the server dies before it answers
            server.request(
                "POST", f"/api/images/{image['id']}/relabel", {"label": "green", "version": 1}
            )
        assert server.process.wait(timeout=30) == -signal.SIGKILL
    finally:
        server.stop()
    assert journal_states(dataset) == ["pending"]  # the intent was written, then the kill

    with clean_server(bundle, dataset) as restarted:
        assert journal_states(dataset) == [outcome]
        assert_journal_matches_disk(dataset)
        status, now = restarted.request("GET", f"/api/images/{image['id']}")
        assert status == 200
        if outcome == "done":  # the file had moved: the decision is finished
            assert now["label"] == "green"
            assert (dataset / "green" / now["name"]).is_file()
            assert not (dataset / "red" / image["name"]).exists()
        else:  # the file had not moved: the decision is rolled back, nothing changed
            assert now["label"] == "red" and now["version"] == image["version"]
            assert snapshot(dataset) == before
        # and the page's view of the folder agrees with the folder
        status, red = restarted.request("GET", "/api/images?label=red&limit=500")
        assert {i["name"] for i in red["images"]} == {p.name for p in (dataset / "red").iterdir()}
