"""Search providers against a local server playing each API."""

from __future__ import annotations

import email.utils
from collections.abc import Iterator

import pytest

from tests.gather.fakeweb import FakeClock, FakeWeb, Resource
from ursa.core.errors import ConfigError
from ursa.gather.search import (
    BingProvider,
    DuckDuckGoProvider,
    GoogleProvider,
    OpenverseProvider,
    SearchError,
    SearchPolicy,
    clean_text,
    make_provider,
    rate_limit_wait,
    retry_after_seconds,
)


@pytest.fixture
def web() -> Iterator[FakeWeb]:
    with FakeWeb() as server:
        for index in range(45):
            server.add_result("grizzly bear", f"/{index}.jpg", title=f"bear {index}")
        yield server


def test_openverse_pages_and_licence(web: FakeWeb) -> None:
    clock = FakeClock()
    results = OpenverseProvider(web.base, clock=clock).search("grizzly bear", 30, "commercial")
    assert [r.url for r in results] == [web.url(f"/{i}.jpg") for i in range(30)]
    first = results[0]
    assert first.license == "by 4.0" and first.creator == "someone"
    assert first.license_url.startswith("https://creativecommons.org/")
    assert first.page_url == web.url("/page/0.jpg") and first.provider == "openverse"
    queries = [q for path, q, _ in web.requests if path == "/v1/images/"]
    assert [q["page"] for q in queries] == [["1"], ["2"]]
    assert all(q["license_type"] == ["commercial"] for q in queries)
    assert clock.sleeps == [1.0]  # the second page waited for Openverse's one-a-second pace


def test_duckduckgo_through_ddgs(web: FakeWeb) -> None:
    results = DuckDuckGoProvider(web.base).search("grizzly bear", 12, "commercial")
    assert [r.url for r in results] == [web.url(f"/{i}.jpg") for i in range(12)]
    assert results[0].title == "bear 0" and results[0].provider == "ddg"
    assert results[0].license == "filter:ShareCommercially"
    asked = [q for path, q, _ in web.requests if path == "/i.js"]
    assert asked[0]["vqd"] == ["4-12345"] and "license:ShareCommercially" in asked[0]["f"][0]


def test_bing_with_key(web: FakeWeb) -> None:
    results = BingProvider("bing-key", web.base, clock=FakeClock()).search(
        "grizzly bear", 40, "any"
    )
    assert len(results) == 40 and results[5].page_url == web.url("/page/5.jpg")
    with pytest.raises(SearchError, match="check the key"):
        BingProvider("wrong", web.base).search("grizzly bear", 5, "any")
    with pytest.raises(ConfigError, match="URSA_BING_KEY"):
        make_provider("bing")


def test_google_pages_of_ten(web: FakeWeb) -> None:
    clock = FakeClock()
    provider = GoogleProvider("k", "cx", web.base, clock=clock)
    results = provider.search("grizzly bear", 25, "modification")
    assert len(results) == 25 and results[24].url == web.url("/24.jpg")
    asked = [q for path, q, _ in web.requests if path == "/customsearch/v1"]
    assert [q["start"] for q in asked] == [["1"], ["11"], ["21"]]
    assert asked[0]["searchType"] == ["image"] and "cc_attribute" in asked[0]["rights"][0]
    assert clock.sleeps == [0.6, 0.6]
    with pytest.raises(ConfigError, match="search-engine id"):
        GoogleProvider("k", "")


def test_broken_apis_raise_search_errors(web: FakeWeb) -> None:
    clock = FakeClock()
    web.add("/broken/v1/images/", Resource(b"oops", "text/plain", status=500))
    with pytest.raises(SearchError, match="answered 500 5 times; try again later"):
        OpenverseProvider(web.url("/broken"), clock=clock).search("x", 5, "any")
    assert web.hits["/broken/v1/images/"] == 5
    assert clock.sleeps == [2.0, 4.0, 8.0, 16.0]  # exponential backoff, then a message
    with pytest.raises(SearchError, match=r"could not reach .* after 5 tries"):
        OpenverseProvider("http://127.0.0.1:9", timeout=2, clock=FakeClock()).search("x", 5, "any")
    web.add("/text/v1/images/", Resource(b"<html>", "text/html"))
    with pytest.raises(SearchError, match="did not answer with JSON"):
        OpenverseProvider(web.url("/text"), clock=clock).search("x", 5, "any")
    with pytest.raises(SearchError, match="sent more than 100 bytes"):
        policy = SearchPolicy(max_bytes=100)
        OpenverseProvider(web.base, policy=policy, clock=clock).search("grizzly bear", 5, "any")
    with pytest.raises(ConfigError, match="provider='flickr'"):
        make_provider("flickr")


def test_google_stops_at_its_first_hundred_with_a_note(web: FakeWeb) -> None:
    for index in range(45, 130):
        web.add_result("grizzly bear", f"/{index}.jpg")
    results = GoogleProvider("k", "cx", web.base, clock=FakeClock()).search(
        "grizzly bear", 150, "any"
    )
    assert len(results) == 100
    assert "100 of the 150" in results.note and "first 100 results" in results.note


def test_search_policy_and_header_parsing() -> None:
    clock = FakeClock()
    assert retry_after_seconds("7", clock) == 7.0
    assert retry_after_seconds("-3", clock) == 0.0
    assert retry_after_seconds("soon", clock) is None
    date = email.utils.formatdate(clock.time() + 60, usegmt=True)  # an HTTP date a minute on
    assert retry_after_seconds(date, clock) == pytest.approx(60)
    assert rate_limit_wait({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "30"}, clock) == 30
    epoch = str(int(clock.time()) + 12)
    assert rate_limit_wait({"x-ratelimit-remaining": "0", "x-ratelimit-reset": epoch}, clock) == (
        pytest.approx(12, abs=1)
    )
    assert rate_limit_wait({"X-RateLimit-Remaining": "3", "X-RateLimit-Reset": "30"}, clock) is None
    assert rate_limit_wait({"X-RateLimit-Available-anon_burst": "0"}, clock) is None  # no reset
    assert clean_text(" a\ud800b ") == "a\ufffdb" and clean_text(3) == ""
    with pytest.raises(ConfigError, match="min_interval") as error:
        SearchPolicy(min_interval=-1, retries=-1, max_bytes=0)
    assert "retries" in str(error.value) and "max_bytes" in str(error.value)
