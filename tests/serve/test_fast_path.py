"""The raw-body fast path of ``POST /predict`` and the hand-offs a request takes.

A raw image body is answered by ``RawPredictMiddleware`` (no FastAPI routing), a
multipart form by the route: both must give the same answers and the same refusals,
with every limit of docs/security.md in force.
"""

from __future__ import annotations

import asyncio
import http.client
import inspect
import io
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from PIL import Image

from tests.serve.client import multipart, request, running_server
from tests.serve.test_app import _bomb_png
from ursa.serve import Predictor
from ursa.serve.batching import MicroBatcher
from ursa.serve.bench import ServerProcess
from ursa.serve.metrics import Metrics
from ursa.serve.routes import router

LIMIT = 200_000


@pytest.fixture(scope="module")
def server(tiny_served: tuple[Path, Path]) -> Iterator[ServerProcess]:
    with running_server(tiny_served[0], max_body_bytes=str(LIMIT)) as process:
        yield process


def _images(folder: Path) -> list[tuple[str, bytes]]:
    """(name, bytes) of a PNG per class and a JPEG made from one of them."""
    pngs = [sorted((folder / name).glob("*.png"))[0] for name in ("blue", "green", "red")]
    buffer = io.BytesIO()
    Image.open(pngs[0]).convert("RGB").resize((300, 200)).save(buffer, format="JPEG")
    return [(p.name, p.read_bytes()) for p in pngs] + [("wide.jpg", buffer.getvalue())]


def _both(port: int, name: str, data: bytes, content_type: str) -> tuple[Any, Any]:
    """The (status, answer) of ``data`` sent raw and as a multipart file."""
    raw = request(port, "POST", "/predict", data, content_type)
    form = request(port, "POST", "/predict", *multipart([("file", name, data)]))
    return raw, form


def _raw_answer(port: int, data: bytes, content_type: str) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body bytes) of a raw-body POST /predict."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("POST", "/predict", data, {"Content-Type": content_type})
    response = connection.getresponse()
    answer = response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    connection.close()
    return answer


def test_raw_body_and_multipart_give_the_same_predictions(
    server: ServerProcess, tiny_served: tuple[Path, Path]
) -> None:
    predictor = Predictor(tiny_served[0])
    for name, data in _images(tiny_served[1]):
        kind = "image/jpeg" if name.endswith(".jpg") else "image/png"
        (raw_status, raw), (form_status, form) = _both(server.port, name, data, kind)
        assert raw_status == form_status == 200, (raw, form)
        assert raw.pop("server_ms") > 0 and form.pop("server_ms") > 0
        assert raw == form  # every field, every class, the same floats
        expected = predictor.predict(data)
        assert raw["label"] == expected.label
        assert raw["probabilities"] == pytest.approx(expected.probabilities, abs=1e-6)
        # Untyped bytes take the fast path too.
        status, untyped = request(server.port, "POST", "/predict", data, "application/octet-stream")
        assert status == 200 and untyped["probabilities"] == raw["probabilities"]


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (b"x" * (LIMIT + 50_000), 413, "over the limit of 200,000 bytes"),
        (b"plain words", 400, "not an image"),
        (b"\xff\xd8\xff\xe0 not really a jpeg", 400, "corrupt"),
        (_bomb_png(), 413, "pixels"),
        (b"", 400, "empty body"),
    ],
)
def test_raw_body_is_refused_exactly_like_multipart(
    server: ServerProcess, data: bytes, status: int, words: str
) -> None:
    (raw_status, raw), (form_status, form) = _both(server.port, "f.png", data, "image/png")
    assert raw_status == form_status == status, (raw, form)
    assert words in raw["detail"]
    assert raw["detail"] == form["detail"]
    if status == 400:  # the refusal's bytes and framing, as the route's
        code, headers, body = _raw_answer(server.port, data, "image/png")
        assert code == 400 and headers["content-type"] == "application/json"
        assert body == json.dumps(raw, ensure_ascii=False, separators=(",", ":")).encode()
        assert headers["x-content-type-options"] == "nosniff"


def _slow_answer(port: int, head: bytes, body: bytes) -> tuple[int, str]:
    """Send the headers and half the body, then wait for the server's answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(head + f"Content-Length: {len(body)}\r\n\r\n".encode())
        connection.sendall(body[: len(body) // 2])
        start = time.monotonic()
        chunks = []
        while chunk := connection.recv(65536):  # the refusal closes the connection
            chunks.append(chunk)
        assert time.monotonic() - start < 20
    answer = b"".join(chunks).decode("latin-1")
    return int(answer.split(" ", 2)[1]), answer.split("\r\n\r\n", 1)[1]


def test_a_slow_raw_body_gets_408_like_multipart(tiny_served: tuple[Path, Path]) -> None:
    data = _images(tiny_served[1])[0][1]
    start = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    form, kind = multipart([("file", "a.png", data)])
    with running_server(tiny_served[0], body_timeout="1") as server:
        raw = _slow_answer(server.port, start + b"Content-Type: image/png\r\n", data)
        slow_form = _slow_answer(server.port, start + f"Content-Type: {kind}\r\n".encode(), form)
    assert raw[0] == slow_form[0] == 408
    assert "URSA_BODY_TIMEOUT" in raw[1] and raw[1] == slow_form[1]


def test_an_idle_model_runs_the_image_in_the_decoding_thread(
    tiny_served: tuple[Path, Path],
) -> None:
    predictor = Predictor(tiny_served[0], threads=1)
    arrays = [predictor.prepare(data) for _, data in _images(tiny_served[1])[:3]]
    expected = predictor.predict_arrays(np.stack(arrays))
    metrics = Metrics()

    async def scenario() -> list[Any]:
        batcher = MicroBatcher(predictor, max_batch=8, metrics=metrics)
        batcher.start()
        try:
            # Nothing queued, the model free: predicted at once, in the calling thread.
            now = await asyncio.to_thread(batcher.run_now, arrays[0])
            # An image queued (and not yet run): a new one must queue behind it.
            queued = asyncio.ensure_future(batcher.predict(arrays[1]))
            await asyncio.sleep(0)
            behind = batcher.run_now(arrays[2])
            return [now, behind, await queued]
        finally:
            await batcher.stop()

    now, behind, queued = asyncio.run(scenario())
    assert now is not None and now.probabilities == pytest.approx(expected[0].probabilities)
    assert behind is None
    assert queued.probabilities == pytest.approx(expected[1].probabilities)
    runs = metrics.registry.get_sample_value("ursa_inference_batches_total")
    images = metrics.registry.get_sample_value("ursa_inference_images_total")
    assert (runs, images) == (2, 2)


def _calls(dependant: Dependant) -> Iterator[Any]:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _calls(dependency)


def test_no_route_hands_its_request_to_a_worker_thread() -> None:
    """FastAPI runs a plain ``def`` endpoint or dependency in a thread pool: a hand-off
    to another thread and back on every request."""
    routes = [route for route in router.routes if isinstance(route, APIRoute)]
    assert routes
    for route in routes:
        for call in [route.endpoint, *_calls(route.dependant)]:
            assert inspect.iscoroutinefunction(call), f"{route.path}: {call.__name__} is sync"


def test_the_api_page_documents_the_raw_body_as_the_fast_path(server: ServerProcess) -> None:
    status, spec = request(server.port, "GET", "/openapi.json")
    assert status == 200
    operation = spec["paths"]["/predict"]["post"]
    content = operation["requestBody"]["content"]
    assert {"image/*", "application/octet-stream", "multipart/form-data"} <= set(content)
    assert "fast path" in operation["description"]


def test_a_raw_body_is_answered_without_the_route(tiny_served: tuple[Path, Path]) -> None:
    """With the route's service dependency broken, a raw image body is still answered (by
    RawPredictMiddleware) and a multipart form is not: the fast path really runs."""
    from fastapi.testclient import TestClient

    from ursa.serve.app import create_app
    from ursa.serve.routes import get_service
    from ursa.serve.settings import ServeSettings

    def broken() -> None:
        raise RuntimeError("the route ran")

    app = create_app(ServeSettings(bundle=tiny_served[0]))
    app.dependency_overrides[get_service] = broken
    name, data = _images(tiny_served[1])[0]
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as client:
        raw = client.post("/predict", content=data, headers={"Content-Type": "image/png"})
        form = client.post("/predict", files={"file": (name, data, "image/png")})
    assert raw.status_code == 200, raw.text
    assert raw.json()["label"] in ("blue", "green", "red")
    assert form.status_code == 500
