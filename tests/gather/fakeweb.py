"""A real HTTP server on 127.0.0.1 that plays the search APIs and serves images.

Started by the tests themselves (a thread running :class:`http.server.ThreadingHTTPServer`);
nothing here touches the internet. It can be made to behave like a busy service:
:meth:`FakeWeb.throttle` answers the next requests to a path with 429 and ``Retry-After``,
``api_headers`` go out with every API answer (``X-RateLimit-*``), and the Openverse API
keeps Openverse's anonymous limits (20 a page, 240 a query) and its OAuth token endpoint.
"""

from __future__ import annotations

import io
import json
import struct
import threading
import time
import zlib
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
from PIL import Image


def structured_image(rng: np.random.Generator, size: int = 96) -> Image.Image:
    """A smooth random picture: a 6×6 colour grid upsampled. Independent ones look unrelated."""
    grid = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
    return Image.fromarray(grid, mode="RGB").resize((size, size), Image.Resampling.BICUBIC)


def encode(image: Image.Image, fmt: str = "JPEG", **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def near_copy(image: Image.Image) -> bytes:
    """A resized, re-encoded copy: different bytes, the same picture."""
    smaller = image.resize((image.width * 3 // 4, image.height * 3 // 4), Image.Resampling.LANCZOS)
    return encode(smaller, "JPEG", quality=70)


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims ``width × height`` pixels (a decompression bomb)."""
    data = encode(Image.new("L", (8, 8)), "PNG")
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    patched = struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF)
    return data[:8] + patched + data[8 + 25 :]


@dataclass
class Resource:
    """What the server answers for one path."""

    body: bytes = b""
    content_type: str = "image/jpeg"
    status: int = 200
    delay: float = 0.0
    location: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    """More headers to send (e.g. a ``Content-Encoding`` the body does not have)."""


@dataclass
class Reply:
    """A canned answer that jumps the queue (a throttled or failing API)."""

    status: int = 429
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"detail": "Request was throttled."}'


@dataclass
class FakeWeb:
    """Search APIs (Openverse, DuckDuckGo, Bing, Google) and files, on 127.0.0.1."""

    resources: dict[str, Resource] = field(default_factory=dict)
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Search results per query: dicts with path, title, creator, license."""
    hits: Counter[str] = field(default_factory=Counter)
    requests: list[tuple[str, dict[str, list[str]], dict[str, str]]] = field(default_factory=list)
    delay: float = 0.0
    """Seconds every file takes (to make a download run long enough to be killed)."""
    scripted: dict[str, deque[Reply]] = field(default_factory=dict)
    """Answers given, in order, to the next requests to a path before it answers normally."""
    api_headers: dict[str, str] = field(default_factory=dict)
    """Headers sent with every search API answer (e.g. ``X-RateLimit-Remaining``)."""
    openverse_clients: dict[str, str] = field(default_factory=dict)
    """Openverse OAuth clients: ``{client_id: client_secret}``."""
    token_lifetime: int = 3600
    """``expires_in`` of the Openverse tokens handed out."""
    tokens: list[str] = field(default_factory=list)
    """Openverse tokens handed out, in order; a token removed from here is refused."""
    anonymous_page_size: int = 20
    anonymous_results: int = 240
    authed_page_size: int = 500

    def __post_init__(self) -> None:
        web = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                web.handle(self)

            def do_POST(self) -> None:
                web.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda *args: None  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    @property
    def base(self) -> str:
        return f"http://{self.host}"

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def __enter__(self) -> FakeWeb:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(self, path: str, resource: Resource) -> str:
        self.resources[path] = resource
        return self.url(path)

    def add_result(self, query: str, path: str, **meta: str) -> None:
        """A search result for ``query``: ``path`` on this server, or any absolute URL."""
        self.results.setdefault(query, []).append({"path": path, **meta})

    def throttle(self, path: str, times: int, retry_after: str | None = "1", status: int = 429,
                 headers: dict[str, str] | None = None) -> None:  # fmt: skip
        """Answer the next ``times`` requests to ``path`` with ``status`` (and Retry-After)."""
        extra = dict(headers or {})
        if retry_after is not None:
            extra["Retry-After"] = retry_after
        queue = self.scripted.setdefault(path, deque())
        queue.extend(Reply(status, extra) for _ in range(times))

    def link(self, path: str) -> str:
        """What a result's ``path`` stands for: a URL on this server, or the URL itself."""
        return path if not path.startswith("/") else self.url(path)

    # ------------------------------------------------------------------------

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        query = parse_qs(parts.query)
        self.requests.append((parts.path, query, dict(handler.headers)))
        self.hits[parts.path] += 1
        try:
            waiting = self.scripted.get(parts.path)
            if waiting:
                canned = waiting.popleft()
                self.reply(handler, canned.status, "application/json", canned.body, canned.headers)
            elif parts.path == "/v1/auth_tokens/token/" and handler.command == "POST":
                self.openverse_token(handler)
            elif parts.path == "/v1/images/":
                self.openverse_search(handler, query)
            elif parts.path == "/":
                self.reply(handler, 200, "text/html", b'<html><script>vqd="4-12345";</script>')
            elif parts.path == "/i.js":
                self.reply_json(handler, self.ddg(query))
            elif parts.path == "/v7.0/images/search":
                if handler.headers.get("Ocp-Apim-Subscription-Key") != "bing-key":
                    self.reply(handler, 401, "application/json", b"{}")
                else:
                    self.reply_json(handler, self.bing(query))
            elif parts.path == "/customsearch/v1":
                self.reply_json(handler, self.google(query))
            elif parts.path in self.resources:
                self.serve(handler, self.resources[parts.path])
            else:
                self.reply(handler, 404, "text/plain", b"not found")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def found(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        return self.results.get(query.get("q", [""])[0], [])

    def openverse_token(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length", "0"))
        form = parse_qs(handler.rfile.read(length).decode())
        client = form.get("client_id", [""])[0]
        good = form.get("grant_type") == ["client_credentials"] and client in self.openverse_clients
        if not good or form.get("client_secret", [""])[0] != self.openverse_clients[client]:
            self.reply(handler, 401, "application/json", b'{"error": "invalid_client"}')
            return
        token = f"token-{self.hits['/v1/auth_tokens/token/']}"
        self.tokens.append(token)
        body = {"access_token": token, "token_type": "Bearer", "expires_in": self.token_lifetime}
        self.reply_json(handler, body)

    def openverse_search(
        self, handler: BaseHTTPRequestHandler, query: dict[str, list[str]]
    ) -> None:
        auth = handler.headers.get("Authorization", "")
        if auth and auth.removeprefix("Bearer ") not in self.tokens:
            self.reply(handler, 401, "application/json", b'{"detail": "invalid token"}')
            return
        size = int(query.get("page_size", ["20"])[0])
        page = int(query.get("page", ["1"])[0])
        if not auth and size > self.anonymous_page_size:
            self.reply(handler, 401, "application/json", b'{"detail": "page_size: log in"}')
        elif size > self.authed_page_size or (not auth and page * size > self.anonymous_results):
            self.reply(handler, 400, "application/json", b'{"detail": "too deep"}')
        else:
            self.reply_json(handler, self.openverse(query, authed=bool(auth)))

    def openverse(self, query: dict[str, list[str]], authed: bool = False) -> dict[str, Any]:
        found = self.found(query)
        if not authed:
            found = found[: self.anonymous_results]
        size = int(query.get("page_size", ["20"])[0])
        page = int(query.get("page", ["1"])[0])
        chunk = found[(page - 1) * size : page * size]
        results = [
            {
                "url": self.link(item["path"]),
                "foreign_landing_url": self.link("/page" + item["path"]),
                "title": item.get("title", ""),
                "creator": item.get("creator", "someone"),
                "license": item.get("license", "by"),
                "license_version": "4.0",
                "license_url": "https://creativecommons.org/licenses/by/4.0/",
            }
            for item in chunk
        ]
        return {"results": results, "page_count": max(1, -(-len(found) // size))}

    def ddg(self, query: dict[str, list[str]]) -> dict[str, Any]:
        start = int(query.get("s", ["0"])[0])
        found = self.found(query)[start : start + 100]
        return {
            "results": [
                {"image": self.url(i["path"]), "url": self.url("/page" + i["path"]),
                 "title": i.get("title", ""), "source": "Bing", "thumbnail": "",
                 "width": 96, "height": 96}
                for i in found
            ]
        }  # fmt: skip

    def bing(self, query: dict[str, list[str]]) -> dict[str, Any]:
        offset = int(query.get("offset", ["0"])[0])
        count = int(query.get("count", ["35"])[0])
        found = self.found(query)
        chunk = found[offset : offset + count]
        return {
            "value": [
                {"contentUrl": self.url(i["path"]), "hostPageUrl": self.url("/page" + i["path"]),
                 "name": i.get("title", "")}
                for i in chunk
            ],
            "nextOffset": offset + len(chunk),
        }  # fmt: skip

    def google(self, query: dict[str, list[str]]) -> dict[str, Any]:
        start = int(query.get("start", ["1"])[0]) - 1
        chunk = self.found(query)[start : start + 10]
        return {
            "items": [
                {"link": self.url(i["path"]), "title": i.get("title", ""),
                 "image": {"contextLink": self.url("/page" + i["path"])}}
                for i in chunk
            ]
        }  # fmt: skip

    def serve(self, handler: BaseHTTPRequestHandler, resource: Resource) -> None:
        delay = resource.delay or self.delay
        if delay:
            time.sleep(delay)
        if resource.location:
            handler.send_response(resource.status or 302)
            handler.send_header("Location", resource.location)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        self.reply(handler, resource.status, resource.content_type, resource.body, resource.headers)

    def reply(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        ctype: str,
        body: bytes,
        headers: dict[str, str] | None = None,
    ) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", ctype)
        handler.send_header("Content-Length", str(len(body)))
        for name, value in {**(self.api_headers if ctype == "application/json" else {}),
                            **(headers or {})}.items():  # fmt: skip
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)

    def reply_json(self, handler: BaseHTTPRequestHandler, body: object) -> None:
        self.reply(handler, 200, "application/json", json.dumps(body).encode())


@dataclass
class FakeClock:
    """A clock for :class:`ursa.gather.search.ApiSession` that never really waits.

    ``sleep`` records the wait and moves the time on, so pacing and backoff can be
    checked exactly and tests stay fast.
    """

    now: float = 1000.0
    wall: float = 1_700_000_000.0
    sleeps: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.wall + self.now

    def sleep(self, seconds: float, /) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass outside any request (the user waited)."""
        self.now += seconds
