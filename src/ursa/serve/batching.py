"""Micro-batching: concurrent requests share one model run, and admission is bounded.

One inference thread runs the model; while it is busy, newly decoded images
wait in a list, and the next run takes up to ``max_batch`` of them at once.
Nothing ever waits for a batch to fill, so a lone request pays no extra
latency; under load, fewer and larger model runs raise throughput.

When nothing waits and the model is free, the thread that decoded an image runs it
at once (:meth:`MicroBatcher.run_now`): one request at a time then costs one thread
hand-off and back instead of two. A lock keeps model runs from ever overlapping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ursa.core.prediction import Prediction
from ursa.core.runtime import Predictor
from ursa.serve.metrics import Metrics

log = logging.getLogger(__name__)


class Busy(Exception):
    """The server already holds ``max_queue`` prediction requests."""


class Admission:
    """Counts prediction requests in the server; refuses one more than ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    @contextlib.contextmanager
    def slot(self, images: int = 1) -> Iterator[None]:
        # Runs on the event loop thread only, so a plain counter is safe.
        if self.active + images > self.limit:
            raise Busy
        self.active += images
        try:
            yield
        finally:
            self.active -= images


class MicroBatcher:
    """Runs preprocessed images through ``predictor`` in greedy micro-batches."""

    def __init__(self, predictor: Predictor, max_batch: int, metrics: Metrics) -> None:
        self.predictor = predictor
        self.max_batch = max_batch
        self.metrics = metrics
        # One thread: model runs never overlap (each already uses every core).
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ursa-infer")
        self._model = threading.Lock()  # held for every model run, queued or immediate
        self._dispatched = 0  # batches handed to the inference thread, not yet back
        self._pending: list[tuple[np.ndarray, asyncio.Future[Prediction]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for _, future in self._pending:
            future.cancel()
        self._executor.shutdown(wait=True)

    def run_now(self, array: np.ndarray) -> Prediction | None:
        """Predict one (3, H, W) input in the calling thread (a decoder) when no image is
        queued, no batch is in flight and the model is free; else None: then queue it with
        :meth:`predict`. A failed run raises, once: the image is not queued again."""
        # Reads of the list and the counter written by the event loop: a stale answer only
        # sends an image to the queue, or makes it wait for the lock a moment.
        if self._pending or self._dispatched or not self._model.acquire(blocking=False):
            return None
        try:
            prediction = self.predictor.predict_arrays(array[None])[0]
        finally:
            self._model.release()
        self.metrics.batch(1)
        return prediction

    def _run_batch(self, inputs: np.ndarray) -> list[Prediction]:
        with self._model:
            return self.predictor.predict_arrays(inputs)

    async def predict(self, array: np.ndarray) -> Prediction:
        """Queue one (3, H, W) input and wait for its prediction."""
        future: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
        self._pending.append((array, future))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                batch = [(array, future) for array, future in batch if not future.cancelled()]
                if not batch:
                    continue
                inputs = np.stack([array for array, _ in batch])  # (N, 3, H, W)
                self._dispatched += 1
                try:
                    predictions = await loop.run_in_executor(
                        self._executor, self._run_batch, inputs
                    )
                except Exception as error:  # handed to the waiting requests, never lost
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                finally:
                    self._dispatched -= 1
                self.metrics.batch(len(batch))
                for (_, future), prediction in zip(batch, predictions, strict=True):
                    if not future.done():
                        future.set_result(prediction)
