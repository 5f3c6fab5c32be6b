"""Download search results into class folders: concurrent, bounded, checked, resumable.

Search results are untrusted input. Every URL, and every redirect hop, is
resolved first and refused when any address it resolves to is private,
loopback, link-local, multicast or otherwise not global (SSRF), unless the
user allowed that host; an IPv6 address that embeds an IPv4 one (IPv4-mapped,
-compatible or -translated, NAT64, 6to4, Teredo) is judged by the IPv4 address
too, and the rest of ``::/8`` counts as not public. The request then goes to the
address that was checked (so a second DNS answer cannot swap it), with the
original ``Host`` header and TLS server name. Environment proxies are not used.
A malformed URL, in a search result or in a redirect, is recorded as refused
and the run goes on.

Each body is checked before it is kept: status, content type, a size cap
(from the header and while streaming), the magic bytes, a full decode with
:func:`~ursa.core.imageio.open_image` (pixel limit: decompression bombs),
a minimum side, and exact and near duplicates (sha256, perceptual hash) of
anything already in the dataset or forgotten. A kept file is written under a
hidden temporary name, flushed to disk, recorded as ``pending``, renamed to
``<class>/<sha256 prefix>.<ext>`` and recorded as ``ok``: no half-written
file is ever in a class folder, and a killed run is completed by running again.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import random
import socket
import tempfile
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit, urlunsplit

from ursa.core import hashing
from ursa.core.errors import ConfigError, DataError, ImageError
from ursa.core.imageio import MAX_PIXELS, open_image
from ursa.core.manifest import PART_PREFIX, ImageRecord, Manifest, now, url_key
from ursa.core.safepaths import outside_link
from ursa.gather.search import (
    LICENSE_FILTERS,
    LicenseFilter,
    SearchProvider,
    SearchResult,
    clean_text,
)

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

USER_AGENT = "ursa-gather/0.1 (+https://github.com/; image dataset builder)"
ACCEPTED_TYPES = ("image/", "application/octet-stream", "binary/octet-stream")
#: URL outcomes that a later run does not try again (``failed`` is retried).
SETTLED = frozenset({"saved", "duplicate", "near-duplicate", "rejected", "refused", "forgotten"})
#: Longer URLs are refused (browsers and servers stop well before; no image needs more).
MAX_URL_CHARS = 8192


@dataclass(frozen=True)
class DownloadConfig:
    """How images are fetched and which are kept."""

    concurrency: int = 8
    """Downloads in flight at once."""
    timeout: float = 20.0
    """Seconds one request may take, start to last byte (redirects included)."""
    max_bytes: int = 20_000_000
    """Bodies larger than this are refused."""
    retries: int = 2
    """Extra attempts after a transient failure (timeout, connection error, 429, 5xx)."""
    backoff: float = 1.0
    """Seconds before the first retry; doubled each time (with jitter)."""
    max_redirects: int = 5
    min_side: int = 32
    """Images whose shorter side is below this many pixels are refused."""
    max_pixels: int = MAX_PIXELS
    """Images with more pixels are refused (decompression bombs)."""
    near_threshold: int = 6
    """Perceptual-hash distance (of 64 bits) at or below which two images count as the same."""
    allow_hosts: tuple[str, ...] = ()
    """Hosts allowed even though they are private/loopback: ``host``, ``host:port`` or a CIDR."""

    def __post_init__(self) -> None:
        problems = []
        if self.concurrency < 1:
            problems.append(f"concurrency={self.concurrency}: use 1 or more")
        if self.timeout <= 0:
            problems.append(f"timeout={self.timeout}: use a positive number of seconds")
        if self.max_bytes < 1:
            problems.append(f"max_bytes={self.max_bytes}: use a positive number of bytes")
        if self.retries < 0:
            problems.append(f"retries={self.retries}: use 0 or more")
        if self.backoff < 0:
            problems.append(f"backoff={self.backoff}: use 0 or more seconds")
        if self.max_redirects < 0:
            problems.append(f"max_redirects={self.max_redirects}: use 0 or more")
        if self.min_side < 1:
            problems.append(f"min_side={self.min_side}: use 1 or more pixels")
        if not 0 <= self.near_threshold <= 32:
            problems.append(f"near_threshold={self.near_threshold}: use 0 to 32 bits")
        for entry in self.allow_hosts:
            if not entry or ("/" in entry and _network(entry) is None):
                problems.append(f"allow_hosts entry {entry!r}: use host, host:port or a CIDR")
        if problems:
            raise ConfigError("invalid download settings:\n  " + "\n  ".join(problems))


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_RESERVED = ipaddress.IPv6Network("::/8")  # unspecified, loopback, IPv4-compatible, ...
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")  # IPv4-mapped: the IPv4 address decides
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the IPv4 address is the last 32 bits
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215, never global
_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # RFC 2765 IPv4-translated
_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated IPv4-compatible


def embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (mapped, compatible, translated, NAT64,
    6to4, Teredo server and client); empty for an IPv4 address or a plain IPv6 one.

    Python 3.11's ``is_global`` looks into none of them (it only lists ``::ffff:0:0/96``
    as private), so ``[::127.0.0.1]`` or ``[64:ff9b::7f00:1]`` would pass for public
    though a NAT64 gateway, a 6to4 relay or the kernel may deliver them to loopback.
    """
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    low = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    found = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address in _NAT64 or address in _TRANSLATED or (address in _COMPATIBLE and int(low) > 1):
        found.append(low)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    return found


class Refused(Exception):
    """A URL the guard will not fetch (private address, bad scheme, ...)."""


class Rejected(Exception):
    """A response that is not an image worth keeping (permanent)."""


class Transient(Exception):
    """A failure worth retrying (timeout, connection error, 429, 5xx)."""


@dataclass(frozen=True)
class Target:
    """A checked URL and the address the request must go to."""

    url: str
    request_url: str
    host_header: str
    host: str
    scheme: str


def url_problem(url: object) -> str | None:
    """What makes ``url`` unusable before any parsing (not text, too long, a control
    character or a space, text that is not valid Unicode), or ``None``."""
    if not isinstance(url, str) or not url:
        return "empty or not text"
    if len(url) > MAX_URL_CHARS:
        return f"longer than {MAX_URL_CHARS:,} characters"
    if any(char.isspace() or not char.isprintable() for char in url):
        return "contains a space or a control character"
    try:
        url.encode("utf-8")
    except UnicodeEncodeError:
        return "contains text that is not valid Unicode (a lone surrogate)"
    return None


class UrlGuard:
    """Refuses URLs that resolve to non-global addresses unless the host is allowed."""

    def __init__(self, allow_hosts: Sequence[str] = ()) -> None:
        self.allow_names = {entry.lower() for entry in allow_hosts if "/" not in entry}
        self.allow_networks = [n for entry in allow_hosts if (n := _network(entry)) is not None]

    def _allowed(self, host: str, port: int, address: IPAddress) -> bool:
        if host.lower() in self.allow_names or f"{host.lower()}:{port}" in self.allow_names:
            return True
        candidates = [address, *embedded_ipv4(address)]
        return any(a in network for a in candidates for network in self.allow_networks)

    @staticmethod
    def is_public(address: IPAddress) -> bool:
        """Whether ``address`` is globally routable unicast, and so is every IPv4 it embeds."""
        if isinstance(address, ipaddress.IPv6Address):
            # All of ::/8 is reserved, but for two forms whose embedded IPv4 address decides.
            reserved = address in _RESERVED and address not in _MAPPED and address not in _NAT64
            if reserved or address in _LOCAL_NAT64:
                return False
            if not all(UrlGuard.is_public(inner) for inner in embedded_ipv4(address)):
                return False
        return bool(address.is_global) and not address.is_multicast

    async def check(self, url: str) -> Target:
        problem = url_problem(url)
        if problem is not None:
            raise Refused(f"malformed URL: {problem}")
        try:
            parts = urlsplit(url)
            host = parts.hostname
            port_given = parts.port
        except ValueError as error:  # "Invalid IPv6 URL", a port out of range, ...
            raise Refused(f"malformed URL: {error}") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise Refused(f"scheme {scheme or 'none'!r} is not http(s)")
        if not host:
            raise Refused("the URL has no host")
        if parts.username or parts.password:
            raise Refused("URLs with credentials are not fetched")
        port = port_given or (443 if scheme == "https" else 80)
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except UnicodeError as error:  # a label IDNA cannot encode: the name is malformed
            raise Refused(f"malformed host name {host!r} ({error})") from None
        except socket.gaierror as error:
            raise Transient(f"cannot resolve {host} ({error})") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        if not addresses:
            raise Transient(f"{host} resolves to no address")
        # Every answer is checked, and the request goes to the first: the address connected to.
        for address in addresses:
            if not self.is_public(address) and not self._allowed(host, port, address):
                inner = ", ".join(str(a) for a in embedded_ipv4(address))
                embeds = f" (which embeds {inner})" if inner else ""
                raise Refused(
                    f"{host} resolves to {address}{embeds}, a private/loopback/link-local "
                    f"address (allow it with --allow-host {host}:{port} only if you trust it)"
                )
        address = addresses[0]
        literal = f"[{address}]" if address.version == 6 else str(address)
        default_port = 443 if scheme == "https" else 80
        netloc = literal if port == default_port else f"{literal}:{port}"
        host_header = parts.netloc.rsplit("@", 1)[-1]
        request_url = urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
        return Target(url, request_url, host_header, host, scheme)


_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "jpg"),
    (b"\x89PNG\r\n\x1a\n", 0, "png"),
    (b"GIF87a", 0, "gif"),
    (b"GIF89a", 0, "gif"),
    (b"WEBP", 8, "webp"),
    (b"BM", 0, "bmp"),
    (b"II*\x00", 0, "tif"),
    (b"MM\x00*", 0, "tif"),
)


def sniff_extension(data: bytes) -> str | None:
    """The file extension the magic bytes say, or None when they are no image format ursa keeps."""
    for magic, offset, extension in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            if extension == "webp" and data[:4] != b"RIFF":
                continue
            return extension
    return None


def validate_class_name(name: str) -> str:
    """A class name usable as a folder name, or a :class:`DataError` saying why not."""
    cleaned = name.strip()
    bad = not cleaned or cleaned.startswith(".") or any(c in cleaned for c in "/\\\0:")
    if bad or cleaned.lower() in ("train", "valid", "val", "validation"):
        raise DataError(
            f"class name {name!r} cannot be a folder name here: use letters, digits, spaces, "
            f"'-' or '_', not starting with '.', and not train/valid"
        )
    return cleaned


@dataclass(frozen=True)
class Job:
    """One search result to try for one class."""

    label: str
    result: SearchResult


@dataclass(frozen=True)
class DownloadEvent:
    """What happened to one URL; passed to the progress callback."""

    label: str
    url: str
    outcome: str
    """saved, duplicate, near-duplicate, rejected, refused, forgotten or failed."""
    reason: str = ""
    path: str = ""


@dataclass
class DownloadReport:
    """Totals of a download run."""

    saved: dict[str, int]
    """Images per class in the dataset after the run (earlier runs included)."""
    target: int
    """Images wanted per class."""
    outcomes: Counter[str] = field(default_factory=Counter)
    """How many URLs ended each way in this run."""
    events: list[DownloadEvent] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What the search said about itself: a service's cap reached, a later page that failed."""

    @property
    def short(self) -> dict[str, int]:
        """Classes that ended with fewer images than wanted, and how many they have."""
        return {label: n for label, n in self.saved.items() if n < self.target}


async def _fetch(
    client: httpx.AsyncClient, guard: UrlGuard, url: str, config: DownloadConfig
) -> bytes:
    """One attempt: follow redirects by hand (checking each hop), stream the body with a cap."""
    import httpx

    current = url
    for _hop in range(config.max_redirects + 1):
        target = await guard.check(current)
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        try:
            request = client.build_request(
                "GET", target.request_url, headers={"Host": target.host_header},
                extensions=extensions,
            )  # fmt: skip
            response = await client.send(request, stream=True)
        except httpx.InvalidURL as error:
            # httpx parses a redirect's Location itself (even when not following it).
            raise Refused(f"malformed URL or redirect target ({error})") from None
        except httpx.TimeoutException:
            raise Transient("timed out") from None
        except httpx.RemoteProtocolError as error:
            if str(error).startswith("Invalid URL in location header"):
                raise Refused(f"redirect to a malformed URL ({error})") from None
            raise Transient(f"connection failed ({type(error).__name__})") from None
        except httpx.TransportError as error:
            raise Transient(f"connection failed ({type(error).__name__})") from None
        try:
            if response.is_redirect:
                location = response.headers.get("location", "")
                if not location:
                    raise Rejected(f"redirect ({response.status_code}) without a Location")
                try:
                    current = urljoin(current, location)
                except ValueError as error:
                    raise Refused(f"redirect to a malformed URL ({error})") from None
                continue
            status = response.status_code
            if status == 429 or status >= 500:
                raise Transient(f"HTTP {status}")
            if status != 200:
                raise Rejected(f"HTTP {status}")
            content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type and not content_type.startswith(ACCEPTED_TYPES):
                raise Rejected(f"served as {content_type}, not an image")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > config.max_bytes:
                raise Rejected(f"{int(declared):,} bytes, over the cap of {config.max_bytes:,}")
            body = bytearray()
            try:
                async for chunk in response.aiter_bytes():
                    body.extend(chunk)
                    if len(body) > config.max_bytes:
                        raise Rejected(f"over the size cap of {config.max_bytes:,} bytes")
            except httpx.DecodingError as error:  # e.g. "Content-Encoding: gzip" over garbage
                raise Rejected(f"the body could not be decoded ({error})") from None
            except httpx.TimeoutException:
                raise Transient("timed out while reading") from None
            except httpx.TransportError as error:
                raise Transient(
                    f"connection broke while reading ({type(error).__name__})"
                ) from None
            return bytes(body)
        finally:
            await response.aclose()
    raise Rejected(f"more than {config.max_redirects} redirects")


async def fetch_with_retries(
    client: httpx.AsyncClient, guard: UrlGuard, url: str, config: DownloadConfig
) -> bytes:
    """:func:`_fetch` under the per-request deadline, retried with backoff on transient errors."""
    attempt = 0
    while True:
        try:
            async with asyncio.timeout(config.timeout):
                return await _fetch(client, guard, url, config)
        except TimeoutError:
            reason = f"no complete answer within {config.timeout:g} s"
        except Transient as error:
            reason = str(error)
        if attempt >= config.retries:
            raise Transient(f"{reason} (after {attempt + 1} attempts)")
        delay = config.backoff * (2**attempt) * (0.75 + random.random() / 2)
        attempt += 1
        await asyncio.sleep(delay)


def _storable(result: SearchResult) -> SearchResult:
    """``result`` with its descriptive text cleaned so the manifest can store it (a provider
    other than ursa's own may pass lone surrogates through)."""
    return replace(
        result,
        page_url=clean_text(result.page_url), title=clean_text(result.title),
        creator=clean_text(result.creator), license=clean_text(result.license),
        license_url=clean_text(result.license_url), query=clean_text(result.query),
        provider=clean_text(result.provider),
    )  # fmt: skip


def _write_part(folder: Path, data: bytes) -> Path:
    """Write ``data`` to a hidden temporary file in ``folder``, flushed to disk."""
    folder.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=PART_PREFIX, suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


class _Downloader:
    """The state one download run shares between its workers (one event loop, no locks needed)."""

    def __init__(
        self,
        root: Path,
        manifest: Manifest,
        per_class: int,
        config: DownloadConfig,
        on_event: Callable[[DownloadEvent], None] | None,
    ) -> None:
        self.root = root
        self.manifest = manifest
        self.per_class = per_class
        self.config = config
        self.on_event = on_event
        self.guard = UrlGuard(config.allow_hosts)
        ok = manifest.records(status="ok")
        self.known_sha = {r.sha256 for r in manifest.records()}
        self.known_phash = [hashing.from_hex(r.phash) for r in ok if r.phash]
        self.forgotten_sha = manifest.forgotten("sha256")
        self.forgotten_phash = [hashing.from_hex(h) for h in manifest.forgotten("phash")]
        self.forgotten_urls = manifest.forgotten("url")
        self.settled = {u for u, o in manifest.fetch_outcomes().items() if o in SETTLED}
        self.saved: Counter[str] = Counter(r.label for r in ok)
        self.in_flight: Counter[str] = Counter()
        self.report = DownloadReport(saved={}, target=per_class)

    def refuse_unstorable(self, job: Job) -> bool:
        """Record ``job`` as refused when its URL is not valid Unicode (it could not be stored)."""
        url = job.result.url
        try:
            url.encode("utf-8")
        except UnicodeEncodeError:
            # Recorded under an escaped spelling, the same on every run, so reruns skip it too.
            stored = url.encode("utf-8", "backslashreplace").decode("utf-8")
            job = Job(job.label, replace(job.result, url=stored))
            if stored not in self.settled:
                reason = "malformed URL: contains text that is not valid Unicode"
                self.manifest.record_fetch(stored, job.label, "refused", reason)
                self.settled.add(stored)
                self.emit(job, "refused", reason)
            return True
        return False

    def emit(self, job: Job, outcome: str, reason: str = "", path: str = "") -> None:
        event = DownloadEvent(job.label, job.result.url, outcome, reason, path)
        self.report.outcomes[outcome] += 1
        self.report.events.append(event)
        if outcome != "saved":
            log.info("%s %s: %s", outcome, job.result.url, reason)
        if self.on_event is not None:
            self.on_event(event)

    def take(self, queue: deque[Job]) -> Job | None:
        """The next job whose class still needs images, or None."""
        for index, job in enumerate(queue):
            if self.saved[job.label] + self.in_flight[job.label] < self.per_class:
                del queue[index]
                return job
        return None

    async def worker(self, client: httpx.AsyncClient, queue: deque[Job]) -> None:
        while (job := self.take(queue)) is not None:
            self.in_flight[job.label] += 1
            try:
                outcome, reason, path = await self.process(client, job)
            finally:
                self.in_flight[job.label] -= 1
            self.manifest.record_fetch(job.result.url, job.label, outcome, reason)
            self.emit(job, outcome, reason, path)

    async def process(self, client: httpx.AsyncClient, job: Job) -> tuple[str, str, str]:
        url = job.result.url
        try:
            data = await fetch_with_retries(client, self.guard, url, self.config)
        except Refused as error:
            return "refused", str(error), ""
        except Rejected as error:
            return "rejected", str(error), ""
        except Transient as error:
            return "failed", str(error), ""
        except ValueError as error:  # a URL form no check above foresaw: refuse it, go on
            log.debug("unusable URL %r", url, exc_info=True)
            return "refused", f"malformed URL ({error})", ""
        if not data:
            return "rejected", "empty body (0 bytes)", ""
        extension = sniff_extension(data)
        if extension is None:
            return "rejected", f"not an image (starts with {data[:8]!r})", ""
        sha256 = hashing.sha256_bytes(data)
        if sha256 in self.forgotten_sha:
            return "forgotten", "this image was forgotten (ursa forget)", ""
        try:
            image = await asyncio.to_thread(open_image, data, max_pixels=self.config.max_pixels)
        except ImageError as error:
            return "rejected", error.reason, ""
        if min(image.size) < self.config.min_side:
            return "rejected", f"{image.width}×{image.height}, under {self.config.min_side} px", ""
        perceptual = await asyncio.to_thread(hashing.phash, image)
        # No await from here until the reservation: the checks and the reservation are atomic.
        if sha256 in self.known_sha:
            return "duplicate", "the same bytes are already in the dataset", ""
        if self.forgotten_phash and self._near(perceptual, self.forgotten_phash):
            return "forgotten", "a copy of a forgotten image", ""
        if self._near(perceptual, self.known_phash):
            return "near-duplicate", "a near copy is already in the dataset", ""
        self.known_sha.add(sha256)
        self.known_phash.append(perceptual)
        try:
            path = await self.save(job, data, sha256, perceptual, extension, image.size)
        except OSError as error:
            self.known_sha.discard(sha256)
            self.known_phash.remove(perceptual)
            return "failed", f"could not write the file ({error})", ""
        self.saved[job.label] += 1
        return "saved", "", path

    def _near(self, value: int, hashes: list[int]) -> bool:
        found = hashing.nearest(value, hashes)
        return found is not None and found[1] <= self.config.near_threshold

    async def save(
        self,
        job: Job,
        data: bytes,
        sha256: str,
        perceptual: int,
        extension: str,
        size: tuple[int, int],
    ) -> str:
        folder = self.root / job.label
        part = await asyncio.to_thread(_write_part, folder, data)
        relative = f"{job.label}/{sha256[:20]}.{extension}"
        result = job.result
        record = ImageRecord(
            path=relative, sha256=sha256, label=job.label, phash=hashing.to_hex(perceptual),
            status="pending", width=size[0], height=size[1], size_bytes=len(data),
            source_url=result.url, page_url=result.page_url, provider=result.provider,
            query=result.query, license=result.license, license_url=result.license_url,
            creator=result.creator, title=result.title, fetched_at=now(),
        )  # fmt: skip
        try:
            self.manifest.put(record)
            os.replace(part, self.root / relative)
        except BaseException:
            part.unlink(missing_ok=True)
            self.manifest.remove([relative])
            raise
        self.manifest.update(relative, status="ok")
        return relative

    async def run(self, jobs: Sequence[Job]) -> DownloadReport:
        import httpx

        queue: deque[Job] = deque()
        seen: set[str] = set()
        for job in jobs:
            url = job.result.url
            if url in seen:
                continue
            seen.add(url)
            if self.refuse_unstorable(job):
                continue
            job = Job(job.label, _storable(job.result))
            if url_key(url) in self.forgotten_urls:
                self.emit(job, "forgotten", "this URL was forgotten (ursa forget)")
                continue
            if url in self.settled:
                continue
            queue.append(job)
        limits = httpx.Limits(max_connections=self.config.concurrency)
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(self.config.timeout),
            follow_redirects=False,
            trust_env=False,
            limits=limits,
            headers={"User-Agent": USER_AGENT, "Accept": "image/*"},
        ) as client:
            workers = [self.worker(client, queue) for _ in range(self.config.concurrency)]
            await asyncio.gather(*workers)
        labels = sorted({job.label for job in jobs} | set(self.saved))
        self.report.saved = {label: self.saved[label] for label in labels}
        return self.report


def download(
    root: str | Path,
    jobs: Sequence[Job],
    per_class: int,
    config: DownloadConfig | None = None,
    on_event: Callable[[DownloadEvent], None] | None = None,
) -> DownloadReport:
    """Download ``jobs`` into ``root/<label>/`` until each class has ``per_class`` images.

    Already-settled URLs (earlier runs) are skipped; a class that already has
    ``per_class`` images gets no more. Returns the totals.
    """
    config = config or DownloadConfig()
    folder = Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    linked = sorted({job.label for job in jobs if outside_link(folder / job.label, folder)})
    if linked:  # a download writes into its class folder: never through a link out
        raise DataError(
            f"class folder(s) {', '.join(repr(n) for n in linked)} in {folder} lead outside it "
            f"through a symlink; ursa gather writes only inside the dataset: replace the link "
            f"with a real folder"
        )
    with Manifest(folder) as manifest:
        manifest.settle_pending()
        downloader = _Downloader(folder, manifest, per_class, config, on_event)
        return asyncio.run(downloader.run(jobs))


@dataclass(frozen=True)
class GatherConfig:
    """What to search for."""

    classes: tuple[str, ...]
    """Class names; each becomes a folder."""
    query: str = "{}"
    """Search query, ``{}`` standing for the class name (e.g. ``"{} bear"``)."""
    per_class: int = 150
    """Images wanted per class."""
    license: LicenseFilter = "any"
    """any, commercial or modification (the provider's licence filter)."""
    candidates: float = 2.0
    """Search results asked for per wanted image (many results fail or are duplicates)."""

    def __post_init__(self) -> None:
        problems = []
        if not self.classes:
            problems.append("classes: give at least one class name")
        if len(set(self.classes)) != len(self.classes):
            problems.append("classes: a class name is given twice")
        if "{}" not in self.query:
            problems.append(f"query={self.query!r}: put {{}} where the class name goes")
        if self.per_class < 1:
            problems.append(f"per_class={self.per_class}: use 1 or more")
        if self.license not in LICENSE_FILTERS:
            problems.append(f"license={self.license!r}: use one of {', '.join(LICENSE_FILTERS)}")
        if self.candidates < 1:
            problems.append(f"candidates={self.candidates}: use 1 or more")
        if problems:
            raise ConfigError("invalid gather settings:\n  " + "\n  ".join(problems))


def gather(
    root: str | Path,
    config: GatherConfig,
    provider: SearchProvider,
    download_config: DownloadConfig | None = None,
    on_event: Callable[[DownloadEvent], None] | None = None,
) -> DownloadReport:
    """Search ``provider`` for every class and download the results into ``root/<class>/``."""
    labels = [validate_class_name(name) for name in config.classes]
    wanted = max(1, round(config.per_class * config.candidates))
    jobs: list[Job] = []
    searches = [(label, config.query.replace("{}", label)) for label in labels]
    results = [provider.search(query, wanted, config.license) for _, query in searches]
    notes = [note for found in results if (note := getattr(found, "note", ""))]
    for note in notes:
        log.info("%s", note)
    # Interleave the classes so every class fills at the same pace.
    for index in range(max((len(r) for r in results), default=0)):
        for (label, _), found in zip(searches, results, strict=True):
            if index < len(found):
                jobs.append(Job(label, found[index]))
    report = download(root, jobs, config.per_class, download_config, on_event)
    report.notes.extend(notes)
    for label in labels:
        report.saved.setdefault(label, 0)
    return report
