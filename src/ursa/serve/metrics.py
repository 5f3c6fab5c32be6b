"""Request metrics in the Prometheus text format, written by hand (no client library).

Counted by a small ASGI middleware: requests by path and status, a latency
histogram by path, requests in flight, and the micro-batches the model ran.

Every label takes a bounded set of values, so that scanners cannot grow the table:
a path, method or status that is not known is counted as ``other``. A client that
hangs up before its answer is status ``499`` (nginx's "client closed request"), not 500.
"""

from __future__ import annotations

import http
import threading
import time
from collections import defaultdict

from ursa.core.asgi import ASGIApp, Message, Receive, Scope, Send

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
    """Counters, one histogram and a gauge; safe to update from several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self.latency_counts: dict[str, list[int]] = {}
        self.latency_sum: dict[str, float] = defaultdict(float)
        self.in_flight = 0
        self.batches = 0
        self.batched_images = 0
        self.rejected_busy = 0

    def observe(self, path: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request; ``path``, ``method`` and ``status`` are raw (each is
        mapped to its bounded label here)."""
        path = path_label(path)
        with self._lock:
            self.requests[(path, method_label(method), status_label(status))] += 1
            counts = self.latency_counts.setdefault(path, [0] * (len(BUCKETS) + 1))
            index = next((i for i, bound in enumerate(BUCKETS) if seconds <= bound), len(BUCKETS))
            counts[index] += 1
            self.latency_sum[path] += seconds

    def rejected(self) -> None:
        """Count one request answered 503 because ``max_queue`` requests were in already."""
        with self._lock:
            self.rejected_busy += 1

    def batch(self, size: int) -> None:
        with self._lock:
            self.batches += 1
            self.batched_images += size

    def render(self) -> str:
        """The Prometheus text exposition (version 0.0.4)."""
        with self._lock:
            lines = [
                "# HELP ursa_http_requests_total HTTP requests answered, by path, method, status "
                "(499: the client closed the connection first; unknown values: other).",
                "# TYPE ursa_http_requests_total counter",
            ]
            for (path, method, status), count in sorted(self.requests.items()):
                labels = f'path="{path}",method="{method}",status="{status}"'
                lines.append(f"ursa_http_requests_total{{{labels}}} {count}")
            lines += [
                "# HELP ursa_http_request_duration_seconds Time from request start to response.",
                "# TYPE ursa_http_request_duration_seconds histogram",
            ]
            for path, counts in sorted(self.latency_counts.items()):
                running = 0
                for bound, count in zip((*BUCKETS, float("inf")), counts, strict=True):
                    running += count
                    le = "+Inf" if bound == float("inf") else f"{bound:g}"
                    lines.append(
                        f'ursa_http_request_duration_seconds_bucket{{path="{path}",le="{le}"}} '
                        f"{running}"
                    )
                lines.append(
                    f'ursa_http_request_duration_seconds_sum{{path="{path}"}} '
                    f"{self.latency_sum[path]:.6f}"
                )
                lines.append(f'ursa_http_request_duration_seconds_count{{path="{path}"}} {running}')
            lines += [
                "# HELP ursa_http_requests_in_flight HTTP requests being answered now.",
                "# TYPE ursa_http_requests_in_flight gauge",
                f"ursa_http_requests_in_flight {self.in_flight}",
                "# HELP ursa_inference_batches_total Model runs (micro-batches).",
                "# TYPE ursa_inference_batches_total counter",
                f"ursa_inference_batches_total {self.batches}",
                "# HELP ursa_inference_images_total Images run through the model.",
                "# TYPE ursa_inference_images_total counter",
                f"ursa_inference_images_total {self.batched_images}",
                "# HELP ursa_admission_rejected_total Prediction requests answered 503 because "
                "max_queue requests were in already.",
                "# TYPE ursa_admission_rejected_total counter",
                f"ursa_admission_rejected_total {self.rejected_busy}",
            ]
        return "\n".join(lines) + "\n"


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

        with self.metrics._lock:
            self.metrics.in_flight += 1
        try:
            await self.app(scope, watch_receive, record_status)
        finally:
            with self.metrics._lock:
                self.metrics.in_flight -= 1
            if status is None:  # no answer: the client left first, or the app failed
                status = CLIENT_CLOSED if client_closed else 500
            self.metrics.observe(
                scope.get("path", ""), scope.get("method", ""), status, time.perf_counter() - start
            )
