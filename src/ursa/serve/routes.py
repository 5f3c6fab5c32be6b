"""The HTTP API: predict (one image or a batch), health, metadata, metrics, the pages.

Every request body has arrived whole before a route runs (``ursa.serve.limits``), so the
admission slot a prediction takes is held for decoding and the model only, never while a
slow client sends its bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import platform
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from ursa.core.asgi import ASGIApp, Receive, Scope, Send, encoded_headers
from ursa.core.errors import ImageError
from ursa.core.prediction import Prediction
from ursa.core.runtime import Predictor
from ursa.core.version import __version__
from ursa.serve.batching import Admission, Busy, MicroBatcher
from ursa.serve.metrics import Metrics
from ursa.serve.settings import ServeSettings

log = logging.getLogger(__name__)

#: Raw-body content types taken as image bytes (anything image/* is too).
RAW_TYPES = ("application/octet-stream", "")


@dataclass
class Service:
    """Everything a request needs; built once in the app's lifespan."""

    settings: ServeSettings
    predictor: Predictor
    batcher: MicroBatcher
    admission: Admission
    metrics: Metrics
    decoders: ThreadPoolExecutor
    model_id: str

    @classmethod
    def create(cls, settings: ServeSettings, metrics: Metrics) -> Service:
        threads = settings.threads
        predictor = Predictor(
            settings.bundle,
            int8=settings.int8,
            provider=settings.provider,
            threads=threads or _threads_per_worker(settings.workers),
            max_pixels=settings.max_pixels,
            max_decoded_bytes=settings.max_decoded_bytes,
            max_decoding_bytes=settings.max_decoding_bytes,
            spin=False,  # spinning threads would starve the decoders and the event loop
        )
        digest = hashlib.sha256(predictor.bundle.read(predictor.member)).hexdigest()
        return cls(
            settings=settings,
            predictor=predictor,
            batcher=MicroBatcher(predictor, settings.effective_max_batch(), metrics),
            admission=Admission(settings.max_queue),
            metrics=metrics,
            decoders=ThreadPoolExecutor(
                max_workers=predictor.threads, thread_name_prefix="ursa-decode"
            ),
            model_id=f"sha256:{digest[:16]}",
        )


def _threads_per_worker(workers: int) -> int:
    from ursa.core.runtime import cpu_count

    return max(1, cpu_count() // workers)


async def get_service(request: Request) -> Service:
    # async: FastAPI runs a plain def dependency in a worker thread, a thread hop per request
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


class ClassScore(BaseModel):
    label: str
    probability: float


class PredictionOut(BaseModel):
    label: str
    probability: float
    top: list[ClassScore]
    probabilities: dict[str, float]
    """Every class, in the model's order."""
    server_ms: float
    """Time the server spent on this image (decode, preprocess, queue, model)."""


class BatchItem(BaseModel):
    filename: str | None
    prediction: PredictionOut | None = None
    error: str | None = None


class BatchOut(BaseModel):
    results: list[BatchItem]


class Health(BaseModel):
    status: str
    model_id: str


class Metadata(BaseModel):
    class_names: list[str]
    input_size: int
    resize: str
    interpolation: str
    mean: list[float]
    std: list[float]
    input: dict[str, Any]
    """What the model reads (kind: image, audio or bytes) and its settings."""
    arch: str
    model_id: str
    model: str
    int8: bool
    provider: str
    execution_providers: list[str]
    threads: int
    max_batch: int
    max_queue: int
    max_body_bytes: int
    max_batch_body_bytes: int
    max_batch_images: int
    max_pixels: int
    max_decoded_bytes: int
    max_decoding_bytes: int
    body_timeout: float
    versions: dict[str, str]


_IMAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            },
        },
    }
}
_BATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}
                    },
                }
            }
        },
    }
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "not a readable image, or an empty or malformed body"},
    408: {"description": "the body did not arrive within body_timeout seconds"},
    413: {"description": "body or image over a size limit (bytes, pixels, decoded bytes)"},
    415: {"description": "a content type that is not an image or multipart form"},
    503: {"description": "the server holds max_queue requests already; retry shortly"},
}

router = APIRouter()


def _to_out(prediction: Prediction, top_k: int, seconds: float) -> PredictionOut:
    return PredictionOut(
        label=prediction.label,
        probability=prediction.probability,
        top=[ClassScore(label=label, probability=p) for label, p in prediction.top(top_k)],
        probabilities=prediction.probabilities,
        server_ms=round(seconds * 1000.0, 3),
    )


#: How an image error names a limit, and the setting that raises it on the server.
_LIMIT_SETTINGS = {
    "raise max_pixels": "raise URSA_MAX_PIXELS",
    "raise max_decoded_bytes": "raise URSA_MAX_DECODED_BYTES",
}


def _bad_image(error: ImageError) -> HTTPException:
    status = 413 if "limit" in error.reason else 400
    detail = error.reason
    for words, setting in _LIMIT_SETTINGS.items():
        detail = detail.replace(words, setting)
    return HTTPException(status_code=status, detail=detail)


def _decode_then_run(
    service: Service, data: bytes
) -> tuple[np.ndarray, Prediction | None, Exception | None]:
    """In a decoder thread: the model's input, and its prediction when the model was free
    to run it at once (:meth:`MicroBatcher.run_now`), or the model's error (a decode error
    raises: it is the input's fault, a model error is not)."""
    array = service.predictor.prepare(data)
    try:
        return array, service.batcher.run_now(array), None
    except Exception as error:  # raised in the request, as a queued run's error is
        return array, None, error


async def _predict_one(service: Service, data: bytes) -> PredictionOut:
    """Decode, preprocess (and, when the model is free, predict) in a decoder thread, else
    queue for the next model run; bad input becomes 400/413."""
    start = time.perf_counter()
    if not data:
        raise HTTPException(status_code=400, detail="empty body: send the image bytes")
    loop = asyncio.get_running_loop()
    try:
        array, prediction, failed = await loop.run_in_executor(
            service.decoders, _decode_then_run, service, data
        )
    except ImageError as error:
        raise _bad_image(error) from None
    except Exception as error:  # a decoder bug on hostile input is still the input's fault
        log.warning("could not decode an uploaded image: %r", error)
        raise HTTPException(status_code=400, detail="the body is not a readable image") from None
    if failed is not None:
        raise failed
    if prediction is None:
        prediction = await service.batcher.predict(array)
    return _to_out(prediction, service.settings.top_k, time.perf_counter() - start)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _takes_raw(media: str, kind: str) -> bool:
    """Raw-body content types a model takes: images (and untyped bytes) always, audio/*
    for an audio model, anything for a bytes model (every file is its input)."""
    if media.startswith("image/") or media in RAW_TYPES:
        return True
    return kind == "bytes" or (kind == "audio" and media.startswith("audio/"))


def _busy(service: Service) -> HTTPException:
    service.metrics.rejected()
    return HTTPException(
        status_code=503,
        detail="the server is at its request limit (URSA_MAX_QUEUE); retry shortly",
        headers={"Retry-After": "1"},
    )


async def _files(request: Request, max_files: int) -> list[UploadFile]:
    form = await request.form(max_files=max_files, max_fields=16)
    files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
    if not files:
        raise HTTPException(status_code=400, detail="the multipart form holds no file")
    return files


class RawPredictMiddleware:
    """``POST /predict`` with the image as the body (no multipart form), answered here,
    without FastAPI's routing, dependency and response-model layers: the same answer as
    the route below (which still takes multipart forms and documents both), with less
    work on the event loop per request (docs/benchmarks.md).

    It sits inside every guard of ``ursa.serve.app`` (metrics, Host check, body limits and
    timeout), so the body is whole and within its limit when it gets here; admission, the
    decoding limits and every error answer are those of the route.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        service = _raw_predict_service(scope)
        if service is None:
            await self.app(scope, receive, send)
            return
        data = await _read_body(receive)
        try:
            with service.admission.slot():
                out = await _predict_one(service, data)
        except Busy:
            error = _busy(service)
        except HTTPException as refused:
            error = refused
        else:
            await _send_json(send, 200, out.model_dump_json().encode())
            return
        detail = {"detail": error.detail}  # written as Starlette writes the route's refusals
        body = json.dumps(detail, ensure_ascii=False, separators=(",", ":")).encode()
        await _send_json(send, error.status_code, body, error.headers)


def _raw_predict_service(scope: Scope) -> Service | None:
    """The service when ``scope`` is a ``POST /predict`` whose body is a file the model
    takes (not a multipart form, not a type the route refuses), else None."""
    if scope["type"] != "http" or scope["path"] != "/predict" or scope["method"] != "POST":
        return None
    service: Service | None = getattr(scope["app"].state, "service", None)
    media = _scope_media_type(scope)
    if service is None or media == "multipart/form-data":
        return None
    return service if _takes_raw(media, service.predictor.config.preprocess.input.kind) else None


def _scope_media_type(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return str(value.decode("latin-1").split(";")[0].strip().lower())
    return ""


async def _read_body(receive: Receive) -> bytes:
    """The request body (whole already: ``BodyLimitMiddleware`` replays it)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _send_json(
    send: Send, status: int, body: bytes, headers: Mapping[str, str] | None = None
) -> None:
    head = [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": head + encoded_headers(headers or {}),
        }
    )
    await send({"type": "http.response.body", "body": body})


@router.post(
    "/predict",
    response_model=PredictionOut,
    responses=_ERRORS,
    openapi_extra=_IMAGE_BODY,
    summary="Classify one image (raw image body or multipart field)",
    description="The image bytes as the whole body (Content-Type image/jpeg, image/png, ... "
    "or application/octet-stream) is the fast path: no form to parse, less work per request. "
    "A multipart form with one file field gives the same answer.",
)
async def predict(request: Request, service: ServiceDep) -> PredictionOut:
    media = _media_type(request)
    if media == "multipart/form-data":
        data = await (await _files(request, max_files=1))[0].read()
    elif _takes_raw(media, service.predictor.config.preprocess.input.kind):
        data = await request.body()
    else:
        raise HTTPException(
            status_code=415,
            detail=f"content type {media!r} is not an image: send image bytes "
            f"(image/jpeg, image/png, ...; audio/wav for a sound model) or a "
            f"multipart form with a file",
        )
    try:
        with service.admission.slot():
            return await _predict_one(service, data)
    except Busy:
        raise _busy(service) from None


@router.post(
    "/predict/batch",
    response_model=BatchOut,
    responses=_ERRORS,
    openapi_extra=_BATCH_BODY,
    summary="Classify several images from one multipart form; bad files get an error each",
)
async def predict_batch(request: Request, service: ServiceDep) -> BatchOut:
    if _media_type(request) != "multipart/form-data":
        raise HTTPException(
            status_code=415, detail="send the images as a multipart/form-data form of files"
        )

    async def one(upload: UploadFile) -> BatchItem:
        try:
            out = await _predict_one(service, await upload.read())
        except HTTPException as error:
            return BatchItem(filename=upload.filename, error=str(error.detail))
        return BatchItem(filename=upload.filename, prediction=out)

    try:
        # The form counts as a request while it is parsed, then as one per image.
        with service.admission.slot():
            files = await _files(request, max_files=service.settings.max_batch_images)
        with service.admission.slot(len(files)):
            results = await asyncio.gather(*(one(upload) for upload in files))
    except Busy:
        raise _busy(service) from None
    return BatchOut(results=list(results))


@router.get("/healthz", response_model=Health, summary="Liveness and readiness")
async def healthz(service: ServiceDep) -> Health:
    return Health(status="ok", model_id=service.model_id)


@router.get("/metadata", response_model=Metadata, summary="The model, its input and the runtime")
async def metadata(service: ServiceDep) -> Metadata:
    import fastapi
    import onnxruntime

    predictor, settings = service.predictor, service.settings
    config = predictor.config
    described = predictor.describe()
    return Metadata(
        class_names=config.class_names,
        input_size=config.preprocess.size,
        resize=config.preprocess.resize,
        interpolation=config.preprocess.interpolation,
        mean=list(config.preprocess.mean),
        std=list(config.preprocess.std),
        input=config.preprocess.input.to_dict(),
        arch=config.arch,
        model_id=service.model_id,
        model=described["model"],
        int8=predictor.int8,
        provider=predictor.provider,
        execution_providers=predictor.providers,
        threads=predictor.threads,
        max_batch=service.batcher.max_batch,
        max_queue=settings.max_queue,
        max_body_bytes=settings.max_body_bytes,
        max_batch_body_bytes=settings.max_batch_body_bytes,
        max_batch_images=settings.max_batch_images,
        max_pixels=settings.max_pixels,
        max_decoded_bytes=settings.max_decoded_bytes,
        max_decoding_bytes=settings.max_decoding_bytes,
        body_timeout=settings.body_timeout,
        versions={
            "ursa": __version__,
            "bundle_ursa": config.ursa_version,
            "onnxruntime": onnxruntime.__version__,
            "fastapi": fastapi.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    )


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
async def metrics(service: ServiceDep) -> PlainTextResponse:
    return PlainTextResponse(
        service.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )


def _page(name: str) -> HTMLResponse:
    return HTMLResponse(resources.files("ursa.serve").joinpath("static", name).read_text("utf-8"))


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def upload_page() -> HTMLResponse:
    return _page("index.html")


@router.get("/live", response_class=HTMLResponse, include_in_schema=False)
async def live_page() -> HTMLResponse:
    return _page("live.html")


@router.get("/docs", response_class=HTMLResponse, include_in_schema=False)
@router.get("/redoc", response_class=HTMLResponse, include_in_schema=False)
async def api_page() -> HTMLResponse:
    """The API reference, drawn from /openapi.json by this server's own script (no CDN)."""
    return _page("api.html")
