"""The cleaning API in-process: listing by loss, decisions, and every bad request a clear 4xx
that leaves the folder exactly as it was."""

from __future__ import annotations

import math
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.clean.conftest import assert_journal_matches_disk, snapshot
from ursa.clean.app import create_app
from ursa.clean.settings import CleanSettings
from ursa.clean.thumbnails import CACHE_DIR
from ursa.core.manifest import MANIFEST_NAME


class Page:
    """A client that behaves like the page: it knows the token the page carries."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        html = client.get("/").text
        self.token = html.split('name="ursa-token" content="')[1].split('"')[0]

    def listing(self, **query: Any) -> dict[str, Any]:
        response = self.client.get("/api/images", params={"limit": 500, **query})
        assert response.status_code == 200, response.text
        return dict(response.json())

    def post(self, path: str, body: dict[str, Any] | None = None, **headers: str) -> Any:
        sent = {"X-Ursa-Token": self.token, **headers}
        return self.client.post(path, json=body, headers={k: v for k, v in sent.items() if v})


@pytest.fixture
def page(tiny_bundle: tuple[Path, Path], dataset: Path) -> Iterator[Page]:
    settings = CleanSettings(bundle=tiny_bundle[0], data=dataset)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        yield Page(client)


def first(page: Page, label: str = "red") -> dict[str, Any]:
    return dict(page.listing(label=label)["images"][0])


def test_images_come_highest_loss_first_with_prediction_and_split(page: Page) -> None:
    listing = page.listing(label="all")
    assert listing["total"] == 90
    losses = [image["loss"] for image in listing["images"]]
    assert losses == sorted(losses, reverse=True)
    image = listing["images"][0]
    probabilities = image["label_probability"]
    assert math.isclose(image["loss"], -math.log(probabilities), rel_tol=1e-6)
    assert image["predicted"] in ("blue", "green", "red") and 0 < image["probability"] <= 1
    train, valid = page.listing(split="train"), page.listing(split="valid")
    assert train["total"] + valid["total"] == 90 and valid["total"] > 0
    assert {i["split"] for i in valid["images"]} == {"valid"}
    # paging: two pages of 50 hold the whole listing, in the same order
    pages = [page.listing(offset=offset, limit=50)["images"] for offset in (0, 50)]
    assert [i["id"] for i in pages[0] + pages[1]] == [i["id"] for i in listing["images"]]


def test_thumbnails_are_made_once_and_cached(page: Page, dataset: Path) -> None:
    image = first(page)
    response = page.client.get(image["thumbnail"])
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert response.content[:2] == b"\xff\xd8"
    cached = list((dataset / CACHE_DIR / "thumbnails").rglob("*.jpg"))
    assert len(cached) == 1 and cached[0].read_bytes() == response.content


def test_relabel_delete_keep_undo(page: Page, dataset: Path) -> None:
    image = first(page)
    moved = page.post(f"/api/images/{image['id']}/relabel", {"label": "blue", "version": 1})
    assert moved.status_code == 200, moved.text
    assert moved.json()["image"]["label"] == "blue"
    assert moved.json()["summary"]["relabeled"] == 1
    assert (dataset / "blue" / moved.json()["image"]["name"]).is_file()
    assert not (dataset / "red" / image["name"]).exists()
    other = first(page, "green")
    deleted = page.post(f"/api/images/{other['id']}/delete", {"version": other["version"]})
    assert deleted.status_code == 200 and deleted.json()["image"]["state"] == "deleted"
    assert page.listing(state="deleted")["total"] == 1
    undone = page.post(f"/api/journal/{deleted.json()['entry']['id']}/undo")
    assert undone.status_code == 200 and undone.json()["image"]["state"] == "active"
    assert (dataset / "green" / other["name"]).is_file()
    assert_journal_matches_disk(dataset)


def test_the_second_of_two_conflicting_tabs_gets_409(page: Page, dataset: Path) -> None:
    image = first(page)
    stale = {"version": image["version"]}
    assert page.post(f"/api/images/{image['id']}/delete", stale).status_code == 200
    before = snapshot(dataset)
    answer = page.post(f"/api/images/{image['id']}/relabel", {**stale, "label": "green"})
    assert answer.status_code == 409
    assert "changed since this page showed it" in answer.json()["detail"]
    assert "reload" in answer.json()["detail"]
    assert snapshot(dataset) == before
    assert_journal_matches_disk(dataset)


BAD_REQUESTS = {
    "traversal in the id": ("/api/images/..%2F..%2Fetc%2Fpasswd/delete", {"version": 1}, {}),
    "dot-dot id": ("/api/images/%2E%2E/delete", {"version": 1}, {}),
    "a path as the id": ("/api/images/red%2F00.png/keep", {"version": 1}, {}),
    "a path in the body": ("/api/images/{id}/keep", {"version": 1, "path": "../x.png"}, {}),
    "traversal as the class": ("/api/images/{id}/relabel", {"version": 1, "label": "../x"}, {}),
    "a class that does not exist": (
        "/api/images/{id}/relabel",
        {"version": 1, "label": "purple"},
        {},
    ),
    "an unknown id": ("/api/images/99999/delete", {"version": 1}, {}),
    "a negative id": ("/api/images/-1/delete", {"version": 1}, {}),
    "an unknown decision": ("/api/journal/99999/undo", None, {}),
    "no token": ("/api/images/{id}/delete", {"version": 1}, {"X-Ursa-Token": ""}),
    "a forged token": ("/api/images/{id}/delete", {"version": 1}, {"X-Ursa-Token": "x" * 43}),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_requests_are_clear_4xx_and_change_nothing(
    page: Page, dataset: Path, case: str
) -> None:
    path, body, headers = BAD_REQUESTS[case]
    image = first(page)
    before = snapshot(dataset)
    answer = page.post(path.format(id=image["id"]), body, **headers)
    assert 400 <= answer.status_code < 500, answer.text
    detail = answer.json()["detail"]
    assert detail  # a message, not an empty error
    if "token" in case:
        assert answer.status_code == 403 and "token" in str(detail).lower()
    if "class" in case:
        assert answer.status_code == 400 and "no class" in detail
    if "unknown" in case:
        assert answer.status_code == 404
    assert snapshot(dataset) == before
    with sqlite3.connect(dataset / MANIFEST_NAME) as db:
        assert db.execute("SELECT COUNT(*) FROM clean_journal").fetchone() == (0,)


def test_an_unknown_thumbnail_is_404_and_a_foreign_host_is_refused(page: Page) -> None:
    assert page.client.get("/api/images/..%2F..%2Fetc%2Fpasswd/thumbnail").status_code == 404
    assert page.client.get("/api/images/424242/thumbnail").status_code == 404
    rebinding = page.client.get("/", headers={"Host": "attacker.example"})
    assert rebinding.status_code == 400 and "ursa-token" not in rebinding.text


def test_the_page_cannot_be_framed_and_loads_nothing_from_elsewhere(page: Page) -> None:
    answer = page.client.get("/")
    assert answer.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert "http" not in answer.text.split("<body>")[0].replace('"http-equiv', "")


def test_a_restart_uses_cached_predictions(
    page: Page, tiny_bundle: tuple[Path, Path], dataset: Path
) -> None:
    from ursa.clean.session import CleanSession

    lines: list[str] = []
    session = CleanSession.open(tiny_bundle[0], dataset, progress=lines.append)
    session.close()
    assert lines == ["90 images; predicting 0 (the rest are cached)"]


def test_a_class_the_model_does_not_know_is_refused_at_start(
    tiny_bundle: tuple[Path, Path], dataset: Path
) -> None:
    from ursa.clean.session import CleanSession
    from ursa.core.errors import DataError

    shutil.copytree(dataset / "red", dataset / "purple")
    with pytest.raises(DataError, match="classes the model does not know: purple"):
        CleanSession.open(tiny_bundle[0], dataset)


def test_deleted_images_of_a_class_the_model_lacks_are_shown_not_a_crash(
    tiny_bundle: tuple[Path, Path], dataset: Path
) -> None:
    from ursa.clean.journal import Journal
    from ursa.clean.session import CleanSession

    shutil.copytree(dataset / "red", dataset / "purple")
    with Journal(dataset) as journal:
        journal.sync()
        for image in journal.images():
            if image.label == "purple":
                journal.delete(image.id)
    session = CleanSession.open(tiny_bundle[0], dataset)  # only deleted images are purple
    try:
        views = [session.view(i) for i in session.journal.images() if i.label == "purple"]
        assert views and all("not one this model knows" in v.problem for v in views)
        assert all(v.predicted is None and v.loss is None for v in views)
    finally:
        session.close()


def test_listening_everywhere_still_checks_the_host_name(tmp_path: Path) -> None:
    import socket

    loopback = CleanSettings(bundle=tmp_path / "m.ursa", data=tmp_path, host="127.0.0.1")
    everywhere = CleanSettings(bundle=tmp_path / "m.ursa", data=tmp_path, host="0.0.0.0")
    assert loopback.allowed_hosts() == ["127.0.0.1", "::1", "localhost"]
    hosts = everywhere.allowed_hosts()
    assert "*" not in hosts and "evil.example" not in hosts
    assert {"127.0.0.1", "localhost", socket.gethostname()} <= set(hosts)
