"""Micro-batching: concurrent requests to one model are gathered (up to `max_batch` rows) and run as one batch on
the model's worker thread. Requests that arrived while the previous batch ran are always taken; the batch then waits
up to `max_wait_ms` for more only while the server is under load (the previous batch held several requests), so an
idle server answers a lone request at once. A request whose rows cannot be read fails alone: the batch is re-run
request by request to find it."""
from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import Any, Callable

from ..errors import PolymodalError
from .values import Rejected

Predict = Callable[[list[dict]], list[dict]]


class MicroBatcher:
    def __init__(self, predict: Predict, executor: Executor, max_batch: int = 32, max_wait_ms: float = 5.0,
                 max_queue: int = 1024, on_batch: Callable[[int], None] | None = None) -> None:
        if max_batch < 1:
            raise PolymodalError(f"max_batch must be at least 1, got {max_batch}")
        self.predict, self.executor = predict, executor
        self.max_batch, self.max_wait, self.max_queue = max_batch, max(0.0, max_wait_ms) / 1000.0, max_queue
        self.on_batch = on_batch
        self.pending = 0  # rows queued or running
        self._busy = False  # the last batch gathered more than one request
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None

    async def submit(self, rows: list[dict]) -> list[dict]:
        """Predictions for `rows` (in order). Raises Rejected(429) when the queue is full."""
        if self.pending + len(rows) > self.max_queue:
            raise Rejected(f"the server is busy ({self.pending} rows waiting); retry later", status=429)
        loop = asyncio.get_running_loop()
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._run())
        future: asyncio.Future = loop.create_future()
        self.pending += len(rows)
        self._queue.put_nowait((rows, future))
        return await future

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            batch, n = [first], len(first[0])
            deadline = loop.time() + (self.max_wait if self._busy else 0.0)
            while n < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    timeout = deadline - loop.time()
                    if timeout <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self._queue.get(), timeout)
                    except asyncio.TimeoutError:
                        break
                batch.append(item)
                n += len(item[0])
            self._busy = len(batch) > 1
            try:
                await self._serve(batch)
            finally:
                self.pending -= n

    async def _serve(self, batch: list[tuple[list[dict], asyncio.Future]]) -> None:
        loop = asyncio.get_running_loop()
        rows = [r for req, _ in batch for r in req]
        if self.on_batch is not None:
            self.on_batch(len(rows))
        try:
            preds = await loop.run_in_executor(self.executor, self.predict, rows)
        except PolymodalError as e:
            if len(batch) == 1:
                _fail(batch[0][1], e)
                return
            for req, future in batch:  # find the request at fault; the others still get answers
                try:
                    _answer(future, await loop.run_in_executor(self.executor, self.predict, req))
                except Exception as err:  # noqa: BLE001 - handed to the request's handler
                    _fail(future, err)
            return
        except Exception as e:  # noqa: BLE001 - every waiting request learns of it
            for _, future in batch:
                _fail(future, e)
            return
        start = 0
        for req, future in batch:
            _answer(future, preds[start:start + len(req)])
            start += len(req)


def _answer(future: asyncio.Future, value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future, error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
