"""Image search providers behind one small interface.

* :class:`OpenverseProvider` — openly licensed images, no key; every result
  carries its licence, creator and source page. OAuth client credentials
  (``URSA_OPENVERSE_CLIENT_ID`` / ``URSA_OPENVERSE_CLIENT_SECRET``) unlock its
  higher tier: larger pages and more results a query.
* :class:`DuckDuckGoProvider` — DuckDuckGo images through the ``ddgs`` package, no key.
* :class:`BingProvider` — Bing Image Search v7, with a subscription key.
* :class:`GoogleProvider` — Google Programmable Search (image mode), with a key and
  a search-engine id.

Each takes ``base_url`` so tests can play the API on a local server. Every
request goes through an :class:`ApiSession`, which is polite to the service:
requests at least :attr:`SearchPolicy.min_interval` apart, ``Retry-After`` and
``X-RateLimit-*`` headers honoured, 429 / 5xx / network errors retried with
exponential backoff a bounded number of times, answers read up to a size cap.
Paging stops at the service's cap, and the results then carry a note saying so.

Search results are untrusted: the downloader checks every URL they contain.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, TypeVar

from ursa.core.errors import ConfigError, UrsaError

log = logging.getLogger(__name__)

LicenseFilter = Literal["any", "commercial", "modification"]
LICENSE_FILTERS: tuple[LicenseFilter, ...] = ("any", "commercial", "modification")
PROVIDERS = ("openverse", "ddg", "bing", "google")
OPENVERSE_CREDENTIALS = "URSA_OPENVERSE_CLIENT_ID and URSA_OPENVERSE_CLIENT_SECRET"

T = TypeVar("T")


class SearchError(UrsaError):
    """A search provider could not be reached or answered with something unusable."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        """The HTTP status that ended the request, when there was one."""


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


class Found(list[SearchResult]):
    """The results of one search, with a note when the service stopped short of the count."""

    note: str = ""
    """Why there are fewer results than asked for (a cap, a failed later page); empty if none."""


class SearchProvider(Protocol):
    """Finds up to ``count`` images for ``query``."""

    name: str

    def search(self, query: str, count: int, license: LicenseFilter) -> list[SearchResult]: ...


class Clock(Protocol):
    """Where a session reads the time and waits: the :mod:`time` module, or a fake in tests."""

    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    def sleep(self, seconds: float, /) -> None: ...


@dataclass(frozen=True)
class SearchPolicy:
    """How a provider paces and retries its requests to one search service."""

    min_interval: float = 1.0
    """Seconds from one request to the next (Openverse's anonymous tier allows about 1 a second)."""
    retries: int = 4
    """Extra tries after a 429, a 5xx, a time-out or a connection error."""
    backoff: float = 2.0
    """Seconds before the first retry when the service names no wait; doubled each retry."""
    max_wait: float = 300.0
    """Longest wait accepted from ``Retry-After`` or rate-limit headers; longer ends the search."""
    max_bytes: int = 20_000_000
    """Largest answer read from the service, in bytes."""

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.min_interval <= 3600:
            problems.append(f"min_interval={self.min_interval}: use 0 to 3600 seconds")
        if self.retries < 0:
            problems.append(f"retries={self.retries}: use 0 or more")
        if not 0 <= self.backoff <= 3600:
            problems.append(f"backoff={self.backoff}: use 0 to 3600 seconds")
        if not self.max_wait >= 0:
            problems.append(f"max_wait={self.max_wait}: use 0 or more seconds")
        if self.max_bytes < 1:
            problems.append(f"max_bytes={self.max_bytes}: use a positive number of bytes")
        if problems:
            raise ConfigError("invalid search settings:\n  " + "\n  ".join(problems))


def _url(value: object) -> str:
    """A result's URL, stripped but otherwise as the service sent it: the downloader judges it."""
    return value.strip() if isinstance(value, str) else ""


def clean_text(value: object) -> str:
    """``value`` stripped when it is text, else ``""``; lone surrogates (from JSON) replaced.

    A lone surrogate (``"\\ud800"`` is valid JSON) cannot be encoded as UTF-8, so it could
    not be stored in the manifest; it becomes U+FFFD.
    """
    if not isinstance(value, str):
        return ""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = "".join("\ufffd" if "\ud800" <= char <= "\udfff" else char for char in value)
    return value.strip()


def _seconds_from_date(text: str, clock: Clock) -> float | None:
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return moment.timestamp() - clock.time()


def retry_after_seconds(value: str, clock: Clock) -> float | None:
    """Seconds a ``Retry-After`` value asks for (a number or an HTTP date); None if unreadable."""
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        seconds_from_date = _seconds_from_date(text, clock)
        if seconds_from_date is None:
            return None
        seconds = seconds_from_date
    return max(0.0, seconds) if math.isfinite(seconds) else None


def rate_limit_wait(headers: Any, clock: Clock) -> float | None:
    """Seconds until the quota resets when an ``X-RateLimit-*`` header says none is left.

    Services spell these headers differently (``X-RateLimit-Remaining``,
    Openverse's ``X-RateLimit-Available-<scope>``, ``X-RateLimit-Reset`` as seconds
    or as a Unix time); every spelling is read, and the longest wait wins.
    """
    exhausted = False
    resets: list[float] = []
    for name, value in headers.items():
        key = name.lower()
        if not key.startswith("x-ratelimit-"):
            continue
        try:
            number = float(value.strip())
        except ValueError:
            continue
        if not math.isfinite(number):
            continue
        if ("remaining" in key or "available" in key) and number <= 0:
            exhausted = True
        elif "reset" in key:
            # A large number is a Unix time; a small one, seconds from now.
            resets.append(number - clock.time() if number > 1e9 else number)
    if not exhausted or not resets:
        return None
    return max(0.0, max(resets))


class ApiSession:
    """One search service's requests: paced, retried with backoff, answers size-capped.

    ``hint`` is added to the message when the service keeps refusing for its rate
    limit (e.g. how to get a higher tier).
    """

    def __init__(
        self,
        policy: SearchPolicy,
        timeout: float,
        clock: Clock = time,
        hint: str = "",
    ) -> None:
        self.policy = policy
        self.timeout = timeout
        self.clock = clock
        self.hint = hint
        self.next_at = -math.inf
        """Monotonic time before which the next request must not start."""
        self.stop: SearchError | None = None
        """Set when an answer that was used said the next request must wait too long:
        raised before that request, not instead of the answer."""

    def hold(self, seconds: float) -> None:
        """Start no request for the next ``seconds`` seconds."""
        self.next_at = max(self.next_at, self.clock.monotonic() + seconds)

    def pace(self) -> None:
        """Wait until the next request may start, and book the interval after it."""
        if self.stop is not None:
            raise self.stop
        delay = self.next_at - self.clock.monotonic()
        if delay > 0:
            self.clock.sleep(delay)
        self.next_at = self.clock.monotonic() + self.policy.min_interval

    def _wait_or_stop(self, seconds: float, url: str) -> None:
        if seconds > self.policy.max_wait:
            raise SearchError(
                f"the search API at {url} asks ursa to wait {seconds:.0f} s before the next "
                f"request (its rate limit); run the same command again later{self.hint}"
            )
        self.hold(seconds)

    def _backoff(self, attempt: int) -> float:
        return float(self.policy.backoff * 2**attempt)

    def request_json(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        data: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """The JSON answer to one request, retried on 429, 5xx and network errors.

        Raises :class:`SearchError` (with ``status``) for any other 4xx, when the
        tries run out, or when the service asks for a wait over ``max_wait``.
        """
        tries = self.policy.retries + 1
        for attempt in range(tries):
            self.pace()
            try:
                status, response_headers, body = self._send(method, url, params, data, headers)
            except _Unreachable as error:
                if attempt + 1 >= tries:
                    raise SearchError(
                        f"could not reach the search API at {url} ({error}) after {tries} "
                        f"tries; check the network or --base-url"
                    ) from None
                self.hold(self._backoff(attempt))
                continue
            limit_wait = rate_limit_wait(response_headers, self.clock)
            if limit_wait is not None:
                try:
                    self._wait_or_stop(limit_wait, url)
                except SearchError as error:
                    if not 200 <= status < 300:
                        raise
                    self.stop = error  # this answer is good: keep it, stop before the next
            if status == 429 or status >= 500:
                if attempt + 1 >= tries:
                    raise self._gave_up(url, status, tries)
                said = response_headers.get("retry-after")
                wait = retry_after_seconds(said, self.clock) if said else None
                if wait is None:
                    self.hold(self._backoff(attempt))
                else:
                    self._wait_or_stop(wait, url)
                log.info("search API %s answered %s; retrying", url, status)
                continue
            return self._decode(url, status, body)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _gave_up(self, url: str, status: int, tries: int) -> SearchError:
        if status == 429:
            return SearchError(
                f"the search API at {url} still answered 429 (too many requests) after {tries} "
                f"tries; wait a few minutes and run the same command again{self.hint}",
                status,
            )
        return SearchError(
            f"the search API at {url} answered {status} {tries} times; try again later", status
        )

    @staticmethod
    def _decode(url: str, status: int, body: bytes) -> Any:
        import json

        if status in (401, 403):
            raise SearchError(
                f"the search API at {url} refused the request ({status}); check the key", status
            )
        if status >= 400:
            raise SearchError(
                f"the search API at {url} answered {status}; check --query and --base-url",
                status,
            )
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            raise SearchError(f"the search API at {url} did not answer with JSON") from None

    def _send(
        self,
        method: str,
        url: str,
        params: dict[str, Any] | None,
        data: dict[str, str] | None,
        headers: dict[str, str] | None,
    ) -> tuple[int, Any, bytes]:
        import httpx

        cap = self.policy.max_bytes
        try:
            with (
                httpx.Client(timeout=self.timeout, follow_redirects=False) as client,
                client.stream(method, url, params=params, data=data, headers=headers) as response,
            ):
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > cap:
                    raise SearchError(self._too_big(url, cap))
                body = bytearray()
                for chunk in response.iter_bytes():
                    body.extend(chunk)
                    if len(body) > cap:
                        raise SearchError(self._too_big(url, cap))
                return response.status_code, response.headers, bytes(body)
        except httpx.TransportError as error:
            raise _Unreachable(str(error) or type(error).__name__) from None
        except httpx.DecodingError as error:
            raise SearchError(
                f"the search API at {url} sent an answer that could not be decoded ({error})"
            ) from None
        except httpx.InvalidURL as error:
            raise SearchError(
                f"the search API URL {url} is not valid ({error}); check --base-url"
            ) from None

    @staticmethod
    def _too_big(url: str, cap: int) -> str:
        return f"the search API at {url} sent more than {cap:,} bytes; check --base-url"

    def call(self, action: Callable[[], T], *, retry_on: tuple[type[Exception], ...]) -> T:
        """``action()`` paced, and retried with backoff when it raises one of ``retry_on``."""
        tries = self.policy.retries + 1
        for attempt in range(tries):
            self.pace()
            try:
                return action()
            except retry_on:
                if attempt + 1 >= tries:
                    raise
                self.hold(self._backoff(attempt))
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


class _Unreachable(Exception):
    """A connection error or time-out: worth another try."""


def _policy(policy: SearchPolicy | None, min_interval: float) -> SearchPolicy:
    return policy if policy is not None else SearchPolicy(min_interval=min_interval)


class OpenverseProvider:
    """Openverse (openly licensed images from Flickr, Wikimedia and others); no key needed.

    Anonymous clients get pages of at most 20 and about 240 results a query. With
    OAuth client credentials (register at ``{base_url}/v1/#tag/auth``) the provider
    fetches a token from ``/v1/auth_tokens/token/``, keeps it for its lifetime, sends
    it as ``Authorization: Bearer`` and asks for larger pages and more results.
    """

    name = "openverse"
    PAGE_SIZE = 20
    """The most an anonymous client may ask for per page (a larger page is refused)."""
    MAX_RESULTS = 240
    """Results an anonymous client can reach for one query."""
    AUTH_PAGE_SIZE = 500
    """The most an authenticated client may ask for per page."""
    AUTH_MAX_RESULTS = 10_000
    """Results an authenticated client can reach for one query (20 pages of 500)."""
    MIN_INTERVAL = 1.0
    TOKEN_MARGIN = 60.0
    """Seconds before a token's announced expiry at which a new one is fetched."""

    def __init__(
        self,
        base_url: str = "https://api.openverse.org",
        timeout: float = 20.0,
        *,
        client_id: str = "",
        client_secret: str = "",
        policy: SearchPolicy | None = None,
        clock: Clock = time,
    ) -> None:
        if bool(client_id) != bool(client_secret):
            raise ConfigError(
                f"Openverse client credentials need both {OPENVERSE_CREDENTIALS}: set both, "
                f"or neither to search anonymously"
            )
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.client_id = client_id
        self.client_secret = client_secret
        hint = "" if client_id else f", or set {OPENVERSE_CREDENTIALS} for Openverse's higher tier"
        self.session = ApiSession(_policy(policy, self.MIN_INTERVAL), timeout, clock, hint)
        self._token = ""
        self._token_until = -math.inf

    @property
    def authenticated(self) -> bool:
        """Whether requests carry a token (client credentials were given)."""
        return bool(self.client_id)

    def _fetch_token(self) -> None:
        url = f"{self.base_url}/v1/auth_tokens/token/"
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }
        try:
            body = self.session.request_json("POST", url, data=form)
        except SearchError as error:
            if error.status is None or error.status >= 500 or error.status == 429:
                raise
            raise SearchError(
                f"Openverse refused the client credentials (HTTP {error.status}); check "
                f"{OPENVERSE_CREDENTIALS}, or unset both to search anonymously",
                error.status,
            ) from None
        token = clean_text(body.get("access_token")) if isinstance(body, dict) else ""
        lifetime = body.get("expires_in") if isinstance(body, dict) else None
        if not token or any(c.isspace() or not c.isprintable() for c in token):
            raise SearchError(f"Openverse's token endpoint {url} answered without a usable token")
        seconds = float(lifetime) if isinstance(lifetime, int | float) else 0.0
        if not math.isfinite(seconds) or seconds <= 0:
            seconds = 0.0  # no lifetime given: use it for this request only
        # Renew a minute early (half-way for short-lived tokens) so none expires in flight.
        keep = seconds - min(self.TOKEN_MARGIN, seconds / 2)
        self._token = token
        self._token_until = self.session.clock.monotonic() + keep

    def _headers(self) -> dict[str, str]:
        if not self.authenticated:
            return {}
        if not self._token or self.session.clock.monotonic() >= self._token_until:
            self._fetch_token()
        return {"Authorization": f"Bearer {self._token}"}

    def _get(self, params: dict[str, Any]) -> Any:
        url = f"{self.base_url}/v1/images/"
        try:
            return self.session.request_json("GET", url, params=params, headers=self._headers())
        except SearchError as error:
            if error.status != 401 or not self.authenticated:
                raise
        self._token = ""  # revoked or expired early: one more try with a new token
        return self.session.request_json("GET", url, params=params, headers=self._headers())

    def search(self, query: str, count: int, license: LicenseFilter) -> Found:
        page_cap = self.AUTH_PAGE_SIZE if self.authenticated else self.PAGE_SIZE
        limit = self.AUTH_MAX_RESULTS if self.authenticated else self.MAX_RESULTS
        size = max(1, min(page_cap, count, limit))
        results = Found()
        page = 1
        while len(results) < count and (page - 1) * size < limit:
            params: dict[str, Any] = {"q": query, "page_size": size, "page": page}
            if license != "any":
                params["license_type"] = license
            try:
                body = self._get(params)
            except SearchError as error:
                if page == 1:
                    raise
                results.note = (
                    f"openverse: kept the {len(results)} results found for {query!r}; "
                    f"page {page} failed: {error}"
                )
                break
            items = body.get("results", []) if isinstance(body, dict) else []
            if not isinstance(items, list):
                items = []
            for item in items:
                if not isinstance(item, dict) or not _url(item.get("url")):
                    continue
                name = clean_text(item.get("license"))
                version = clean_text(item.get("license_version"))
                results.append(
                    SearchResult(
                        url=_url(item.get("url")),
                        provider=self.name,
                        query=query,
                        page_url=clean_text(item.get("foreign_landing_url")),
                        title=clean_text(item.get("title")),
                        creator=clean_text(item.get("creator")),
                        license=f"{name} {version}".strip(),
                        license_url=clean_text(item.get("license_url")),
                    )
                )
            page_count = body.get("page_count", 0) if isinstance(body, dict) else 0
            if not isinstance(page_count, int | float) or not math.isfinite(page_count):
                page_count = 0
            if not items or page >= page_count:
                break
            page += 1
        if not results.note and len(results) < count and page * size >= limit:
            results.note = self._cap_note(query, len(results), count, limit)
        found = Found(results[:count])
        found.note = results.note
        return found

    def _cap_note(self, query: str, got: int, wanted: int, limit: int) -> str:
        tier = "" if self.authenticated else f" to anonymous clients; set {OPENVERSE_CREDENTIALS}"
        more = f" for up to {self.AUTH_MAX_RESULTS:,}" if not self.authenticated else ""
        return (
            f"openverse: {got} of the {wanted} results asked for {query!r}: Openverse serves "
            f"at most {limit} results a query{tier}{more}"
        )


#: Bing's licence filter for each of ursa's (``any``: no filter).
_BING_LICENSES: dict[str, str] = {
    "any": "",
    "commercial": "ShareCommercially",
    "modification": "ModifyCommercially",
}


class DuckDuckGoProvider:
    """DuckDuckGo image search through the ``ddgs`` package; no key needed.

    Results carry no licence; ``license`` filters the search with DuckDuckGo's
    own licence filter and is recorded as the filter used.
    """

    name = "ddg"
    MIN_INTERVAL = 1.0
    _FILTERS = _BING_LICENSES  # DuckDuckGo's image search takes Bing's filter names

    def __init__(
        self,
        base_url: str = "https://duckduckgo.com",
        timeout: float = 20.0,
        *,
        policy: SearchPolicy | None = None,
        clock: Clock = time,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = ApiSession(_policy(policy, self.MIN_INTERVAL), timeout, clock)

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

    def search(self, query: str, count: int, license: LicenseFilter) -> Found:
        engine = self._engine()
        from ddgs.exceptions import RatelimitException, TimeoutException

        results = Found()
        extra = {"license_image": self._FILTERS[license]} if license != "any" else {}
        page = 1
        while len(results) < count and page <= 5:
            try:
                found = self.session.call(
                    functools.partial(engine.search, query, page=page, **extra),
                    retry_on=(RatelimitException, TimeoutException),
                )
            except Exception as error:  # ddgs raises its own exception types
                raise SearchError(
                    f"DuckDuckGo image search failed ({error}); try again later"
                ) from None
            for item in found or []:
                if not _url(getattr(item, "image", None)):
                    continue
                results.append(
                    SearchResult(
                        url=_url(item.image),
                        provider=self.name,
                        query=query,
                        page_url=clean_text(getattr(item, "url", "")),
                        title=clean_text(getattr(item, "title", "")),
                        creator=clean_text(getattr(item, "source", "")),
                        license="" if license == "any" else f"filter:{self._FILTERS[license]}",
                    )
                )
            if not found:
                break
            page += 1
        return Found(results[:count])


class BingProvider:
    """Bing Image Search v7; needs a subscription key."""

    name = "bing"
    PAGE_SIZE = 150
    """The most Bing returns per request."""
    MIN_INTERVAL = 0.35  # the common tiers allow 3 requests a second
    _FILTERS = _BING_LICENSES

    def __init__(
        self,
        api_key: str,
        base_url: str = "https://api.bing.microsoft.com",
        timeout: float = 20.0,
        *,
        policy: SearchPolicy | None = None,
        clock: Clock = time,
    ) -> None:
        if not api_key:
            raise ConfigError("the bing provider needs a key: pass --api-key or set URSA_BING_KEY")
        self.api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = ApiSession(_policy(policy, self.MIN_INTERVAL), timeout, clock)

    def search(self, query: str, count: int, license: LicenseFilter) -> Found:
        results = Found()
        offset = 0
        while len(results) < count:
            params: dict[str, Any] = {"q": query, "count": self.PAGE_SIZE, "offset": offset}
            if license != "any":
                params["license"] = self._FILTERS[license]
            body = self.session.request_json(
                "GET",
                f"{self.base_url}/v7.0/images/search",
                params=params,
                headers={"Ocp-Apim-Subscription-Key": self.api_key},
            )
            items = body.get("value", []) if isinstance(body, dict) else []
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict) and _url(item.get("contentUrl")):
                    results.append(
                        SearchResult(
                            url=_url(item.get("contentUrl")),
                            provider=self.name,
                            query=query,
                            page_url=clean_text(item.get("hostPageUrl")),
                            title=clean_text(item.get("name")),
                            license="" if license == "any" else f"filter:{self._FILTERS[license]}",
                        )
                    )
            next_offset = body.get("nextOffset") if isinstance(body, dict) else None
            if not items or not isinstance(next_offset, int) or next_offset <= offset:
                break
            offset = next_offset
        return Found(results[:count])


class GoogleProvider:
    """Google Programmable Search in image mode; needs an API key and a search-engine id (cx)."""

    name = "google"
    MAX_RESULTS = 100
    """Google serves the first 100 results of a query, 10 a page."""
    MIN_INTERVAL = 0.6  # the default quota is 100 queries a minute
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
        *,
        policy: SearchPolicy | None = None,
        clock: Clock = time,
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
        self.session = ApiSession(_policy(policy, self.MIN_INTERVAL), timeout, clock)

    def search(self, query: str, count: int, license: LicenseFilter) -> Found:
        results = Found()
        start = 1
        while len(results) < count:
            if start > self.MAX_RESULTS - 9:
                results.note = (
                    f"google: {len(results)} of the {count} results asked for {query!r}: Google "
                    f"serves at most the first {self.MAX_RESULTS} results of a query"
                )
                break
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
            body = self.session.request_json(
                "GET", f"{self.base_url}/customsearch/v1", params=params
            )
            items = body.get("items", []) if isinstance(body, dict) else []
            if not isinstance(items, list):
                items = []
            for item in items:
                if isinstance(item, dict) and _url(item.get("link")):
                    image = item.get("image")
                    if not isinstance(image, dict):
                        image = {}
                    results.append(
                        SearchResult(
                            url=_url(item.get("link")),
                            provider=self.name,
                            query=query,
                            page_url=clean_text(image.get("contextLink")),
                            title=clean_text(item.get("title")),
                            license="" if license == "any" else f"filter:{self._RIGHTS[license]}",
                        )
                    )
            if len(items) < 10:
                break
            start += 10
        found = Found(results[:count])
        found.note = results.note
        return found


def make_provider(
    name: str,
    *,
    base_url: str | None = None,
    api_key: str = "",
    engine_id: str = "",
    client_id: str = "",
    client_secret: str = "",
    timeout: float = 20.0,
    policy: SearchPolicy | None = None,
) -> SearchProvider:
    """The provider called ``name`` (openverse, ddg, bing, google).

    ``client_id`` / ``client_secret`` are Openverse's OAuth client credentials (optional).
    """
    if name == "openverse":
        return OpenverseProvider(
            base_url or "https://api.openverse.org", timeout,
            client_id=client_id, client_secret=client_secret, policy=policy,
        )  # fmt: skip
    if name == "ddg":
        return DuckDuckGoProvider(base_url or "https://duckduckgo.com", timeout, policy=policy)
    if name == "bing":
        return BingProvider(
            api_key, base_url or "https://api.bing.microsoft.com", timeout, policy=policy
        )
    if name == "google":
        return GoogleProvider(
            api_key, engine_id, base_url or "https://www.googleapis.com", timeout, policy=policy
        )
    raise ConfigError(f"provider={name!r}: use one of {', '.join(PROVIDERS)}")
