"""Attacks on ``ursa gather`` (issue 14, items 7, 8 and 18), against the fake web on 127.0.0.1.

* 7: a malformed URL in a search result or in a redirect is recorded as refused, and the
  run (and every rerun) goes on;
* 8: IPv6 forms that embed a private IPv4 address are refused like the address itself;
* 18: a search API that throttles is paced, waited for and retried, and paging stops at
  the service's cap with a note; Openverse client credentials get its higher tier.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.gather.fakeweb import FakeClock, FakeWeb, Resource, encode, structured_image
from ursa.cli import app
from ursa.core.errors import ConfigError
from ursa.core.manifest import Manifest
from ursa.gather.download import DownloadConfig, GatherConfig, Refused, Target, UrlGuard, gather
from ursa.gather.search import OpenverseProvider, SearchError

runner = CliRunner()

#: Search results and redirect targets that broke ``ursa gather`` before: each raised out of
#: the run (ValueError, httpx.InvalidURL) or was retried on every run as a transient failure.
MALFORMED_RESULTS = (
    "http://[::1/x.png",  # urlsplit: ValueError("Invalid IPv6 URL")
    "http://exa mple.com/z.jpg",  # a space in the host
    "http://127.0.0.1:99999/p.jpg",  # a port out of range
)
MALFORMED_REDIRECTS = {
    "/to-backslash.jpg": "http:\\\\127.0.0.1:1/x",  # httpx.InvalidURL while building the hop
    "/to-open-bracket.jpg": "http://[::1/y.png",  # httpx: "Invalid URL in location header"
}


@pytest.fixture
def web() -> Iterator[FakeWeb]:
    with FakeWeb() as server:
        yield server


def plant_good(web: FakeWeb, query: str, count: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for index in range(count):
        path = f"/{query}/{index}.jpg"
        web.add(path, Resource(encode(structured_image(rng), "JPEG")))
        web.add_result(query, path)


def plant_malformed(web: FakeWeb, query: str) -> list[str]:
    """Malformed results and redirects for ``query``; returns the URLs the results carry."""
    urls = list(MALFORMED_RESULTS)
    for url in MALFORMED_RESULTS:
        web.add_result(query, url)
    for path, location in MALFORMED_REDIRECTS.items():
        urls.append(web.add(path, Resource(status=302, location=location)))
        web.add_result(query, path)
    return urls


def config_for(web: FakeWeb) -> DownloadConfig:
    return DownloadConfig(concurrency=2, timeout=2.0, retries=0, allow_hosts=(web.host,))


def check(guard: UrlGuard, url: str) -> Target:
    return asyncio.run(guard.check(url))


# -- 7: malformed URLs ----------------------------------------------------------------------


def test_malformed_result_and_redirect_urls_are_refused_recorded_and_the_run_goes_on(
    web: FakeWeb, tmp_path: Path
) -> None:
    urls = plant_malformed(web, "cat")
    plant_good(web, "cat", 3)
    root = tmp_path / "cats"
    provider = OpenverseProvider(web.base, clock=FakeClock())
    report = gather(root, GatherConfig(("cat",), per_class=4), provider, config_for(web))
    assert report.saved == {"cat": 3}  # every good image, after the malformed ones
    refused = {event.url: event.reason for event in report.events if event.outcome == "refused"}
    assert set(refused) == set(urls)
    assert all("malformed" in reason for reason in refused.values()), refused
    with Manifest(root) as manifest:
        outcomes = manifest.fetch_outcomes()
    assert all(outcomes[url] == "refused" for url in urls)


def test_gather_command_finishes_a_run_with_malformed_urls_and_its_rerun(
    web: FakeWeb, tmp_path: Path
) -> None:
    urls = plant_malformed(web, "cat")
    plant_good(web, "cat", 2)
    root = tmp_path / "cats"
    args = [
        "gather", str(root), "--classes", "cat", "--per-class", "4", "--base-url", web.base,
        "--allow-host", web.host, "--retries", "0", "--timeout", "2",
    ]  # fmt: skip
    first = runner.invoke(app, args)
    assert first.exit_code == 0 and first.exception is None, first.output
    assert "cat: 2/4 images" in first.output
    assert f"{len(urls)} refused, 2 saved" in first.output
    hits = dict(web.hits)
    again = runner.invoke(app, args)  # the same command: it died the same way before
    assert again.exit_code == 0 and again.exception is None, again.output
    assert "cat: 2/4 images" in again.output and "nothing new to fetch" in again.output
    assert all(web.hits[path] == hits[path] for path in MALFORMED_REDIRECTS)  # not asked again
    with Manifest(root) as manifest:
        outcomes = manifest.fetch_outcomes()
    assert all(outcomes[url] == "refused" for url in urls)


def test_lone_surrogates_in_search_results_are_refused_or_replaced_not_a_crash(
    web: FakeWeb, tmp_path: Path
) -> None:
    # "\ud800" is valid JSON, but no UTF-8 text: the manifest cannot store it as it is.
    plant_good(web, "cat", 1)
    web.results["cat"][0]["title"] = "a \ud800 title"
    web.add_result("cat", web.url("/\udc80.jpg"))
    root = tmp_path / "cats"
    provider = OpenverseProvider(web.base, clock=FakeClock())
    config = GatherConfig(("cat",), per_class=2)
    report = gather(root, config, provider, config_for(web))
    assert report.saved == {"cat": 1} and report.outcomes == {"saved": 1, "refused": 1}
    with Manifest(root) as manifest:
        (row,) = manifest.records()
        outcomes = manifest.fetch_outcomes()
    assert row.title == "a \ufffd title"
    assert outcomes[web.url("/\\udc80.jpg")] == "refused"
    rerun = gather(root, config, OpenverseProvider(web.base, clock=FakeClock()), config_for(web))
    assert sum(rerun.outcomes.values()) == 0  # settled: nothing tried again


def test_a_body_that_cannot_be_decoded_is_rejected_not_a_crash(
    web: FakeWeb, tmp_path: Path
) -> None:
    plant_good(web, "cat", 1)
    garbage = Resource(b"\xff\xd8\xff" + b"x" * 40, headers={"Content-Encoding": "gzip"})
    web.add("/gzip-bomb.jpg", garbage)
    web.add_result("cat", "/gzip-bomb.jpg")
    provider = OpenverseProvider(web.base, clock=FakeClock())
    report = gather(tmp_path / "d", GatherConfig(("cat",), per_class=2), provider, config_for(web))
    assert report.outcomes == {"saved": 1, "rejected": 1}
    (event,) = [e for e in report.events if e.outcome == "rejected"]
    assert "could not be decoded" in event.reason


# -- 8: IPv6 that embeds IPv4 ---------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "[::127.0.0.1]",  # IPv4-compatible loopback
        "[::169.254.169.254]",  # IPv4-compatible cloud metadata
        "[64:ff9b::7f00:1]",  # NAT64 of 127.0.0.1
        "[64:ff9b::a9fe:a9fe]",  # NAT64 of 169.254.169.254
        "[64:ff9b:1::7f00:1]",  # local-use NAT64 (RFC 8215)
        "[2002:7f00:1::]",  # 6to4 of 127.0.0.1
        "[2002:a9fe:a9fe::1]",  # 6to4 of 169.254.169.254
        "[::ffff:0:7f00:1]",  # IPv4-translated 127.0.0.1
        "[ff::1]",  # elsewhere in ::/8
    ],
)
def test_ssrf_guard_refuses_ipv6_that_embeds_a_private_ipv4(host: str) -> None:
    with pytest.raises(Refused, match="private/loopback"):
        check(UrlGuard(), f"http://{host}/latest/meta-data/")


def test_ssrf_guard_refuses_teredo_that_hides_a_private_ipv4() -> None:
    # Teredo server 127.0.0.1, client (obfuscated) 10.0.0.1.
    with pytest.raises(Refused, match=r"embeds 127\.0\.0\.1, 10\.0\.0\.1"):
        check(UrlGuard(), "http://[2001:0:7f00:1:0:0:f5ff:fffe]/x")


@pytest.mark.parametrize(
    ("url", "pinned"),
    [
        ("https://93.184.216.34/a.png", "https://93.184.216.34/a.png"),
        ("http://[2606:4700:4700::1111]/a.png", "http://[2606:4700:4700::1111]/a.png"),
        ("http://[64:ff9b::5db8:d822]/a.png", "http://[64:ff9b::5db8:d822]/a.png"),
        ("http://[2002:5db8:d822::1]:8080/a.png", "http://[2002:5db8:d822::1]:8080/a.png"),
        ("http://[::ffff:93.184.216.34]/a.png", "http://[::ffff:5db8:d822]/a.png"),
    ],
)
def test_ssrf_guard_still_passes_public_addresses(url: str, pinned: str) -> None:
    assert check(UrlGuard(), url).request_url == pinned


def test_redirect_to_an_ipv6_form_of_loopback_is_rechecked_and_refused(
    web: FakeWeb, tmp_path: Path
) -> None:
    port = web.server.server_address[1]
    plant_good(web, "cat", 1)
    for index, host in enumerate(("[::ffff:0:7f00:1]", "[64:ff9b::7f00:1]", "[::127.0.0.1]")):
        web.add(
            f"/hop{index}.jpg", Resource(status=302, location=f"http://{host}:{port}/cat/0.jpg")
        )
        web.add_result("cat", f"/hop{index}.jpg")
    provider = OpenverseProvider(web.base, clock=FakeClock())
    report = gather(tmp_path / "d", GatherConfig(("cat",), per_class=4), provider, config_for(web))
    assert report.outcomes == {"saved": 1, "refused": 3}
    assert web.hits["/cat/0.jpg"] == 1  # only the direct, allowed request reached the server


class FakeDnsLoop(asyncio.SelectorEventLoop):
    """An event loop whose name look-ups answer from a table: DNS is the edge to the internet."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        super().__init__()
        self.answers = answers

    async def getaddrinfo(self, host: Any, port: Any, **kwargs: Any) -> Any:
        family = {4: socket.AF_INET, 6: socket.AF_INET6}
        return [
            (family[6 if ":" in a else 4], socket.SOCK_STREAM, 6, "", (a, port))
            for a in self.answers[host]
        ]


def resolve_with(answers: dict[str, list[str]], url: str, guard: UrlGuard | None = None) -> Target:
    loop = FakeDnsLoop(answers)
    try:
        return loop.run_until_complete((guard or UrlGuard()).check(url))
    finally:
        loop.close()


def test_every_dns_answer_is_checked_and_the_checked_one_is_connected_to() -> None:
    # A rebinding name: one public answer, one private (plain or IPv6-wrapped).
    for private in ("127.0.0.1", "64:ff9b::a9fe:a9fe"):
        with pytest.raises(Refused, match=r"images\.example resolves to"):
            resolve_with({"images.example": ["93.184.216.34", private]}, "http://images.example/")
    target = resolve_with({"images.example": ["93.184.216.34"]}, "https://images.example/a.png")
    assert target.request_url == "https://93.184.216.34/a.png"
    assert target.host_header == "images.example" and target.host == "images.example"


# -- 18: a search API that throttles ----------------------------------------------------------


def test_throttled_search_waits_out_retry_after_and_the_run_finishes(
    web: FakeWeb, tmp_path: Path
) -> None:
    plant_good(web, "cat", 2)
    web.throttle("/v1/images/", 3, retry_after="5")
    clock = FakeClock()
    provider = OpenverseProvider(web.base, clock=clock)
    report = gather(tmp_path / "d", GatherConfig(("cat",), per_class=2), provider, config_for(web))
    assert report.saved == {"cat": 2}
    assert web.hits["/v1/images/"] == 4 and clock.sleeps == [5.0, 5.0, 5.0]


def test_search_errors_are_retried_with_exponential_backoff(web: FakeWeb) -> None:
    plant_good(web, "cat", 2)
    web.throttle("/v1/images/", 3, retry_after=None, status=503)
    clock = FakeClock()
    results = OpenverseProvider(web.base, clock=clock).search("cat", 2, "any")
    assert len(results) == 2 and clock.sleeps == [2.0, 4.0, 8.0]


def test_search_that_stays_throttled_stops_with_a_clear_message(web: FakeWeb) -> None:
    web.throttle("/v1/images/", 50, retry_after="1")
    clock = FakeClock()
    with pytest.raises(SearchError) as error:
        OpenverseProvider(web.base, clock=clock).search("cat", 2, "any")
    message = str(error.value)
    assert "still answered 429 (too many requests) after 5 tries" in message
    assert "run the same command again" in message and "URSA_OPENVERSE_CLIENT_ID" in message
    assert "\n" not in message and web.hits["/v1/images/"] == 5 and len(clock.sleeps) == 4


def test_search_asked_to_wait_for_hours_stops_at_once(web: FakeWeb) -> None:
    web.throttle("/v1/images/", 1, retry_after="86400")
    clock = FakeClock()
    with pytest.raises(SearchError, match="asks ursa to wait 86400 s"):
        OpenverseProvider(web.base, clock=clock).search("cat", 2, "any")
    assert clock.sleeps == [] and web.hits["/v1/images/"] == 1


def test_search_pages_are_paced_and_rate_limit_headers_hold_the_next_request(
    web: FakeWeb,
) -> None:
    plant_good(web, "cat", 45)
    clock = FakeClock()
    assert len(OpenverseProvider(web.base, clock=clock).search("cat", 45, "any")) == 45
    assert clock.sleeps == [1.0, 1.0]  # three pages, one a second
    web.api_headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "30"}
    clock = FakeClock()
    assert len(OpenverseProvider(web.base, clock=clock).search("cat", 45, "any")) == 45
    assert clock.sleeps == [30.0, 30.0]


def test_openverse_paging_stops_at_the_anonymous_cap_with_a_note(web: FakeWeb) -> None:
    for index in range(300):
        web.add_result("cat", f"/cat/{index}.jpg")
    results = OpenverseProvider(web.base, clock=FakeClock()).search("cat", 300, "any")
    assert len(results) == 240
    asked = [query for path, query, _ in web.requests if path == "/v1/images/"]
    assert {q["page_size"][0] for q in asked} == {"20"} and len(asked) == 12
    assert "240 of the 300 results asked for 'cat'" in results.note
    assert "URSA_OPENVERSE_CLIENT_SECRET" in results.note


def test_gather_command_says_when_the_service_cap_stopped_the_search(
    web: FakeWeb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant_good(web, "cat", 6)
    web.anonymous_results = 4
    monkeypatch.setattr(OpenverseProvider, "MAX_RESULTS", 4)
    args = [
        "gather", str(tmp_path / "d"), "--classes", "cat", "--per-class", "3",
        "--base-url", web.base, "--allow-host", web.host,
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "openverse: 4 of the 6 results asked for 'cat'" in " ".join(result.output.split())


def test_openverse_client_credentials_from_the_environment_get_the_higher_tier(
    web: FakeWeb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant_good(web, "cat", 30)
    web.openverse_clients = {"ursa-id": "s3cret"}
    monkeypatch.setenv("URSA_OPENVERSE_CLIENT_ID", "ursa-id")
    monkeypatch.setenv("URSA_OPENVERSE_CLIENT_SECRET", "s3cret")
    args = [
        "gather", str(tmp_path / "d"), "--classes", "cat", "--per-class", "15",
        "--base-url", web.base, "--allow-host", web.host,
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "cat: 15/15 images" in result.output
    assert web.hits["/v1/auth_tokens/token/"] == 1
    searches = [(query, headers) for path, query, headers in web.requests if path == "/v1/images/"]
    assert [query["page_size"] for query, _ in searches] == [["30"]]  # over the anonymous 20
    assert all(headers["Authorization"] == "Bearer token-1" for _, headers in searches)
    monkeypatch.delenv("URSA_OPENVERSE_CLIENT_SECRET")
    half = runner.invoke(app, args)
    assert half.exit_code == 1 and "need both URSA_OPENVERSE_CLIENT_ID" in half.output


def test_openverse_token_is_cached_for_its_lifetime_renewed_and_replaced_when_revoked(
    web: FakeWeb,
) -> None:
    plant_good(web, "cat", 3)
    web.openverse_clients = {"ursa-id": "s3cret"}
    web.token_lifetime = 600
    clock = FakeClock()
    provider = OpenverseProvider(web.base, client_id="ursa-id", client_secret="s3cret", clock=clock)
    for wait in (0, 300, 300):  # renewed a minute before its 600 s are up
        clock.advance(wait)
        assert len(provider.search("cat", 3, "any")) == 3
    assert web.tokens == ["token-1", "token-2"]
    web.tokens.clear()  # the service revokes every token
    assert len(provider.search("cat", 3, "any")) == 3
    assert web.tokens == ["token-3"]


def test_wrong_openverse_credentials_say_what_to_do_without_the_secret(web: FakeWeb) -> None:
    web.openverse_clients = {"ursa-id": "s3cret"}
    provider = OpenverseProvider(web.base, client_id="ursa-id", client_secret="wrong-secret",
                                 clock=FakeClock())  # fmt: skip
    with pytest.raises(SearchError) as error:
        provider.search("cat", 3, "any")
    assert "refused the client credentials (HTTP 401)" in str(error.value)
    assert "wrong-secret" not in str(error.value) and web.hits["/v1/images/"] == 0
    with pytest.raises(ConfigError, match="need both"):
        OpenverseProvider(web.base, client_id="ursa-id")


def test_a_good_page_that_says_the_quota_is_spent_is_kept(web: FakeWeb) -> None:
    """A 200 with 'remaining 0, reset in 600 s' is the last page allowed: its results are
    kept and the search stops before the next request, with a note (it used to throw the
    page away and end the run)."""
    plant_good(web, "cat", 45)
    web.api_headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "600"}
    clock = FakeClock()
    results = OpenverseProvider(web.base, clock=clock).search("cat", 45, "any")
    assert len(results) == 20 and web.hits["/v1/images/"] == 1
    assert "600 s" in results.note and clock.sleeps == []


def test_gather_writes_nothing_through_a_class_folder_that_links_outside(
    web: FakeWeb, tmp_path: Path
) -> None:
    plant_good(web, "cat", 2)
    root, outside = tmp_path / "pets", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "cat").symlink_to(outside, target_is_directory=True)
    args = [
        "gather", str(root), "--classes", "cat", "--per-class", "2", "--base-url", web.base,
        "--allow-host", web.host, "--retries", "0", "--timeout", "2",
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "through a symlink" in result.output, result.output
    assert list(outside.iterdir()) == []
