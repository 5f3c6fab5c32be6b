"""Micro-batching: concurrent requests share one model run, and admission is bounded.

One inference thread runs the model; while it is busy, newly decoded images
wait in a list, and the next run takes up to ``max_batch`` of them at once.
Nothing ever waits for a batch to fill, so a lone request pays no extra
latency; under load, fewer and larger model runs raise throughput.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ursa.core.prediction import Prediction
from ursa.core.runtime import Predictor
from ursa.serve.metrics import Metrics


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
                try:
                    predictions = await loop.run_in_executor(
                        self._executor, self.predictor.predict_arrays, inputs
                    )
                except Exception as error:  # handed to the waiting requests, never lost
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                self.metrics.batch(len(batch))
                for (_, future), prediction in zip(batch, predictions, strict=True):
                    if not future.done():
                        future.set_result(prediction)
