"""Dynamic batching across requests: one scheduler per model gathers the texts of concurrent requests into
one model call, up to a maximum batch or a maximum wait, and answers each request with its own slice.

- The queue is bounded: a request that would overflow it is refused at once (Overloaded → 503).
- Each request has a deadline (DeadlineExceeded → 504); a request that leaves before its batch starts,
  on its deadline or because the client went away, is dropped from the queue, not computed.
- A batch that raises fails only the requests in it; the scheduler goes on with the next.
- Model calls run in worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread

from app.engine.errors import DeadlineExceeded, Overloaded
from app.metrics import Metrics

log = logging.getLogger("charserve.batching")


@dataclass
class _Request:
    items: Sequence[Any]
    future: asyncio.Future[list[Any]]
    enqueued: float = field(default_factory=time.perf_counter)


class DynamicBatcher:
    """Runs `fn(items) -> results` (one result per item, in order) on batches gathered from many requests."""

    def __init__(
        self,
        name: str,
        fn: Callable[[list[Any]], list[Any]],
        *,
        max_batch: int,
        max_wait_s: float,
        max_queue: int,
        deadline_s: float,
        limiter: anyio.CapacityLimiter,
        metrics: Metrics | None = None,
    ) -> None:
        self.name, self.fn = name, fn
        self.max_batch, self.max_wait_s, self.max_queue, self.deadline_s = max_batch, max_wait_s, max_queue, deadline_s
        self.limiter = limiter
        self.metrics = metrics or Metrics()
        self.queue: asyncio.Queue[_Request] = asyncio.Queue()
        self.queued_items = 0
        self.running: set[asyncio.Task[None]] = set()
        self.loop_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.loop_task = asyncio.create_task(self._loop(), name=f"batcher-{self.name}")

    async def stop(self) -> None:
        """Finish the batches already running; the server has stopped taking requests by now."""
        if self.loop_task:
            self.loop_task.cancel()
            await asyncio.gather(self.loop_task, return_exceptions=True)
        if self.running:
            await asyncio.gather(*self.running, return_exceptions=True)

    async def submit(self, items: Sequence[Any]) -> list[Any]:
        if self.loop_task is None:
            raise RuntimeError(f"the {self.name} batcher is not started")
        if self.queued_items + len(items) > self.max_queue:
            self.metrics.rejected.labels(self.name).inc()
            raise Overloaded(f"{self.queued_items} {self.name} items already queued (limit {self.max_queue})")
        request = _Request(items, asyncio.get_running_loop().create_future())
        self.queued_items += len(items)
        self.metrics.queue_depth.labels(self.name).set(self.queued_items)
        self.queue.put_nowait(request)
        try:
            return await asyncio.wait_for(asyncio.shield(request.future), self.deadline_s)
        except TimeoutError as exc:
            raise DeadlineExceeded(f"no answer within {self.deadline_s:g} s") from exc
        finally:
            # On a deadline or a cancelled request (the client went away) the batch loop skips this request
            # if it has not started yet; if it has, its answer is simply not read.
            if not request.future.done():
                request.future.cancel()

    async def _loop(self) -> None:
        while True:
            first = await self.queue.get()
            # Wait for a free worker before forming the batch: requests that arrive meanwhile join it, and
            # one that leaves meanwhile (deadline, disconnect) is dropped rather than computed.
            token = object()  # the limiter's borrower: acquired here, released by the batch's own task
            await self.limiter.acquire_on_behalf_of(token)  # at most `workers` batches at once, all models together
            try:
                batch = await self._gather(first)
            except BaseException:
                self.limiter.release_on_behalf_of(token)
                raise
            if not batch:
                self.limiter.release_on_behalf_of(token)
                continue
            task = asyncio.create_task(self._run(batch, token))
            self.running.add(task)
            task.add_done_callback(self.running.discard)

    async def _gather(self, first: _Request) -> list[_Request]:
        """`first` and whatever joins it until the batch is full or `first` has waited max_wait_s."""
        batch: list[_Request] = []
        rows = 0
        deadline = first.enqueued + self.max_wait_s
        request: _Request | None = first
        while request is not None:
            self.queued_items -= len(request.items)
            if not request.future.cancelled():
                batch.append(request)
                rows += len(request.items)
            if rows >= self.max_batch:
                break
            request = await self._next(deadline)
        self.metrics.queue_depth.labels(self.name).set(self.queued_items)
        return batch

    async def _next(self, deadline: float) -> _Request | None:
        try:
            return self.queue.get_nowait()
        except asyncio.QueueEmpty:
            pass
        wait = deadline - time.perf_counter()
        if wait <= 0:
            return None
        try:
            return await asyncio.wait_for(self.queue.get(), wait)
        except TimeoutError:
            return None

    def _call(self, items: list[Any]) -> list[Any]:
        """In a worker thread: the model call, timed there (time spent waiting for a thread is not the model's)."""
        started = time.perf_counter()
        try:
            return self.fn(items)
        finally:
            self.metrics.call_seconds.labels(self.name).observe(time.perf_counter() - started)

    async def _run(self, batch: list[_Request], token: object) -> None:
        try:
            items = [item for request in batch for item in request.items]
            try:
                results = await anyio.to_thread.run_sync(self._call, items)
                self.metrics.batch_requests.labels(self.name).observe(len(batch))
            except Exception as exc:  # the batch's own requests fail; the scheduler goes on
                log.exception("%s batch of %d items failed", self.name, len(items))
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(exc)
                return
            start = 0
            for request in batch:
                end = start + len(request.items)
                if not request.future.done():
                    request.future.set_result(results[start:end])
                start = end
        finally:
            self.limiter.release_on_behalf_of(token)
