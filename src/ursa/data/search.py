"""Image search providers behind one small interface.

* :class:`OpenverseProvider` — openly licensed images, no key; every result
  carries its licence, creator and source page.
* :class:`DuckDuckGoProvider` — DuckDuckGo images through the ``ddgs`` package, no key.
* :class:`BingProvider` — Bing Image Search v7, with a subscription key.
* :class:`GoogleProvider` — Google Programmable Search (image mode), with a key and
  a search-engine id.

Each takes ``base_url`` so tests can play the API on a local server. Search
results are untrusted: the downloader checks every URL they contain.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

from ursa.errors import ConfigError, UrsaError

log = logging.getLogger(__name__)

LicenseFilter = Literal["any", "commercial", "modification"]
LICENSE_FILTERS: tuple[LicenseFilter, ...] = ("any", "commercial", "modification")
PROVIDERS = ("openverse", "ddg", "bing", "google")


class SearchError(UrsaError):
    """A search provider could not be reached or answered with something unusable."""


@dataclass(frozen=True)
class SearchResult:
    """One image a provider found."""

    url: str
    """The image file's URL (untrusted)."""
    provider: str
    query: str
    page_url: str = ""
    """The page showing the image."""
    title: str = ""
    creator: str = ""
    license: str = ""
    """Licence as the provider states it; empty when the provider does not say."""
    license_url: str = ""


class SearchProvider(Protocol):
    """Finds up to ``count`` images for ``query``."""

    name: str

    def search(self, query: str, count: int, license: LicenseFilter) -> list[SearchResult]: ...


def _get_json(url: str, *, params: dict[str, Any], headers: dict[str, str], timeout: float) -> Any:
    import httpx

    try:
        response = httpx.get(url, params=params, headers=headers, timeout=timeout)
    except httpx.HTTPError as error:
        raise SearchError(
            f"could not reach the search API at {url} ({error}); check the network or --base-url"
        ) from None
    if response.status_code in (401, 403):
        raise SearchError(
            f"the search API at {url} refused the request ({response.status_code}); check the key"
        )
    if response.status_code >= 400:
        raise SearchError(
            f"the search API at {url} answered {response.status_code}; try again later"
        )
    try:
        return response.json()
    except ValueError:
        raise SearchError(f"the search API at {url} did not answer with JSON") from None


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


class OpenverseProvider:
    """Openverse (openly licensed images from Flickr, Wikimedia and others); no key needed."""

    name = "openverse"
    PAGE_SIZE = 20  # the most an anonymous client may ask for per page

    def __init__(self, base_url: str = "https://api.openverse.org", timeout: float = 20.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def search(self, query: str, count: int, license: LicenseFilter) -> list[SearchResult]:
        results: list[SearchResult] = []
        page = 1
        while len(results) < count:
            params: dict[str, Any] = {"q": query, "page_size": self.PAGE_SIZE, "page": page}
            if license != "any":
                params["license_type"] = license
            body = _get_json(
                f"{self.base_url}/v1/images/", params=params, headers={}, timeout=self.timeout
            )
            items = body.get("results", []) if isinstance(body, dict) else []
            for item in items:
                if not isinstance(item, dict) or not _text(item.get("url")):
                    continue
                name = _text(item.get("license"))
                version = _text(item.get("license_version"))
                results.append(
                    SearchResult(
                        url=_text(item.get("url")),
                        provider=self.name,
                        query=query,
                        page_url=_text(item.get("foreign_landing_url")),
                        title=_text(item.get("title")),
                        creator=_text(item.get("creator")),
                        license=f"{name} {version}".strip(),
                        license_url=_text(item.get("license_url")),
                    )
                )
            page_count = body.get("page_count", 0) if isinstance(body, dict) else 0
            if not items or page >= int(page_count or 0):
                break
            page += 1
        return results[:count]


class DuckDuckGoProvider:
    """DuckDuckGo image search through the ``ddgs`` package; no key needed.

    Results carry no licence; ``license`` filters the search with DuckDuckGo's
    own licence filter and is recorded as the filter used.
    """

    name = "ddg"
    _FILTERS: ClassVar[dict[str, str]] = {
        "any": "",
        "commercial": "ShareCommercially",
        "modification": "ModifyCommercially",
    }

    def __init__(self, base_url: str = "https://duckduckgo.com", timeout: float = 20.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _engine(self) -> Any:
        try:
            from ddgs.engines.duckduckgo_images import DuckduckgoImages
            from ddgs.utils import _extract_vqd
        except ImportError:
            raise SearchError(
                "the ddg provider needs the ddgs package: pip install 'ursa[gather]'"
            ) from None
        base = self.base_url

        class Engine(DuckduckgoImages):
            search_url = f"{base}/i.js"

            def _get_vqd(self, query: str) -> str:
                response = self.http_client.request("GET", base, params={"q": query})
                return str(_extract_vqd(response.content, query))

        return Engine(timeout=int(self.timeout))

    def search(self, query: str, count: int, license: LicenseFilter) -> list[SearchResult]:
        engine = self._engine()
        results: list[SearchResult] = []
        extra = {"license_image": self._FILTERS[license]} if license != "any" else {}
        page = 1
        while len(results) < count and page <= 5:
            try:
                found = engine.search(query, page=page, **extra) or []
            except Exception as error:  # ddgs raises its own exception types
                raise SearchError(
                    f"DuckDuckGo image search failed ({error}); try again later"
                ) from None
            for item in found:
                if not getattr(item, "image", None):
                    continue
                results.append(
                    SearchResult(
                        url=str(item.image),
                        provider=self.name,
                        query=query,
                        page_url=str(item.url or ""),
                        title=str(item.title or ""),
                        creator=str(item.source or ""),
                        license="" if license == "any" else f"filter:{self._FILTERS[license]}",
                    )
                )
            if not found:
                break
            page += 1
        return results[:count]


class BingProvider:
    """Bing Image Search v7; needs a subscription key."""

    name = "bing"
    _FILTERS: ClassVar[dict[str, str]] = {
        "any": "",
        "commercial": "ShareCommercially",
        "modification": "ModifyCommercially",
    }

    def __init__(
        self,
        api_key: str,
        base_url: str = "https://api.bing.microsoft.com",
        timeout: float = 20.0,
    ) -> None:
        if not api_key:
            raise ConfigError("the bing provider needs a key: pass --api-key or set URSA_BING_KEY")
        self.api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def search(self, query: str, count: int, license: LicenseFilter) -> list[SearchResult]:
        results: list[SearchResult] = []
        offset = 0
        while len(results) < count:
            params: dict[str, Any] = {"q": query, "count": 150, "offset": offset}
            if license != "any":
                params["license"] = self._FILTERS[license]
            body = _get_json(
                f"{self.base_url}/v7.0/images/search",
                params=params,
                headers={"Ocp-Apim-Subscription-Key": self.api_key},
                timeout=self.timeout,
            )
            items = body.get("value", []) if isinstance(body, dict) else []
            for item in items:
                if isinstance(item, dict) and _text(item.get("contentUrl")):
                    results.append(
                        SearchResult(
                            url=_text(item.get("contentUrl")),
                            provider=self.name,
                            query=query,
                            page_url=_text(item.get("hostPageUrl")),
                            title=_text(item.get("name")),
                            license="" if license == "any" else f"filter:{self._FILTERS[license]}",
                        )
                    )
            next_offset = body.get("nextOffset") if isinstance(body, dict) else None
            if not items or not isinstance(next_offset, int) or next_offset <= offset:
                break
            offset = next_offset
        return results[:count]


class GoogleProvider:
    """Google Programmable Search in image mode; needs an API key and a search-engine id (cx)."""

    name = "google"
    _RIGHTS: ClassVar[dict[str, str]] = {
        "any": "",
        "commercial": "cc_publicdomain|cc_attribute|cc_sharealike|cc_nonderived",
        "modification": "cc_publicdomain|cc_attribute|cc_sharealike",
    }

    def __init__(
        self,
        api_key: str,
        engine_id: str,
        base_url: str = "https://www.googleapis.com",
        timeout: float = 20.0,
    ) -> None:
        problems = []
        if not api_key:
            problems.append("an API key (--api-key or URSA_GOOGLE_KEY)")
        if not engine_id:
            problems.append("a search-engine id (--google-cx or URSA_GOOGLE_CX)")
        if problems:
            raise ConfigError("the google provider needs " + " and ".join(problems))
        self.api_key = api_key
        self.engine_id = engine_id
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def search(self, query: str, count: int, license: LicenseFilter) -> list[SearchResult]:
        results: list[SearchResult] = []
        start = 1
        while len(results) < count and start <= 91:  # the API serves the first 100 results
            params: dict[str, Any] = {
                "key": self.api_key,
                "cx": self.engine_id,
                "q": query,
                "searchType": "image",
                "num": 10,
                "start": start,
            }
            if license != "any":
                params["rights"] = self._RIGHTS[license]
            body = _get_json(
                f"{self.base_url}/customsearch/v1", params=params, headers={}, timeout=self.timeout
            )
            items = body.get("items", []) if isinstance(body, dict) else []
            for item in items:
                if isinstance(item, dict) and _text(item.get("link")):
                    image = item.get("image")
                    if not isinstance(image, dict):
                        image = {}
                    results.append(
                        SearchResult(
                            url=_text(item.get("link")),
                            provider=self.name,
                            query=query,
                            page_url=_text(image.get("contextLink")),
                            title=_text(item.get("title")),
                            license="" if license == "any" else f"filter:{self._RIGHTS[license]}",
                        )
                    )
            if len(items) < 10:
                break
            start += 10
        return results[:count]


def make_provider(
    name: str,
    *,
    base_url: str | None = None,
    api_key: str = "",
    engine_id: str = "",
    timeout: float = 20.0,
) -> SearchProvider:
    """The provider called ``name`` (openverse, ddg, bing, google)."""
    if name == "openverse":
        return OpenverseProvider(base_url or "https://api.openverse.org", timeout)
    if name == "ddg":
        return DuckDuckGoProvider(base_url or "https://duckduckgo.com", timeout)
    if name == "bing":
        return BingProvider(api_key, base_url or "https://api.bing.microsoft.com", timeout)
    if name == "google":
        return GoogleProvider(api_key, engine_id, base_url or "https://www.googleapis.com", timeout)
    raise ConfigError(f"provider={name!r}: use one of {', '.join(PROVIDERS)}")
