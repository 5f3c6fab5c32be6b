"""Search providers against a local server playing each API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.data.fakeweb import FakeWeb, Resource
from ursa.data.search import (
    BingProvider,
    DuckDuckGoProvider,
    GoogleProvider,
    OpenverseProvider,
    SearchError,
    make_provider,
)
from ursa.errors import ConfigError


@pytest.fixture
def web() -> Iterator[FakeWeb]:
    with FakeWeb() as server:
        for index in range(45):
            server.add_result("grizzly bear", f"/{index}.jpg", title=f"bear {index}")
        yield server


def test_openverse_pages_and_licence(web: FakeWeb) -> None:
    results = OpenverseProvider(web.base).search("grizzly bear", 30, "commercial")
    assert [r.url for r in results] == [web.url(f"/{i}.jpg") for i in range(30)]
    first = results[0]
    assert first.license == "by 4.0" and first.creator == "someone"
    assert first.license_url.startswith("https://creativecommons.org/")
    assert first.page_url == web.url("/page/0.jpg") and first.provider == "openverse"
    queries = [q for path, q, _ in web.requests if path == "/v1/images/"]
    assert [q["page"] for q in queries] == [["1"], ["2"]]
    assert all(q["license_type"] == ["commercial"] for q in queries)


def test_duckduckgo_through_ddgs(web: FakeWeb) -> None:
    results = DuckDuckGoProvider(web.base).search("grizzly bear", 12, "commercial")
    assert [r.url for r in results] == [web.url(f"/{i}.jpg") for i in range(12)]
    assert results[0].title == "bear 0" and results[0].provider == "ddg"
    assert results[0].license == "filter:ShareCommercially"
    asked = [q for path, q, _ in web.requests if path == "/i.js"]
    assert asked[0]["vqd"] == ["4-12345"] and "license:ShareCommercially" in asked[0]["f"][0]


def test_bing_with_key(web: FakeWeb) -> None:
    results = BingProvider("bing-key", web.base).search("grizzly bear", 40, "any")
    assert len(results) == 40 and results[5].page_url == web.url("/page/5.jpg")
    with pytest.raises(SearchError, match="check the key"):
        BingProvider("wrong", web.base).search("grizzly bear", 5, "any")
    with pytest.raises(ConfigError, match="URSA_BING_KEY"):
        make_provider("bing")


def test_google_pages_of_ten(web: FakeWeb) -> None:
    results = GoogleProvider("k", "cx", web.base).search("grizzly bear", 25, "modification")
    assert len(results) == 25 and results[24].url == web.url("/24.jpg")
    asked = [q for path, q, _ in web.requests if path == "/customsearch/v1"]
    assert [q["start"] for q in asked] == [["1"], ["11"], ["21"]]
    assert asked[0]["searchType"] == ["image"] and "cc_attribute" in asked[0]["rights"][0]
    with pytest.raises(ConfigError, match="search-engine id"):
        GoogleProvider("k", "")


def test_broken_apis_raise_search_errors(web: FakeWeb) -> None:
    web.add("/broken/v1/images/", Resource(b"oops", "text/plain", status=500))
    with pytest.raises(SearchError, match="answered 500"):
        OpenverseProvider(web.url("/broken")).search("x", 5, "any")
    with pytest.raises(SearchError, match="could not reach"):
        OpenverseProvider("http://127.0.0.1:9", timeout=2).search("x", 5, "any")
    with pytest.raises(ConfigError, match="provider='flickr'"):
        make_provider("flickr")
