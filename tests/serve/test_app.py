"""The server over real HTTP: ``ursa serve`` in a child process on 127.0.0.1."""

from __future__ import annotations

import asyncio
import io
import socket
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.serve.client import multipart, request, running_server, samples
from ursa.serve import Predictor
from ursa.serve.batching import MicroBatcher
from ursa.serve.bench import ServerProcess
from ursa.serve.metrics import Metrics


@pytest.fixture(scope="module")
def server(tiny_served: tuple[Path, Path]) -> Iterator[ServerProcess]:
    with running_server(tiny_served[0], max_body_bytes="200000") as process:
        yield process


def _png(path: Path) -> bytes:
    return path.read_bytes()


def _bomb_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A 1×1 PNG whose header claims ``width`` × ``height`` (CRC fixed up)."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17]))
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


def test_predict_raw_and_multipart_agree_with_the_predictor(
    server: ServerProcess, tiny_served: tuple[Path, Path]
) -> None:
    image = sorted((tiny_served[1] / "red").glob("*.png"))[0]
    expected = Predictor(tiny_served[0]).predict(image)
    status, raw = request(server.port, "POST", "/predict", _png(image), "image/png")
    assert status == 200, raw
    assert raw["label"] == expected.label
    assert raw["probability"] == pytest.approx(expected.probability, abs=1e-5)
    assert [t["label"] for t in raw["top"]] == [label for label, _ in expected.top(5)]
    assert set(raw["probabilities"]) == {"blue", "green", "red"} and raw["server_ms"] > 0
    body, kind = multipart([("file", image.name, _png(image))])
    status, form = request(server.port, "POST", "/predict", body, kind)
    assert status == 200 and form["label"] == expected.label


def test_batch_answers_each_file(server: ServerProcess, tiny_served: tuple[Path, Path]) -> None:
    images = sorted(tiny_served[1].rglob("*.png"))[:3]
    files = [("files", p.name, _png(p)) for p in images] + [("files", "bad.jpg", b"nope")]
    status, answer = request(server.port, "POST", "/predict/batch", *multipart(files))
    assert status == 200
    results = answer["results"]
    assert [r["filename"] for r in results] == [p.name for p in images] + ["bad.jpg"]
    assert all(r["prediction"] for r in results[:3])
    assert results[3]["prediction"] is None and "not an image" in results[3]["error"]
    status, answer = request(server.port, "POST", "/predict/batch", b"x", "image/png")
    assert status == 415


@pytest.mark.parametrize(
    ("body", "content_type", "status", "words"),
    [
        (b"", "image/jpeg", 400, "empty body"),
        (b"\xff\xd8\xff\xe0 not really a jpeg", "image/jpeg", 400, "corrupt"),
        (b"GIF89a? no", "image/gif", 400, "image"),
        (b"plain words", "image/png", 400, "not an image"),
        (b"hello", "text/plain", 415, "is not an image"),
        (b'{"image": 1}', "application/json", 415, "is not an image"),
        (b"x" * 300_000, "image/jpeg", 413, "over the limit"),
        (_bomb_png(), "image/png", 413, "pixels"),
        (b"--b\r\nnot a form", "multipart/form-data; boundary=b", 400, ""),
    ],
)
def test_bad_bodies_get_a_clear_4xx(
    server: ServerProcess, body: bytes, content_type: str, status: int, words: str
) -> None:
    got, answer = request(server.port, "POST", "/predict", body, content_type)
    assert got == status, answer
    assert words in answer["detail"]


def test_truncated_jpeg_is_400(server: ServerProcess) -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(buffer, format="JPEG")
    status, answer = request(server.port, "POST", "/predict", buffer.getvalue()[:200], "image/jpeg")
    assert status == 400 and "truncated" in answer["detail"]


def test_health_metadata_docs(server: ServerProcess) -> None:
    status, health = request(server.port, "GET", "/healthz")
    assert status == 200 and health["status"] == "ok"
    status, meta = request(server.port, "GET", "/metadata")
    assert status == 200
    assert meta["class_names"] == ["blue", "green", "red"] and meta["input_size"] == 32
    assert meta["provider"] == "cpu" and meta["execution_providers"] == ["CPUExecutionProvider"]
    assert meta["model"] == "model.onnx" and meta["model_id"] == health["model_id"]
    assert meta["max_batch"] == 1  # fp32 on the CPU: batches do not pay (see docs/benchmarks.md)
    assert {"ursa", "onnxruntime", "python"} <= set(meta["versions"])
    status, spec = request(server.port, "GET", "/openapi.json")
    assert status == 200 and {"/predict", "/predict/batch", "/metrics"} <= set(spec["paths"])
    for page, words in (("/", "Drop an image"), ("/live", "chart")):
        status, html = request(server.port, "GET", page)
        assert status == 200 and words in html


def test_metrics_count_requests_by_status(
    server: ServerProcess, tiny_served: tuple[Path, Path]
) -> None:
    image = _png(sorted(tiny_served[1].rglob("*.png"))[0])
    for _ in range(3):
        request(server.port, "POST", "/predict", image, "image/png")
    request(server.port, "POST", "/predict", b"junk", "image/png")
    status, text = request(server.port, "GET", "/metrics")
    assert status == 200
    values = samples(text)  # Prometheus's own parser reads every line
    predict = (("method", "POST"), ("path", "/predict"))
    assert values["ursa_http_requests_total", (*predict, ("status", "200"))] >= 3
    assert values["ursa_http_requests_total", (*predict, ("status", "400"))] >= 1
    count = values["ursa_http_request_duration_seconds_count", (("path", "/predict"),)]
    inf = values[
        "ursa_http_request_duration_seconds_bucket", (("le", "+Inf"), ("path", "/predict"))
    ]
    assert count == inf >= 4
    assert values["ursa_http_requests_in_flight", ()] == 1  # this very request
    assert values["ursa_inference_images_total", ()] >= 3
    assert not any(name.endswith("_created") for name, _ in values)  # no doubled series


def test_full_queue_answers_503(tiny_served: tuple[Path, Path]) -> None:
    image = _png(sorted(tiny_served[1].rglob("*.png"))[0])
    with running_server(tiny_served[0], max_queue="1") as server:
        # A half-sent body does not hold the only slot: admission comes after the body.
        holder = socket.create_connection(("127.0.0.1", server.port))
        holder.sendall(
            b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
            + f"Content-Length: {len(image)}\r\n\r\n".encode()
            + image[: len(image) // 2]
        )
        try:
            status, _ = request(server.port, "POST", "/predict", image, "image/png")
            assert status == 200
            # Two images are more than the one slot: 503, with the setting to raise.
            body, kind = multipart([("files", "a.png", image), ("files", "b.png", image)])
            status, answer = request(server.port, "POST", "/predict/batch", body, kind)
            assert status == 503 and "URSA_MAX_QUEUE" in answer["detail"]
        finally:
            holder.sendall(image[len(image) // 2 :])
            assert holder.recv(65536).startswith(b"HTTP/1.1 200")
            holder.close()


def test_concurrent_images_share_one_model_run(tiny_served: tuple[Path, Path]) -> None:
    predictor = Predictor(tiny_served[0], threads=1)
    images = sorted(tiny_served[1].rglob("*.png"))[:8]
    arrays = [predictor.prepare(path) for path in images]
    metrics = Metrics()

    async def scenario() -> list[str]:
        batcher = MicroBatcher(predictor, max_batch=8, metrics=metrics)
        batcher.start()
        try:
            answers = await asyncio.gather(*(batcher.predict(a) for a in arrays))
        finally:
            await batcher.stop()
        return [a.label for a in answers]

    labels = asyncio.run(scenario())
    assert labels == [p.label for p in predictor.predict_batch(images)]
    runs = metrics.registry.get_sample_value("ursa_inference_batches_total")
    counted = metrics.registry.get_sample_value("ursa_inference_images_total")
    assert (runs, counted) == (1, 8)
