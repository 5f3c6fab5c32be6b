"""A small HTTP client for the server tests (stdlib only) and helpers to start servers."""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from ursa.serve.bench import ServerProcess

Labels = tuple[tuple[str, str], ...]


@contextmanager
def running_server(bundle: Path, *, int8: bool = False, **env: str) -> Iterator[ServerProcess]:
    """``ursa serve`` on 127.0.0.1 and a free port, with ``URSA_*`` settings from ``env``."""
    with ServerProcess(
        bundle, int8=int8, extra_env={f"URSA_{k.upper()}": v for k, v in env.items()}
    ) as server:
        yield server


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    content_type: str | None = None,
) -> tuple[int, Any]:
    """(status, parsed JSON or text)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": content_type} if content_type else {}
    connection.request(method, path, body, headers)
    response = connection.getresponse()
    raw = response.read()
    connection.close()
    kind = response.getheader("content-type", "")
    return response.status, json.loads(raw) if "json" in kind else raw.decode(errors="replace")


def multipart(files: Sequence[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body of (field, filename, bytes) parts, and its content type."""
    boundary = uuid.uuid4().hex
    parts = []
    for field, filename, data in files:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        )
        parts.append(head.encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def samples(text: str) -> dict[tuple[str, Labels], float]:
    """``{(sample name, sorted (label, value) pairs): value}`` of a ``/metrics`` answer, read
    with ``prometheus_client``'s parser of the text format (which fails on a malformed line)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
