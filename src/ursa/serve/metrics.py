"""Request metrics in the Prometheus text format, kept by ``prometheus_client``.

Counted by a small ASGI middleware: requests by path, method and status, a latency
histogram by path, requests in flight, the micro-batches the model ran and the prediction
requests refused because the server was full. Each app has its own registry (never the
library's global one), so two apps in one process, as in the tests, count apart.

Every label takes a bounded set of values, so that scanners cannot grow the table:
a path, method or status that is not known is counted as ``other``. A client that
hangs up before its answer is status ``499`` (nginx's "client closed request"), not 500.
"""

from __future__ import annotations

import http
import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from ursa.core.asgi import ASGIApp, Message, Receive, Scope, Send

# No `*_created` gauge beside every counter and histogram series: it would double the
# series a scraper stores, for a start time the process's own metrics already say.
disable_created_metrics()

#: Latency bucket upper bounds, in seconds.
BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Paths reported by name; anything else is "other" so that scanners cannot grow the table.
KNOWN_PATHS = frozenset(
    {
        "/",
        "/live",
        "/predict",
        "/predict/batch",
        "/healthz",
        "/metadata",
        "/metrics",
        "/docs",
        "/redoc",
        "/openapi.json",
    }
)
#: Methods reported by name.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
#: Status of a request whose client closed the connection before the answer.
CLIENT_CLOSED = 499
#: Statuses reported by number: the standard ones and 499.
KNOWN_STATUSES = frozenset({status.value for status in http.HTTPStatus} | {CLIENT_CLOSED})


def path_label(path: str) -> str:
    """``path`` if it is one of the server's, ``/static`` for its files, else ``other``."""
    if path in KNOWN_PATHS:
        return path
    return "/static" if path.startswith("/static/") else "other"


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else "other"


def status_label(status: int) -> str:
    return str(status) if status in KNOWN_STATUSES else "other"


class Metrics:
    """The server's metrics, in a registry of their own; safe to update from several threads."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ursa_http_requests",
            "HTTP requests answered, by path, method, status (499: the client closed the "
            "connection first; unknown values: other).",
            ("path", "method", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "ursa_http_request_duration_seconds",
            "Time from request start to response.",
            ("path",),
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "ursa_http_requests_in_flight",
            "HTTP requests being answered now.",
            registry=self.registry,
        )
        self.batches = Counter(
            "ursa_inference_batches", "Model runs (micro-batches).", registry=self.registry
        )
        self.images = Counter(
            "ursa_inference_images", "Images run through the model.", registry=self.registry
        )
        self.rejected_busy = Counter(
            "ursa_admission_rejected",
            "Prediction requests answered 503 because max_queue requests were in already.",
            registry=self.registry,
        )

    def observe(self, path: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request; ``path``, ``method`` and ``status`` are raw (each is
        mapped to its bounded label here)."""
        path = path_label(path)
        self.requests.labels(path, method_label(method), status_label(status)).inc()
        self.latency.labels(path).observe(seconds)

    def rejected(self) -> None:
        """Count one request answered 503 because ``max_queue`` requests were in already."""
        self.rejected_busy.inc()

    def batch(self, size: int) -> None:
        self.batches.inc()
        self.images.inc(size)

    def render(self) -> str:
        """The Prometheus text exposition (version 0.0.4)."""
        return generate_latest(self.registry).decode()


class MetricsMiddleware:
    """Times every HTTP request and counts it by path and final status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status: int | None = None
        client_closed = False

        async def watch_receive() -> Message:
            nonlocal client_closed
            message = await receive()
            client_closed = client_closed or message["type"] == "http.disconnect"
            return message

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, watch_receive, record_status)
        finally:
            self.metrics.in_flight.dec()
            if status is None:  # no answer: the client left first, or the app failed
                status = CLIENT_CLOSED if client_closed else 500
            self.metrics.observe(
                scope.get("path", ""), scope.get("method", ""), status, time.perf_counter() - start
            )
