"""Dynamic batching across requests: one scheduler per model gathers the items of concurrent requests into one
model call, up to a maximum batch or a maximum wait, and answers each request with its own slice.

- A request is taken in pieces of at most `max_batch` items, and each call takes its pieces from the waiting
  requests in turn, the least served first: a request with thousands of items (the speller's words of a full
  request) shares every call with the requests that came after it instead of holding a worker until it is done,
  and a new small request rides in the very next call.
- The queue is bounded: a request that would overflow it is refused at once (Overloaded → 503). It counts at
  most one piece of each request, since that is what a newcomer waits behind.
- Each request has a deadline (DeadlineExceeded → 504); a request that leaves, on its deadline or because the
  client went away, is dropped with its pieces not yet taken: its remaining work is never computed.
- Items are checked before they join (isolation.py); a call that raises is run again in halves by request, so
  that only the requests whose items make it fail get the error and every other request its answer.
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
from app.engine.isolation import bisect_failures, check_encodable
from app.engine.workers import Limiter
from app.metrics import Metrics

log = logging.getLogger("charserve.batching")


@dataclass(eq=False)
class _Request:
    items: Sequence[Any]
    future: asyncio.Future[list[Any]]
    results: list[Any]
    taken: int = 0  # items handed to model calls so far
    answered: int = 0
    enqueued: float = field(default_factory=time.perf_counter)

    @property
    def untaken(self) -> int:
        return len(self.items) - self.taken


@dataclass(frozen=True)
class _Piece:
    request: _Request
    start: int
    end: int

    @property
    def items(self) -> Sequence[Any]:
        return self.request.items[self.start : self.end]


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
        limiter: Limiter,
        metrics: Metrics | None = None,
        shared: bool = True,
    ) -> None:
        self.name, self.fn = name, fn
        self.max_batch, self.max_wait_s, self.max_queue, self.deadline_s = max_batch, max_wait_s, max_queue, deadline_s
        self.shared = shared  # False: each call holds one request's piece (batching off, a benchmark baseline)
        self.limiter = limiter
        self.metrics = metrics or Metrics()
        self.waiting: list[_Request] = []  # requests with items not yet taken, in order of arrival
        self.queued_items = 0  # the waiting requests' untaken items, at most one piece of each
        self.arrived = asyncio.Event()
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

    def _turn(self, request: _Request) -> int:
        """What `request` adds to the queue's count: its untaken items, at most one piece."""
        return min(request.untaken, self.max_batch)

    async def submit(self, items: Sequence[Any]) -> list[Any]:
        if self.loop_task is None:
            raise RuntimeError(f"the {self.name} batcher is not started")
        check_encodable(items)
        if not items:
            return []
        request = _Request(items, asyncio.get_running_loop().create_future(), [None] * len(items))
        if self.queued_items + self._turn(request) > self.max_queue:
            self.metrics.rejected.labels(self.name).inc()
            raise Overloaded(f"{self.queued_items} {self.name} items already queued (limit {self.max_queue})")
        self.waiting.append(request)
        self._count(self._turn(request))
        self.arrived.set()
        try:
            return await asyncio.wait_for(asyncio.shield(request.future), self.deadline_s)
        except TimeoutError as exc:
            raise DeadlineExceeded(f"no answer within {self.deadline_s:g} s") from exc
        finally:
            # On a deadline or a cancelled request (the client went away) its pieces not yet taken are dropped;
            # those already in a model call finish, their answers not read.
            if not request.future.done():
                request.future.cancel()
            self._drop(request)

    submit_many = submit  # FanOut's name for "one answer per item" (app/engine/fan_out.py)

    def _count(self, change: int) -> None:
        self.queued_items += change
        self.metrics.queue_depth.labels(self.name).set(self.queued_items)

    def _drop(self, request: _Request) -> None:
        if request in self.waiting:
            self.waiting.remove(request)
            self._count(-self._turn(request))

    async def _loop(self) -> None:
        while True:
            while not self.waiting:
                self.arrived.clear()
                await self.arrived.wait()
            # Wait for a free worker before forming the batch: requests that arrive meanwhile join it, and
            # one that leaves meanwhile (deadline, disconnect) is dropped rather than computed.
            token = object()  # the limiter's borrower: acquired here, released by the batch's own task
            await self.limiter.acquire_on_behalf_of(token)  # at most `workers` batches at once, all models together
            try:
                pieces = await self._gather()
            except BaseException:
                self.limiter.release_on_behalf_of(token)
                raise
            if not pieces:
                self.limiter.release_on_behalf_of(token)
                continue
            task = asyncio.create_task(self._run(pieces, token))
            self.running.add(task)
            task.add_done_callback(self.running.discard)

    async def _gather(self) -> list[_Piece]:
        """Wait until a batch's worth of items waits or the oldest request has waited max_wait_s, then take it."""
        while self.shared and self.waiting:
            if sum(r.untaken for r in self.waiting) >= self.max_batch:
                break
            wait = min(r.enqueued for r in self.waiting) + self.max_wait_s - time.perf_counter()
            if wait <= 0:
                break
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), wait)
            except TimeoutError:
                break
        return self._take()

    def _take(self) -> list[_Piece]:
        """Pieces of the waiting requests, the least served first (a request not yet served before one already
        served, the older first among equals), until the batch is full."""
        pieces: list[_Piece] = []
        room = self.max_batch
        for request in sorted(self.waiting, key=lambda r: (r.taken, r.enqueued)):
            before = self._turn(request)
            size = min(request.untaken, room)
            pieces.append(_Piece(request, request.taken, request.taken + size))
            request.taken += size
            room -= size
            self._count(self._turn(request) - before)
            if not room or not self.shared:
                break
        self.waiting = [r for r in self.waiting if r.untaken]
        return pieces

    def _call(self, pieces: list[_Piece]) -> list[tuple[list[_Piece], list[Any] | Exception]]:
        """In a worker thread: the model call, timed there (time spent waiting for a thread is not the model's)."""
        started = time.perf_counter()
        try:
            return bisect_failures(lambda part: self.fn([item for piece in part for item in piece.items]), pieces)
        finally:
            self.metrics.call_seconds.labels(self.name).observe(time.perf_counter() - started)

    async def _run(self, pieces: list[_Piece], token: object) -> None:
        try:
            outcomes = await anyio.to_thread.run_sync(self._call, pieces)
            self.metrics.batch_requests.labels(self.name).observe(len({id(p.request) for p in pieces}))
        finally:
            self.limiter.release_on_behalf_of(token)
        for part, outcome in outcomes:
            if isinstance(outcome, Exception):  # `part` is one piece: its request alone fails
                [piece] = part
                log.error("%s: a request's %d items failed", self.name, len(piece.items), exc_info=outcome)
                self._fail(piece.request, outcome)
                continue
            start = 0
            for piece in part:
                self._answer(piece, outcome[start : start + len(piece.items)])
                start += len(piece.items)

    def _answer(self, piece: _Piece, results: list[Any]) -> None:
        request = piece.request
        request.results[piece.start : piece.end] = results
        request.answered += len(results)
        if request.answered == len(request.items) and not request.future.done():
            request.future.set_result(request.results)

    def _fail(self, request: _Request, error: Exception) -> None:
        if not request.future.done():
            request.future.set_exception(error)
        self._drop(request)  # its other pieces are not computed
